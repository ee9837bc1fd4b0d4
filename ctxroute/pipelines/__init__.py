"""Pipelines (layer 3): strategies, prompts, citations, LLM clients and the Engine.

Names are re-exported lazily so that importing ``ctxroute.pipelines.llm`` stays light.
"""
from __future__ import annotations

import importlib
from typing import Any

_EXPORTS = {
    "Engine": "engine",
    "EngineConfig": "engine",
    "EngineEvent": "engine",
    "CitationConfig": "citations",
    "verify_citations": "citations",
    "SentenceMap": "packing",
    "pack_evidence": "packing",
    "RAG": "rag",
    "RAGConfig": "rag",
    "LongContext": "long_context",
    "LongContextConfig": "long_context",
    "Hybrid": "hybrid",
    "HybridConfig": "hybrid",
    "CompressedLongContext": "compressed_lc",
    "CompressedLCConfig": "compressed_lc",
    "CompressConfig": "compress",
    "MapReduce": "map_reduce",
    "MapReduceConfig": "map_reduce",
    "ExtractiveReader": "extractive",
    "ExtractiveConfig": "extractive",
    "StrategyResult": "result",
    "ScopedCollection": "result",
    "CtxrouteRetriever": "langchain",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"ctxroute.pipelines.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module 'ctxroute.pipelines' has no attribute {name!r}")
