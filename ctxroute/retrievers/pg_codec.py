"""Row encodings of the ``postgres`` backend: one document's chunk hierarchy as a compact
``bytea`` (the integer columns of ``codec.py``, one document at a time, ``np.savez_compressed``,
no pickle) and the graph index's per-passage key terms (stored so that a replica rebuilds the
graph without re-extracting them)."""
from __future__ import annotations

import dataclasses
import io
import json
from typing import Any, Iterable, Sequence

import numpy as np

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.retrievers.codec import _LEVEL_CODE, _LEVELS, _STORED_FIELDS, _expected_id
from ctxroute.retrievers.graph import GraphConfig, GraphIndex, _DocGraph
from ctxroute.types import Chunk, Level


def encode_chunks(dc: DocumentChunks) -> bytes:
    """One document's hierarchy (document, sections, passages, sentences) as npz bytes."""
    missing = {f.name for f in dataclasses.fields(Chunk)} - _STORED_FIELDS
    if missing:  # a new Chunk field must get a column here, or it would be lost on reload
        raise TypeError(f"pg_codec.encode_chunks does not store Chunk fields {sorted(missing)}")
    doc_id = dc.document.doc_id
    strings: list[str] = []
    string_id: dict[str, int] = {}

    def intern(value: str | None) -> int:
        if value is None:
            return -1
        i = string_id.get(value)
        if i is None:
            i = string_id[value] = len(strings)
            strings.append(value)
        return i

    cols: dict[str, list[int]] = {k: [] for k in ("level", "start", "end", "parent", "ordinal", "n_tokens",
                                                   "heading", "id")}
    rows = [(Level.DOCUMENT, 0, dc.document)]
    for level, group in ((Level.SECTION, dc.sections), (Level.PASSAGE, dc.passages), (Level.SENTENCE, dc.sentences)):
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
    arrays = {k: np.asarray(v, dtype=np.int64) for k, v in cols.items()}
    arrays["level"] = arrays["level"].astype(np.int8)
    arrays["counts"] = np.asarray([len(dc.sections), len(dc.passages), len(dc.sentences)], dtype=np.int64)
    arrays["strings"] = np.frombuffer(json.dumps(strings, ensure_ascii=False).encode(), dtype=np.uint8)
    buf = io.BytesIO()
    np.savez_compressed(buf, **arrays)
    return buf.getvalue()


def decode_chunks(doc_id: str, data: bytes) -> DocumentChunks:
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as z:
            cols: dict[str, Any] = {k: z[k] for k in z.files}
    except (OSError, ValueError) as exc:
        raise ManifestMismatch(f"stored chunks of document {doc_id!r} are unreadable ({exc}); re-ingest it") from exc
    strings: list[str] = json.loads(cols.pop("strings").tobytes().decode())
    n_sec, n_pas, n_sen = (int(x) for x in cols.pop("counts"))
    c = {k: v.tolist() for k, v in cols.items()}
    if len(c["level"]) != 1 + n_sec + n_pas + n_sen:
        raise ManifestMismatch(f"stored chunks of document {doc_id!r}: {len(c['level'])} rows for "
                               f"1+{n_sec}+{n_pas}+{n_sen} chunks; re-ingest it")
    groups: list[list[Chunk]] = []
    row = 0
    for lvl, n in ((Level.DOCUMENT, 1), (Level.SECTION, n_sec), (Level.PASSAGE, n_pas), (Level.SENTENCE, n_sen)):
        group = []
        for i in range(n):
            r = row + i
            group.append(Chunk(
                id=_expected_id(doc_id, lvl, i) if c["id"][r] < 0 else strings[c["id"][r]], doc_id=doc_id,
                level=_LEVELS[c["level"][r]], start=c["start"][r], end=c["end"][r],
                parent_id=None if c["parent"][r] < 0 else strings[c["parent"][r]], ordinal=c["ordinal"][r],
                n_tokens=c["n_tokens"][r], heading="" if c["heading"][r] < 0 else strings[c["heading"][r]],
            ))
        row += n
        groups.append(group)
    return DocumentChunks(document=groups[0][0], sections=tuple(groups[1]), passages=tuple(groups[2]),
                          sentences=tuple(groups[3]))


# --- graph key terms ------------------------------------------------------------------
# GraphIndex has no public constructor from precomputed terms; these two functions read and
# fill its per-document arrays the way GraphIndex.save/load do (graph.py owns the format).
def passage_terms(graph: GraphIndex, doc_id: str) -> list[list[str]]:
    """The key terms of each passage of ``doc_id``, in the graph's own order."""
    d = graph._docs.get(doc_id)
    if d is None:
        raise ManifestMismatch(f"document {doc_id!r} is missing from the graph index; re-ingest it")
    return [[graph._terms[t] for t in ids] for ids in d.terms]


def add_terms(graph: GraphIndex, dc: DocumentChunks, terms: Sequence[Sequence[str]]) -> None:
    """Add (or replace) one document in ``graph`` with its passages' stored key terms."""
    if len(terms) != len(dc.passages):
        raise ManifestMismatch(f"document {dc.document.doc_id!r}: {len(dc.passages)} passages but key terms "
                               f"for {len(terms)}; re-ingest it")
    graph._docs[dc.document.doc_id] = _DocGraph(dc, tuple(graph._ids(t) for t in terms))
    graph._matrix = None


def graph_from_terms(rows: Iterable[tuple[DocumentChunks, Sequence[Sequence[str]]]],
                     config: GraphConfig | None = None) -> GraphIndex:
    """A graph index from (chunks, key terms per passage) per document, in collection order."""
    index = GraphIndex(config)
    for dc, terms in rows:
        add_terms(index, dc, terms)
    return index
