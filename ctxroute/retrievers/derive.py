"""How a collection's next state is derived from the last one and a write (backend-neutral;
``Collection`` calls ``next_state`` on every write, for every backend)."""
from __future__ import annotations

import time
from typing import Any, Callable

import numpy as np

from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.retrievers.collection_config import CollectionConfig, content_hash, index_text
from ctxroute.retrievers.compaction import after_write, dense_aligned, segments_of
from ctxroute.retrievers.dense import DenseIndex
from ctxroute.retrievers.persist import _now, _State, _version_of
from ctxroute.retrievers.segments import SegmentInfo
from ctxroute.retrievers.sparse import SparseIndex
from ctxroute.types import Chunk, Document

Progress = Callable[[str, int, int], None]


def next_state(
    config: CollectionConfig,
    st: _State,
    docs_map: dict[str, Document],
    chunks_map: dict[str, DocumentChunks],
    hashes: dict[str, str],
    *,
    removed: set[str],
    added: list[tuple[Document, DocumentChunks]],
    new_vectors: np.ndarray,
    progress: Progress | None,
    seconds: dict[str, float],
) -> _State:
    """The next state: ``st`` minus ``removed`` docs, plus ``added`` ones, in time
    proportional to the change. The indexes grow by one segment of the added passages
    (only those are tokenised) and mark the removed ones' rows dead; the others are
    shared with ``st``, which stays as it was. Segments are merged when
    ``compaction.after_write`` says so (too many, or too many dead rows)."""
    segments = segments_of(st)
    if segments is None:  # indexes not split the way the state says: rebuild them whole
        return _rebuild(config, st, docs_map, chunks_map, hashes, removed=removed, added=added,
                        new_vectors=new_vectors, seconds=seconds)
    new_passages = [p for _, dc in added for p in dc.passages]
    passage_by_id = dict(st.passage_by_id)
    if removed:
        gone = [i for i, p in enumerate(st.passages) if p.doc_id in removed]
        passages = [p for p in st.passages if p.doc_id not in removed] + new_passages
        for i in gone:
            del passage_by_id[st.passages[i].id]
        segments = [SegmentInfo(s.doc_ids, s.passages, s.dead | (removed & s.doc_set), s.name)
                    if removed & (s.doc_set - s.dead) else s for s in segments]
    else:
        gone = []
        passages = st.passages + new_passages
    passage_by_id.update((p.id, p) for p in new_passages)
    if added:
        segments.append(SegmentInfo(tuple(d.id for d, _ in added), tuple(len(dc.passages) for _, dc in added)))

    t0 = time.perf_counter()
    texts = [index_text(d, p) for d, dc in added for p in dc.passages]
    sparse = st.sparse.without(gone).extended(texts)
    seconds["sparse"] = time.perf_counter() - t0
    if progress:
        progress("sparse", 1, 1)

    t0 = time.perf_counter()
    if dense_aligned(st):
        dense = st.dense.without(gone).extended(new_vectors)
    else:  # a backend's own dense index (pgvector): the rows for its commit, no FAISS index built
        keep = np.ones(len(st.passages), dtype=bool)
        keep[gone] = False
        dense = DenseIndex.of_vectors(config.embedder_dim, np.concatenate([st.dense.vectors[keep], new_vectors]),
                                      config.hnsw_threshold)
    seconds["dense"] = time.perf_counter() - t0
    if progress:
        progress("dense", 1, 1)

    text_ids, position_by_id = carried_lookups(st, removed, new_passages, texts)
    graph = _graph_after(st, removed, added, progress, seconds)
    now = _now()
    state = _State(docs=docs_map, chunks=chunks_map, hashes=hashes, passages=passages, sparse=sparse,
                   dense=dense, graph=graph, version=_version_of(config, hashes), version_dir="",
                   created_at=st.created_at, updated_at=now, passage_by_id=passage_by_id, segments=segments,
                   text_ids=text_ids, position_by_id=position_by_id)
    t0 = time.perf_counter()
    merged = after_write(state)
    if merged is not state:
        seconds["merge"] = time.perf_counter() - t0
    return merged


def carried_lookups(st: _State, removed: set[str], new_passages: list[Chunk],
                    texts: list[str]) -> tuple[dict[str, str] | None, dict[str, int] | None]:
    """``st``'s text -> passage and passage -> position maps brought up to date for the next
    state (O(change)); None where ``st`` never built one (it is built on first use)."""
    text_ids = position_by_id = None
    if st.text_ids is not None:
        text_ids = dict(st.text_ids)
        for d in removed:
            for p in st.chunks[d].passages if d in st.chunks else ():
                h = content_hash(index_text(st.docs[d], p))
                if text_ids.get(h) == p.id:
                    del text_ids[h]
        for text, p in zip(texts, new_passages):
            text_ids.setdefault(content_hash(text), p.id)
    if st.position_by_id is not None and not removed:
        position_by_id = dict(st.position_by_id)
        position_by_id.update((p.id, len(st.passages) + i) for i, p in enumerate(new_passages))
    return text_ids, position_by_id


def _graph_after(st: _State, removed: set[str], added: list[tuple[Document, DocumentChunks]],
                 progress: Progress | None, seconds: dict[str, float]) -> Any:
    t0 = time.perf_counter()
    graph = st.graph.copy()
    for doc_id in removed:
        if doc_id in graph:
            graph.remove(doc_id)
    for i, (d, dc) in enumerate(added, start=1):
        graph.add(d, dc)
        if progress:
            progress("graph", i, len(added))
    seconds["graph"] = time.perf_counter() - t0
    return graph


def _rebuild(config: CollectionConfig, st: _State, docs_map: dict[str, Document],
             chunks_map: dict[str, DocumentChunks], hashes: dict[str, str], *, removed: set[str],
             added: list[tuple[Document, DocumentChunks]],
             new_vectors: np.ndarray, seconds: dict[str, float]) -> _State:
    """The next state with every index built anew as one segment (O(collection))."""
    keep = [i for i, p in enumerate(st.passages) if p.doc_id not in removed]
    passages = [st.passages[i] for i in keep] + [p for _, dc in added for p in dc.passages]
    t0 = time.perf_counter()
    sparse = SparseIndex(config.sparse).build([index_text(docs_map[p.doc_id], p) for p in passages])
    seconds["sparse"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    dense = DenseIndex(config.embedder_dim, config.hnsw_threshold)
    dense.add(np.concatenate([st.dense.vectors[keep], new_vectors]))
    seconds["dense"] = time.perf_counter() - t0
    graph = _graph_after(st, removed, added, None, seconds)
    return _State(docs=docs_map, chunks=chunks_map, hashes=hashes, passages=passages, sparse=sparse,
                  dense=dense, graph=graph, version=_version_of(config, hashes), version_dir="",
                  created_at=st.created_at, updated_at=_now())
