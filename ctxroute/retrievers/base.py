"""Seams of the retrieval layer: small Protocols composed with plain Python."""
from __future__ import annotations

from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ctxroute.types import ScoredChunk


@runtime_checkable
class Retriever(Protocol):
    """Returns passages, best first. ``name`` is what ScoredChunk.retriever carries."""

    name: str

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]: ...


@runtime_checkable
class Embedder(Protocol):
    """Maps texts to an (n, dim) float32 array whose rows are L2-normalised."""

    name: str
    dim: int

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


@runtime_checkable
class Reranker(Protocol):
    """Pluggable re-ranking (no cross-encoder ships offline; graph PageRank is one)."""

    def rerank(self, query: str, hits: list[ScoredChunk], k: int) -> list[ScoredChunk]: ...
