"""How a replica builds a collection's in-memory state from PostgreSQL rows: whole, or from
the version it already holds plus what changed.

The record says which documents the live version has (id and content hash, in order); a
document whose hash the held version already has is reused as it is, the others are read.
When the held version is a prefix of the new one in that order (writers append: a new or
replaced document goes last), the BM25 index grows by a segment of the new passages and marks
the removed ones dead (``SparseIndex.without/extended``, as a writer does) and the graph keeps
its documents; otherwise every index is rebuilt. Either way no passage is tokenised twice for
the graph: its key terms are read from the record.
"""
from __future__ import annotations

from typing import Any, Sequence

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.retrievers.collection_config import CollectionConfig, index_text
from ctxroute.retrievers.compaction import after_write, segments_of
from ctxroute.retrievers.persist import _State
from ctxroute.retrievers.pg_codec import add_terms, decode_chunks, graph_from_terms, passage_terms
from ctxroute.retrievers.segments import SegmentInfo
from ctxroute.retrievers.sparse import SparseIndex
from ctxroute.types import Document

DOC_COLUMNS = "doc_id, title, source, format, page_starts, metadata, text, chunks"


def fresh_documents(rows: Sequence[Sequence[Any]], terms_rows: Sequence[Sequence[Any]], name: str
                    ) -> dict[str, tuple[Document, DocumentChunks, list[list[str]]]]:
    """Documents read from the record (rows of ``DOC_COLUMNS``) with their passages' key terms."""
    terms: dict[str, dict[int, list[str]]] = {}
    for doc_id, pos, t in terms_rows:
        terms.setdefault(doc_id, {})[pos] = list(t)
    out = {}
    for doc_id, title, source, fmt, pages, meta, text, blob in rows:
        doc = Document(id=doc_id, text=text, title=title, source=source, metadata=dict(meta),
                       page_starts=tuple(pages), format=fmt)
        dc = decode_chunks(doc_id, bytes(blob))
        by_pos = terms.get(doc_id, {})
        if sorted(by_pos) != list(range(len(dc.passages))):
            raise ManifestMismatch(f"document {doc_id!r} of {name!r}: {len(dc.passages)} passages but "
                                   f"{len(by_pos)} passage rows; re-ingest it")
        out[doc_id] = (doc, dc, [by_pos[i] for i in range(len(dc.passages))])
    return out


def build_state(config: CollectionConfig, listing: Sequence[tuple[str, str]], cached: _State | None,
                fresh: dict[str, tuple[Document, DocumentChunks, list[list[str]]]], **meta: Any) -> _State:
    """The state of the version whose documents are ``listing`` ((id, hash) in order): the
    ``fresh`` ones as read, the others from ``cached``. ``meta``: the ``_State`` fields
    ``version``, ``version_dir``, ``created_at``, ``updated_at``, ``embedding`` and ``dense``."""
    docs: dict[str, Document] = {}
    chunks: dict[str, DocumentChunks] = {}
    hashes: dict[str, str] = {}
    for doc_id, digest in listing:
        if doc_id in fresh:
            docs[doc_id], chunks[doc_id], _ = fresh[doc_id]
        elif cached is not None and cached.hashes.get(doc_id) == digest:
            docs[doc_id], chunks[doc_id] = cached.docs[doc_id], cached.chunks[doc_id]
        else:
            raise ManifestMismatch(f"document {doc_id!r} was neither read nor held; reload the collection")
        hashes[doc_id] = digest
    passages = [p for d in docs for p in chunks[d].passages]
    grown = _grown(config, cached, docs, chunks, hashes, fresh, passages, meta)
    if grown is not None:
        return grown
    sparse = SparseIndex(config.sparse).build([index_text(docs[p.doc_id], p) for p in passages])
    graph = graph_from_terms(
        (chunks[d], fresh[d][2] if d in fresh else passage_terms(cached.graph, d))  # type: ignore[union-attr]
        for d in docs)
    return _State(docs=docs, chunks=chunks, hashes=hashes, passages=passages, sparse=sparse, graph=graph, **meta)


def _grown(config: CollectionConfig, cached: _State | None, docs: dict[str, Document],
           chunks: dict[str, DocumentChunks], hashes: dict[str, str],
           fresh: dict[str, tuple[Document, DocumentChunks, list[list[str]]]], passages: list,
           meta: dict[str, Any]) -> _State | None:
    """``cached`` brought forward by the change (O(change) for the indexes), or None when its
    documents are not, in order, the first ones of the new version."""
    if cached is None or cached.sparse.config != config.sparse:
        return None
    removed = {d for d in cached.docs if d not in docs or d in fresh}
    kept = [d for d in cached.docs if d not in removed]
    added = [d for d in docs if d in fresh]
    if kept + added != list(docs):
        return None
    segments = segments_of(cached)
    if segments is None:
        return None
    gone = [i for i, p in enumerate(cached.passages) if p.doc_id in removed]
    if removed:
        segments = [SegmentInfo(s.doc_ids, s.passages, s.dead | (removed & s.doc_set), s.name)
                    if removed & (s.doc_set - s.dead) else s for s in segments]
    if added:
        segments.append(SegmentInfo(tuple(added), tuple(len(chunks[d].passages) for d in added)))
    sparse = cached.sparse.without(gone).extended(
        [index_text(docs[d], p) for d in added for p in chunks[d].passages])
    graph = cached.graph.copy()
    for d in removed:
        if d in graph.doc_ids:
            graph.remove(d)
    for d in added:
        add_terms(graph, chunks[d], fresh[d][2])
    state = _State(docs=docs, chunks=chunks, hashes=hashes, passages=passages, sparse=sparse, graph=graph,
                   segments=segments, **meta)
    merged = after_write(state)  # a long-lived replica's segments stay as few as a writer's
    merged.version_dir = state.version_dir
    return merged
