"""Row encodings of the ``postgres`` backend: one document's chunk hierarchy as a compact
``bytea`` (the integer columns of ``codec.py``, one document at a time, ``np.savez_compressed``,
no pickle) and the graph index's per-passage key terms (stored so that a replica rebuilds the
graph without re-extracting them)."""
from __future__ import annotations

import io
import json
from typing import Any, Iterable, Sequence

import numpy as np

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.retrievers.codec import ChunkColumns, _check_fields, chunks_from_columns
from ctxroute.retrievers.graph import GraphConfig, GraphIndex, _DocGraph


def encode_chunks(dc: DocumentChunks) -> bytes:
    """One document's hierarchy (document, sections, passages, sentences) as npz bytes."""
    _check_fields("pg_codec.encode_chunks")
    table = ChunkColumns()
    table.add(dc)
    arrays = table.arrays()
    strings = table.strings
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
    return chunks_from_columns(doc_id, c, strings, 0, (n_sec, n_pas, n_sen))[0]


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
