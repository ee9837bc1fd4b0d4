"""Retrieval layer (L1): documents, chunking, sparse/dense/graph indexes, fusion, persistence.

Public names are re-exported lazily (PEP 562) so that importing ``ctxroute.retrievers.base``
does not load FAISS, bm25s or networkx.
"""
from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS: dict[str, str] = {
    # protocols
    "Retriever": "base", "Embedder": "base", "Reranker": "base",
    # documents, tokens, chunking
    "LoadReport": "documents", "load_paths": "documents", "load_bytes": "documents",
    "document_from_text": "documents",
    "get_counter": "tokens",
    "ChunkingConfig": "chunking", "DocumentChunks": "chunking", "chunk_document": "chunking",
    # embedders
    "SentenceTransformerEmbedder": "embedders", "HashingEmbedder": "embedders", "CachedEmbedder": "embedders",
    "make_embedder": "embedders",
    # indexes and retrievers
    "SparseConfig": "sparse", "SparseIndex": "sparse", "SparseRetriever": "sparse",
    "DenseIndex": "dense", "DenseRetriever": "dense",
    "GraphIndex": "graph", "GraphRetriever": "graph",
    "HybridRetriever": "hybrid", "rrf": "hybrid",
    # persisted collections
    "Collection": "collection", "CollectionConfig": "collection_config", "CollectionInfo": "collection_config",
    "CollectionStats": "collection_config", "CollectionStore": "store", "IngestStats": "collection_config",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))


if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ctxroute.retrievers.base import Embedder, Reranker, Retriever
    from ctxroute.retrievers.chunking import ChunkingConfig, DocumentChunks, chunk_document
    from ctxroute.retrievers.collection import Collection
    from ctxroute.retrievers.collection_config import CollectionConfig, CollectionInfo, CollectionStats, IngestStats
    from ctxroute.retrievers.dense import DenseIndex, DenseRetriever
    from ctxroute.retrievers.documents import LoadReport, document_from_text, load_bytes, load_paths
    from ctxroute.retrievers.embedders import CachedEmbedder, HashingEmbedder, SentenceTransformerEmbedder, make_embedder
    from ctxroute.retrievers.graph import GraphIndex, GraphRetriever
    from ctxroute.retrievers.hybrid import HybridRetriever, rrf
    from ctxroute.retrievers.sparse import SparseConfig, SparseIndex, SparseRetriever
    from ctxroute.retrievers.store import CollectionStore
    from ctxroute.retrievers.tokens import get_counter
