"""Hybrid retrieval: weighted reciprocal rank fusion, plus hierarchical expansion helpers.

``HybridRetriever`` queries its first-stage retrievers (e.g. bm25, dense) once each, fuses
them, then hands the fused list to any retriever that is also a ``Reranker`` (the graph
retriever: personalised PageRank seeded by those hits) instead of letting it query the
first stage again, and fuses everything with weighted RRF.
"""
from __future__ import annotations

import math
from typing import Mapping, Sequence

from ctxroute.errors import InputError
from ctxroute.retrievers.base import Reranker, Retriever
from ctxroute.types import Chunk, Level, ScoredChunk

DEFAULT_RRF_K = 60
# Chosen by benchmarks/fusion_tuning.py, tuned on LooGLE + L-Eval contracts, reported on the SEC
# 10-Q filings and LaRA (benchmarks/README.md): a small rrf_k lets the graph's order show
# through (with 60 the fused list is the bm25+dense one). The best candidates on the tuning sets
# (rrf_k 1 or 5, weights 0.5/0.5/2) were within 0.3 points of these, so these stay. A fusion
# tuned on the 10-Q filings instead (rrf_k 60, dense weight 2) lost 9 points on LooGLE and
# L-Eval: no fixed fusion was best on every set.
TUNED_RRF_K = 5
TUNED_WEIGHTS: Mapping[str, float] = {"bm25": 1.0, "dense": 1.0, "graph": 2.0}


def rrf(
    ranked_lists: Mapping[str, Sequence[ScoredChunk]],
    weights: Mapping[str, float] | None = None,
    rrf_k: int = DEFAULT_RRF_K,
    *,
    name: str = "hybrid",
    limit: int | None = None,
) -> list[ScoredChunk]:
    """Weighted reciprocal rank fusion: ``score(c) = sum_r w_r / (rrf_k + rank_r(c))``.

    Ranks are 1-based positions in each list (a chunk seen twice in one list keeps its best
    rank). Each fused hit keeps every list's rank and score in ``ranks``/``scores``; ties
    break by best single rank, then chunk id, so the order is deterministic. ``limit``
    returns only the first ``limit`` hits (the same as slicing, without building the rest).
    """
    if rrf_k < 0:
        raise InputError(f"rrf_k must be >= 0, got {rrf_k}; the usual value is 60", rrf_k=rrf_k)
    weights = dict(weights or {})
    for key, w in weights.items():
        if not math.isfinite(w) or w < 0:
            raise InputError(f"weight for {key!r} must be a finite number >= 0, got {w}", weight=w)
    fused: dict[str, float] = {}
    chunks: dict[str, Chunk] = {}
    ranks: dict[str, dict[str, int]] = {}
    scores: dict[str, dict[str, float]] = {}
    for list_name, hits in ranked_lists.items():
        w = weights.get(list_name, 1.0)
        for rank, hit in enumerate(hits, start=1):
            cid = hit.chunk.id
            per_list = ranks.setdefault(cid, {})
            if list_name in per_list:
                continue
            per_list[list_name] = rank
            scores.setdefault(cid, {})[list_name] = hit.score
            chunks[cid] = hit.chunk
            fused[cid] = fused.get(cid, 0.0) + w / (rrf_k + rank)
    order = sorted(fused, key=lambda c: (-fused[c], min(ranks[c].values()), c))
    if limit is not None:
        order = order[: max(0, limit)]
    return [
        ScoredChunk(chunk=chunks[c], score=fused[c], retriever=name, ranks=ranks[c], scores=scores[c])
        for c in order
    ]


