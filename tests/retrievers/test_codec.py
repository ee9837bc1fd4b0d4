from __future__ import annotations

import dataclasses
from pathlib import Path

from ctxroute.retrievers.chunking import ChunkingConfig, DocumentChunks, chunk_document
from ctxroute.retrievers.codec import read_chunks, read_documents, write_chunks, write_documents
from ctxroute.retrievers.documents import document_from_text
from ctxroute.synthetic import generate_corpus


def test_chunks_and_documents_round_trip(tmp_path: Path) -> None:
    reports = generate_corpus(seed=2, n_docs=2, n_words=1500)
    docs = [document_from_text(r.text, title=r.title, doc_id=f"r{i}", format="md", metadata={"i": str(i)})
            for i, r in enumerate(reports)]
    chunks = [chunk_document(d, ChunkingConfig(passage_tokens=96)) for d in docs]
    # a hierarchy whose ids do not follow the chunker's scheme is stored with explicit ids
    odd = dataclasses.replace(chunks[1], passages=tuple(dataclasses.replace(p, id=f"custom-{i}")
                                                          for i, p in enumerate(chunks[1].passages)))
    write_chunks(tmp_path, [chunks[0], odd])
    write_documents(tmp_path / "d.jsonl.gz", docs, {d.id: f"h{d.id}" for d in docs})
    loaded = read_chunks(tmp_path)
    assert list(loaded) == ["r0", "r1"]
    assert loaded["r0"] == chunks[0] and loaded["r1"] == odd
    assert isinstance(loaded["r0"], DocumentChunks)
    back = list(read_documents(tmp_path / "d.jsonl.gz"))
    assert [d for d, _ in back] == docs and [h for _, h in back] == ["hr0", "hr1"]


def test_empty_collection_round_trips(tmp_path: Path) -> None:
    write_chunks(tmp_path, [])
    write_documents(tmp_path / "d.jsonl.gz", [], {})
    assert read_chunks(tmp_path) == {}
    assert list(read_documents(tmp_path / "d.jsonl.gz")) == []
