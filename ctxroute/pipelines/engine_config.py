"""The engine's configuration and streaming events (``engine.py`` runs them)."""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Callable, Literal

from ctxroute.pipelines.citations import CitationConfig
from ctxroute.pipelines.compressed_lc import CompressedLCConfig
from ctxroute.pipelines.extractive import ExtractiveConfig
from ctxroute.pipelines.hybrid import HybridConfig
from ctxroute.pipelines.long_context import LongContextConfig
from ctxroute.pipelines.map_reduce import MapReduceConfig
from ctxroute.pipelines.rag import RAGConfig
from ctxroute.router import EstimateSettings
from ctxroute.types import Route

LLM_ROUTES = (Route.RAG, Route.LC, Route.HYBRID, Route.MR, Route.COMPRESSED)


@dataclass(frozen=True)
class EngineConfig:
    """Everything the engine and its strategies can be tuned with (no environment reads)."""

    policy: str = "auto"  # router policy when no router is passed: auto | cascade | rules | self-route | learned | fixed route
    router_params: str | None = None  # JSON written by `ctxroute router fit` (learned) or `fit-cascade` (cascade); default: shipped
    probe_k: int = 10
    probe_retriever: str = "hybrid"
    rag: RAGConfig = field(default_factory=RAGConfig)
    hybrid: HybridConfig = field(default_factory=HybridConfig)
    lc: LongContextConfig = field(default_factory=LongContextConfig)
    mr: MapReduceConfig = field(default_factory=MapReduceConfig)
    compressed: CompressedLCConfig = field(default_factory=CompressedLCConfig)
    extractive: ExtractiveConfig = field(default_factory=ExtractiveConfig)
    citations: CitationConfig = field(default_factory=CitationConfig)
    escalate: bool = True
    max_question_chars: int = 4000
    typer_embeddings: bool = True  # question typing may use the collection's embedder

    @classmethod
    def with_answer_tokens(cls, n: int, **kw: Any) -> "EngineConfig":
        """A config whose every LLM call may produce at most ``n`` tokens."""
        base = cls(**kw)
        return replace(
            base,
            rag=replace(base.rag, max_tokens=n),
            hybrid=replace(base.hybrid, max_tokens=n),
            lc=replace(base.lc, max_tokens=n),
            mr=replace(base.mr, map_max_tokens=n, reduce_max_tokens=n),
            compressed=replace(base.compressed, max_tokens=n),
        )

    def with_compression(self, ratio: float | None = None, max_tokens: int | None = None) -> "EngineConfig":
        """This config with compressed-lc's budget set (the router's estimates follow it): ``ratio`` of
        the documents' tokens, ``max_tokens`` an absolute budget (alone it replaces the ratio; with a
        ratio the smaller wins). Neither: unchanged. Bad values raise ``InputError``."""
        if ratio is None and max_tokens is None:
            return self
        comp = replace(self.compressed.compress, ratio=ratio, max_tokens=max_tokens)
        return replace(self, compressed=replace(self.compressed, compress=comp))

    def estimate_settings(self) -> EstimateSettings:
        """The prompt shapes the router's estimates assume, from these strategy configs."""
        comp = self.compressed.compress
        return EstimateSettings(
            rag_context_tokens=self.rag.context_tokens, answer_tokens=self.rag.max_tokens,
            compress_ratio=comp.ratio, compress_max_tokens=comp.max_tokens, hybrid_fill=self.hybrid.fill,
        )


@dataclass(frozen=True)
class EngineEvent:
    """One streaming event: ``decision`` (RoutingDecision), ``delta`` (str of raw model text,
    markers not yet verified), ``fallback`` (str: the deltas so far are discarded),
    ``progress`` (dict ``{"stage": "map"|"reduce", "done": n, "total": m}`` during map-reduce),
    ``citations`` (tuple of verified Citations) and ``final`` (the Answer)."""

    kind: Literal["decision", "delta", "fallback", "progress", "citations", "final"]
    data: Any


Emit = Callable[[EngineEvent], None]