class HybridRetriever:
    """Weighted RRF over several retrievers; rerankers among them run on the fused first stage."""

    name = "hybrid"

    def __init__(
        self,
        retrievers: Mapping[str, Retriever],
        weights: Mapping[str, float] | None = None,
        rrf_k: int = DEFAULT_RRF_K,
        per_retriever_k: int = 50,
    ) -> None:
        if not retrievers:
            raise InputError("HybridRetriever needs at least one retriever, e.g. {'bm25': ..., 'dense': ...}")
        unknown = set(weights or {}) - set(retrievers)
        if unknown:
            raise InputError(
                f"weights name unknown retrievers {sorted(unknown)}; known: {sorted(retrievers)}",
                unknown=sorted(unknown),
            )
        if per_retriever_k < 1:
            raise InputError(f"per_retriever_k must be >= 1, got {per_retriever_k}")
        self.retrievers = dict(retrievers)
        self.weights = dict(weights or {})
        self.rrf_k = rrf_k
        self.per_retriever_k = per_retriever_k
        self._rerankers = {n: r for n, r in self.retrievers.items() if isinstance(r, Reranker)}
        self._first = {n: r for n, r in self.retrievers.items() if n not in self._rerankers}
        if not self._first:
            raise InputError(
                "HybridRetriever needs a first-stage retriever (bm25 or dense) besides rerankers "
                f"such as the graph retriever; got only {sorted(self.retrievers)}"
            )

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]:
        if k <= 0:
            return []
        depth = max(k, self.per_retriever_k)
        lists: dict[str, list[ScoredChunk]] = {n: r.retrieve(query, depth) for n, r in self._first.items()}
        if self._rerankers:
            seeds = rrf(lists, self.weights, self.rrf_k, limit=depth)
            for n, reranker in self._rerankers.items():
                lists[n] = reranker.rerank(query, seeds, depth)  # type: ignore[attr-defined]
        return rrf(lists, self.weights, self.rrf_k, name=self.name, limit=k)


# --- hierarchical expansion -------------------------------------------------------------


def _tokens(chunk: Chunk) -> int:
    return chunk.n_tokens if chunk.n_tokens > 0 else max(1, (chunk.end - chunk.start + 3) // 4)


def expand_hits(
    hits: Sequence[ScoredChunk],
    *,
    passages_by_doc: Mapping[str, Sequence[Chunk]],
    sections_by_id: Mapping[str, Chunk],
    token_budget: int,
    neighbours: int = 1,
) -> list[Chunk]:
    """Multi-scale context for the hits, in document order, within ``token_budget``.

    Fills in three rounds, best hit first in each: the hits' own passages, then up to
    ``neighbours`` passages either side of each (nearest first), then the other passages of
    each hit's parent section (nearest first). A passage that does not fit is skipped;
    the sum of ``n_tokens`` of the result never exceeds the budget. Sentence-level hits
    map to the passages that contain them.
    """
    if token_budget <= 0:
        return []
    ordered: dict[str, list[Chunk]] = {
        doc_id: sorted(ps, key=lambda c: (c.start, c.ordinal)) for doc_id, ps in passages_by_doc.items()
    }
    position: dict[str, tuple[str, int]] = {
        p.id: (doc_id, i) for doc_id, ps in ordered.items() for i, p in enumerate(ps)
    }

    def anchor_positions(chunk: Chunk) -> list[int]:
        if chunk.id in position:
            return [position[chunk.id][1]]
        ps = ordered.get(chunk.doc_id, [])
        if chunk.level == Level.SECTION or chunk.level == Level.DOCUMENT:
            return []  # a coarse hit: its passages come in through the section round
        return [i for i, p in enumerate(ps) if p.start < chunk.end and chunk.start < p.end][:1]

    chosen: dict[str, Chunk] = {}
    used = 0

    def take(p: Chunk) -> None:
        nonlocal used
        if p.id in chosen:
            return
        cost = _tokens(p)
        if used + cost <= token_budget:
            chosen[p.id] = p
            used += cost

    anchors: list[tuple[str, int]] = []
    for hit in hits:
        for i in anchor_positions(hit.chunk):
            anchors.append((hit.chunk.doc_id, i))
    for doc_id, i in anchors:
        take(ordered[doc_id][i])
    for distance in range(1, neighbours + 1):
        for doc_id, i in anchors:
            ps = ordered[doc_id]
            for j in (i - distance, i + distance):
                if 0 <= j < len(ps):
                    take(ps[j])
    for hit in hits:
        c = hit.chunk
        section: Chunk | None
        if c.level == Level.SECTION:
            section = c
        else:
            pos = anchor_positions(c)
            if not pos:
                continue
            p = ordered[c.doc_id][pos[0]]
            section = sections_by_id.get(p.parent_id) if p.parent_id else None
        if section is None:
            continue
        ps = ordered.get(section.doc_id, [])
        members = [
            (i, p)
            for i, p in enumerate(ps)
            if p.parent_id == section.id or (section.start <= p.start and p.end <= section.end)
        ]
        centre = anchor_positions(c)
        mid = centre[0] if centre else (members[0][0] if members else 0)
        for _, p in sorted(members, key=lambda ip: (abs(ip[0] - mid), ip[0])):
            take(p)
    return sorted(chosen.values(), key=lambda p: (p.doc_id, p.start, p.ordinal))
