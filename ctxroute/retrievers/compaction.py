"""Segments of a collection's in-memory state: which exist, and merging them (compaction).

Backend-neutral: ``Collection`` calls ``after_write`` on every new state and ``compacted``
for an explicit compaction; the files backend writes every segment that has no name yet
(a new one, or the result of a merge). Merging never re-tokenises or re-embeds: it folds
the live rows of the segments' term counts and vectors together.
"""
from __future__ import annotations

import dataclasses
from typing import Any

from ctxroute.retrievers.persist import _State
from ctxroute.retrievers.segments import SegmentInfo, compaction_plan


def segmented(index: Any) -> bool:
    """Whether an index grows by segments (a backend may bring its own dense index that does
    not, e.g. pgvector's: ``Collection`` then rebuilds that one from its vectors)."""
    return hasattr(index, "n_segments")


def dense_aligned(st: _State) -> bool:
    """Whether the dense index is segmented like the sparse one (always, for the files
    backend; a backend's own dense index, e.g. pgvector's, is rebuilt or swapped instead)."""
    return segmented(st.dense) and st.dense.n_segments == st.sparse.n_segments


def segments_of(st: _State, *, with_dense: bool = False) -> list[SegmentInfo] | None:
    """The segments of ``st``, aligned with its sparse index (and its dense one, which
    ``with_dense`` requires); a state built in one piece (e.g. by a backend that keeps no
    segments) is one segment. None when they disagree."""
    n = st.sparse.n_segments
    aligned = dense_aligned(st)
    if with_dense and not aligned:
        return None
    dead = st.sparse.n_dead or (aligned and st.dense.n_dead)
    if st.segments and len(st.segments) == n:
        return list(st.segments)
    if not st.docs and n == 0:
        return []
    if n == 1 and not dead:
        ids = tuple(st.docs)
        return [SegmentInfo(ids, tuple(len(st.chunks[d].passages) for d in ids))]
    return None


def merged(st: _State, start: int, stop: int) -> _State:
    """``st`` with segments ``start:stop`` merged into one unwritten segment of their live
    documents: the same documents, passages, search results and version hash."""
    segs = segments_of(st)
    if segs is None:
        raise ValueError("the state's segments do not match its indexes")
    docs = [d for s in segs[start:stop] for d in s.live_docs()]
    mid = [SegmentInfo(tuple(docs), tuple(len(st.chunks[d].passages) for d in docs))] if docs else []
    return dataclasses.replace(
        st, sparse=st.sparse.merged(start, stop),
        dense=st.dense.merged(start, stop) if dense_aligned(st) else st.dense,
        segments=[*segs[:start], *mid, *segs[stop:]], version_dir="", retrievers={},
        passage_by_id=st.passage_by_id,
    )


def after_write(st: _State) -> _State:
    """``st``, with its newest segments merged when the policy (``compaction_plan``) says so."""
    segs = segments_of(st)
    plan = compaction_plan(segs) if segs else None
    return merged(st, *plan) if plan else st


def compacted(st: _State) -> _State:
    """``st`` as one segment without dead rows, as a fresh ingest of its documents would be."""
    segs = segments_of(st)
    if segs is not None and len(segs) <= 1 and not any(s.dead for s in segs):
        return st
    return merged(st, 0, len(segs or []))
