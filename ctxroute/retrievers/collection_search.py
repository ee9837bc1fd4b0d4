"""The search side of ``Collection`` (``collection.py``): building a snapshot's retrievers
and searching within a set of documents.

Retrievers are built per state (snapshot) and cached on it, so a concurrent write never
mixes two; a scoped search asks the retriever for more hits until enough fall in scope.
"""
from __future__ import annotations

from typing import Any

from ctxroute.errors import InputError
from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.collection_config import RETRIEVERS, CollectionConfig
from ctxroute.retrievers.dense import DenseRetriever
from ctxroute.retrievers.graph import GraphRetriever
from ctxroute.retrievers.hybrid import HybridRetriever
from ctxroute.retrievers.persist import _State
from ctxroute.retrievers.sparse import SparseRetriever
from ctxroute.types import ScoredChunk

__all__ = ["build_retriever", "check_retriever_name", "search_in_scope"]


def check_retriever_name(name: str) -> None:
    """``InputError`` unless ``name`` is one of ``RETRIEVERS``."""
    if name not in RETRIEVERS:
        raise InputError(f"unknown retriever {name!r}; use one of {', '.join(RETRIEVERS)}", retriever=name)


def build_retriever(st: _State, name: str, config: CollectionConfig, query_embedder: Any) -> Retriever:
    """The ``name`` retriever over snapshot ``st`` (built once per state, cached on it)."""
    cached = st.retrievers.get(name)
    if cached is not None:
        return cached
    if name == "bm25":
        made: Retriever = SparseRetriever(st.sparse, st.passages)
    elif name == "dense":
        made = DenseRetriever(st.dense, query_embedder, st.passages)
    elif name == "graph":
        made = GraphRetriever(st.graph, st.passage_by_id,
                              [build_retriever(st, "bm25", config, query_embedder),
                               build_retriever(st, "dense", config, query_embedder)])
    else:
        made = HybridRetriever(
            {n: build_retriever(st, n, config, query_embedder) for n in ("bm25", "dense", "graph")},
            weights=dict(config.fusion_weights),
            rrf_k=config.fusion_rrf_k,
        )
    st.retrievers[name] = made
    return made


def search_in_scope(ret: Retriever, st: _State, query: str, k: int, scope: set[str]) -> list[ScoredChunk]:
    """Top ``k`` hits of ``ret`` whose document is in ``scope``: fetches more (x4 each round)
    until ``k`` in scope are found or the snapshot's passages are exhausted."""
    total = len(st.passages)
    fetch = min(total, max(4 * k, k + 50))
    while True:
        hits = [h for h in ret.retrieve(query, fetch) if h.chunk.doc_id in scope]
        if len(hits) >= k or fetch >= total:
            return hits[:k]
        fetch = min(total, fetch * 4)
