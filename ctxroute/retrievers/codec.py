"""Compact on-disk encodings of a collection's documents and chunk hierarchy.

- ``documents.jsonl.gz``: one JSON row per document (text included, content hash), gzip'ed.
- ``chunks.npz`` + ``chunks.json``: every chunk of every document as columns of integers
  (level, start, end, parent, ordinal, n_tokens, heading), one row per chunk, documents in
  order; strings (headings, and ids that do not follow the chunker's ``doc:s3`` scheme) are
  kept once in ``chunks.json`` and referenced by index. ``np.savez_compressed``, no pickle.
"""
from __future__ import annotations

import dataclasses
import gzip
import json
from pathlib import Path
from typing import Any, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.types import Chunk, Document, Level

DOCUMENTS_FILE = "documents.jsonl.gz"
CHUNKS_ARRAYS = "chunks.npz"
CHUNKS_META = "chunks.json"
_LEVELS = (Level.DOCUMENT, Level.SECTION, Level.PASSAGE, Level.SENTENCE)
_LEVEL_CODE = {lvl: i for i, lvl in enumerate(_LEVELS)}
_LETTER = {Level.SECTION: "s", Level.PASSAGE: "p", Level.SENTENCE: "t"}


# --- documents ------------------------------------------------------------------------
def write_documents(path: Path, docs: Iterable[Document], hashes: Mapping[str, str]) -> None:
    with gzip.open(path, "wt", encoding="utf-8", compresslevel=6) as fh:
        for d in docs:
            row = {"id": d.id, "hash": hashes[d.id], "title": d.title, "source": d.source, "format": d.format,
                   "page_starts": list(d.page_starts), "metadata": dict(d.metadata), "text": d.text}
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")


def read_documents(path: Path) -> Iterator[tuple[Document, str]]:
    """(document, content hash) per stored row, in order."""
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for line in fh:
            if not line.strip():
                continue
            data = json.loads(line)
            yield (Document(id=str(data["id"]), text=str(data["text"]), title=str(data.get("title", "")),
                            source=str(data.get("source", "")), metadata=dict(data.get("metadata", {})),
                            page_starts=tuple(int(p) for p in data.get("page_starts", ())),
                            format=str(data.get("format", "txt"))),
                   str(data["hash"]))


# --- chunks ---------------------------------------------------------------------------
def _expected_id(doc_id: str, level: Level, index: int) -> str:
    return f"{doc_id}:d" if level == Level.DOCUMENT else f"{doc_id}:{_LETTER[level]}{index}"


_STORED_FIELDS = {"id", "doc_id", "level", "start", "end", "parent_id", "ordinal", "n_tokens", "heading"}


def _check_fields(where: str) -> None:
    missing = {f.name for f in dataclasses.fields(Chunk)} - _STORED_FIELDS
    if missing:  # a new Chunk field must get a column here, or it would be lost on reload
        raise TypeError(f"{where} does not store Chunk fields {sorted(missing)}")


class ChunkColumns:
    """Chunk hierarchies as integer columns and one string table (headings, parent ids, ids
    that do not follow the ``doc:pN`` pattern): the encoding of the files store's
    ``chunks.npz`` and of the postgres store's per-document ``bytea``."""

    def __init__(self) -> None:
        self.strings: list[str] = []
        self._string_id: dict[str, int] = {}
        self.cols: dict[str, list[int]] = {k: [] for k in ("level", "start", "end", "parent", "ordinal", "n_tokens",
                                                            "heading", "id")}

    def intern(self, value: str | None) -> int:
        if value is None:
            return -1
        i = self._string_id.get(value)
        if i is None:
            i = self._string_id[value] = len(self.strings)
            self.strings.append(value)
        return i

    def add(self, dc: DocumentChunks) -> None:
        """Append one document's rows: the document, its sections, passages, sentences."""
        doc_id = dc.document.doc_id
        cols, intern = self.cols, self.intern
        rows = [(Level.DOCUMENT, 0, dc.document)]
        for level, group in ((Level.SECTION, dc.sections), (Level.PASSAGE, dc.passages),
                             (Level.SENTENCE, dc.sentences)):
            rows.extend((level, i, c) for i, c in enumerate(group))
        for level, i, c in rows:
            cols["level"].append(_LEVEL_CODE[c.level])
            cols["start"].append(c.start)
            cols["end"].append(c.end)
            cols["parent"].append(intern(c.parent_id))
            cols["ordinal"].append(c.ordinal)
            cols["n_tokens"].append(c.n_tokens)
            cols["heading"].append(intern(c.heading))
            cols["id"].append(-1 if c.id == _expected_id(doc_id, level, i) and c.doc_id == doc_id else intern(c.id))

    def arrays(self) -> dict[str, np.ndarray]:
        arrays = {k: np.asarray(v, dtype=np.int64) for k, v in self.cols.items()}
        arrays["level"] = arrays["level"].astype(np.int8)
        return arrays


