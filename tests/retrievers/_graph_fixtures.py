"""Hand-made documents and chunk hierarchies for graph/hybrid tests (no chunker needed)."""
from __future__ import annotations

from dataclasses import dataclass

from ctxroute.types import Chunk, Document, Level


@dataclass(frozen=True)
class HandChunks:
    """Same attributes as chunking.DocumentChunks."""

    document: Chunk
    sections: tuple[Chunk, ...]
    passages: tuple[Chunk, ...]
    sentences: tuple[Chunk, ...] = ()


def make_doc(doc_id: str, sections: list[list[str]]) -> tuple[Document, HandChunks]:
    """One document whose sections are lists of paragraphs; each paragraph is a passage."""
    text = ""
    secs: list[Chunk] = []
    passages: list[Chunk] = []
    doc_chunk_id = f"{doc_id}:d"
    for si, paras in enumerate(sections):
        sec_start = len(text)
        sec_id = f"{doc_id}:s{si}"
        for para in paras:
            start = len(text)
            text += para
            passages.append(
                Chunk(
                    id=f"{doc_id}:p{len(passages)}", doc_id=doc_id, level=Level.PASSAGE, start=start,
                    end=len(text), parent_id=sec_id, ordinal=len(passages), n_tokens=len(para.split()),
                )
            )
            text += "\n\n"
        secs.append(
            Chunk(id=sec_id, doc_id=doc_id, level=Level.SECTION, start=sec_start, end=len(text),
                  parent_id=doc_chunk_id, ordinal=si, n_tokens=0)
        )
    doc = Document(id=doc_id, text=text, title=doc_id)
    dchunk = Chunk(id=doc_chunk_id, doc_id=doc_id, level=Level.DOCUMENT, start=0, end=len(text),
                   parent_id=None, ordinal=0)
    return doc, HandChunks(dchunk, tuple(secs), tuple(passages))
