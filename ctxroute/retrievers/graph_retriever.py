"""Personalised-PageRank retriever over a ``GraphIndex`` (split from ``graph.py``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping, Sequence

from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.hybrid import rrf
from ctxroute.types import Chunk, ScoredChunk

if TYPE_CHECKING:
    from ctxroute.retrievers.graph import GraphIndex


class GraphRetriever:
    """Personalised PageRank over the graph, seeded by first-stage hits and query terms."""

    name = "graph"

    def __init__(
        self,
        index: GraphIndex,
        passages_by_id: Mapping[str, Chunk],
        seeders: Sequence[Retriever],
        seed_k: int = 20,
    ) -> None:
        self.index = index
        self.passages_by_id = passages_by_id
        self.seeders = list(seeders)
        self.seed_k = seed_k

    def _seed_weights(self, query: str, hits: Sequence[ScoredChunk]) -> dict[str, float]:
        seeds: dict[str, float] = {}
        rrf_k = self.index.config.seed_rrf_k
        for rank, hit in enumerate(hits, start=1):
            seeds[hit.chunk.id] = seeds.get(hit.chunk.id, 0.0) + 1.0 / (rrf_k + rank)
        share = self.index.config.query_term_share
        terms = self.index.query_term_nodes(query) if share > 0 else []  # skip the lookup when unused
        if terms:
            hit_mass = sum(seeds.values())
            each = (share * hit_mass / (1.0 - share) if hit_mass > 0 else 1.0) / len(terms)
            for t in terms:
                seeds[t] = seeds.get(t, 0.0) + each
        return seeds

    def _ranked(self, seeds: Mapping[str, float], k: int) -> list[ScoredChunk]:
        out: list[ScoredChunk] = []
        for pid, score in self.index.personalized_pagerank(seeds, k + 8):
            chunk = self.passages_by_id.get(pid)
            if chunk is None:
                continue
            out.append(
                ScoredChunk(
                    chunk=chunk, score=score, retriever=self.name,
                    ranks={self.name: len(out) + 1}, scores={self.name: score},
                )
            )
            if len(out) == k:
                break
        return out

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]:
        if k <= 0:
            return []
        lists = {getattr(r, "name", str(i)): r.retrieve(query, self.seed_k) for i, r in enumerate(self.seeders)}
        fused = rrf(lists, rrf_k=self.index.config.seed_rrf_k)[: self.seed_k]
        return self._ranked(self._seed_weights(query, fused), k)

    def rerank(self, query: str, hits: list[ScoredChunk], k: int) -> list[ScoredChunk]:
        """Reranker protocol: PageRank seeded by ``hits`` (rank-weighted) and the query's terms."""
        if k <= 0:
            return []
        return self._ranked(self._seed_weights(query, hits[: self.seed_k]), k)