def chunks_from_columns(doc_id: str, cols: Mapping[str, Sequence[int]], strings: Sequence[str], row: int,
                        counts: Sequence[int]) -> tuple[DocumentChunks, int]:
    """The inverse of :meth:`ChunkColumns.add`: ``doc_id``'s hierarchy from the rows starting at
    ``row`` (``counts``: its sections, passages, sentences); returns it and the row after it."""
    n_sec, n_pas, n_sen = counts
    level, start, end, parent = cols["level"], cols["start"], cols["end"], cols["parent"]
    ordinal, n_tokens, heading, ids = cols["ordinal"], cols["n_tokens"], cols["heading"], cols["id"]
    groups: list[list[Chunk]] = []
    for lvl, n in ((Level.DOCUMENT, 1), (Level.SECTION, n_sec), (Level.PASSAGE, n_pas), (Level.SENTENCE, n_sen)):
        group = []
        for i in range(n):
            r = row + i
            group.append(Chunk(
                id=_expected_id(doc_id, lvl, i) if ids[r] < 0 else strings[ids[r]], doc_id=doc_id,
                level=_LEVELS[level[r]], start=start[r], end=end[r],
                parent_id=None if parent[r] < 0 else strings[parent[r]], ordinal=ordinal[r],
                n_tokens=n_tokens[r], heading="" if heading[r] < 0 else strings[heading[r]],
            ))
        row += n
        groups.append(group)
    return DocumentChunks(document=groups[0][0], sections=tuple(groups[1]), passages=tuple(groups[2]),
                          sentences=tuple(groups[3])), row


def write_chunks(directory: Path, chunks: Sequence[DocumentChunks]) -> None:
    _check_fields("codec.write_chunks")
    table = ChunkColumns()
    doc_ids: list[str] = []
    counts: list[list[int]] = []  # per document: sections, passages, sentences
    for dc in chunks:
        doc_ids.append(dc.document.doc_id)
        counts.append([len(dc.sections), len(dc.passages), len(dc.sentences)])
        table.add(dc)
    arrays = table.arrays()
    arrays["counts"] = np.asarray(counts, dtype=np.int64).reshape(-1, 3)
    np.savez_compressed(directory / CHUNKS_ARRAYS, **arrays)
    (directory / CHUNKS_META).write_text(json.dumps({"doc_ids": doc_ids, "strings": table.strings},
                                                    ensure_ascii=False, separators=(",", ":")), encoding="utf-8")


def read_chunks(directory: Path) -> dict[str, DocumentChunks]:
    meta = json.loads((directory / CHUNKS_META).read_text(encoding="utf-8"))
    strings: list[str] = meta["strings"]
    with np.load(directory / CHUNKS_ARRAYS, allow_pickle=False) as z:
        cols: dict[str, Any] = {k: z[k].tolist() for k in z.files}
    counts = cols.pop("counts")
    if len(counts) != len(meta["doc_ids"]):
        raise ManifestMismatch(f"{directory / CHUNKS_ARRAYS}: {len(counts)} documents, chunks.json names "
                               f"{len(meta['doc_ids'])}; re-ingest the collection")
    out: dict[str, DocumentChunks] = {}
    row = 0
    for doc_id, doc_counts in zip(meta["doc_ids"], counts):
        out[doc_id], row = chunks_from_columns(doc_id, cols, strings, row, doc_counts)
    if row != len(cols["level"]):
        raise ManifestMismatch(f"{directory / CHUNKS_ARRAYS}: {len(cols['level'])} chunk rows, the documents "
                               f"account for {row}; re-ingest the collection")
    return out
