"""Hybrid: the usable window filled with retrieved text, as whole passages or compressed.

``fill="passages"`` (default): many retrieved passages, expanded by their neighbours and packed
up to the usable window. ``fill="compressed"``: the same room filled by the query-aware
compressor (``ctxroute.pipelines.compress``): whole sentences from every document in scope, in
document order, with omission markers; the budget is the room itself, not a ratio of the text.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

from ctxroute.errors import InputError
from ctxroute.pipelines import prompts
from ctxroute.pipelines.compress import CompressConfig, compress, search_k
from ctxroute.pipelines.llm.base import LLMClient, prompt_text
from ctxroute.pipelines.packing import PackedContext
from ctxroute.pipelines.rag import answer_from_context, expand_and_pack
from ctxroute.pipelines.result import CollectionLike, Corpus, DeltaCallback, StrategyResult, answer_room
from ctxroute.types import Route, ScoredChunk

HYBRID_FILLS = ("passages", "compressed")


@dataclass(frozen=True)
class HybridConfig:
    k: int = 40
    neighbours: int = 1
    retriever: str = "hybrid"
    max_tokens: int = 300
    window_fraction: float = 0.9  # share of the usable window the packed passages may use
    fill: str = "passages"  # or "compressed": the room filled by the query-aware compressor
    compress: CompressConfig = field(default_factory=CompressConfig)  # scoring for fill="compressed"

    def __post_init__(self) -> None:
        if self.fill not in HYBRID_FILLS:
            raise InputError(f"hybrid fill must be one of {', '.join(HYBRID_FILLS)}, got {self.fill!r}", fill=self.fill)


class Hybrid:
    route = Route.HYBRID

    def __init__(self, llm: LLMClient, config: HybridConfig = HybridConfig()) -> None:
        self.llm = llm
        self.config = config

    def _compressed(self, question: str, corpus: Corpus, hits: list[ScoredChunk] | None, budget: int) -> tuple[PackedContext, tuple[ScoredChunk, ...]]:
        cfg = replace(self.config.compress, ratio=None, max_tokens=max(1, budget), retriever=self.config.retriever)
        full = sum(int(corpus.chunks(d).document.n_tokens or 0) for d in corpus.doc_ids())
        want = search_k(cfg, full, corpus) if full else self.config.k
        if hits is None or len(hits) < want:  # the compressor's passage score needs hits over its whole budget
            hits = corpus.collection.search(question, want, retriever=self.config.retriever) if corpus.doc_ids() else []
        out = compress(question, corpus, cfg, hits=hits, count_tokens=self.llm.count_tokens)
        return out.packed, out.hits

    async def run(
        self, question: str, collection: CollectionLike | Corpus, *, on_delta: DeltaCallback | None = None,
        hits: list[ScoredChunk] | None = None,
    ) -> StrategyResult:
        corpus = Corpus.of(collection)
        cfg = self.config
        t0 = time.perf_counter()
        if hits is None and cfg.fill == "passages":
            hits = await asyncio.to_thread(corpus.collection.search, question, cfg.k, cfg.retriever)
        room = answer_room(self.llm, prompts.ANSWER_SYSTEM, question, cfg.max_tokens)
        # packing adds sentence ids (the compressor counts them inside its budget)
        budget = (max(200, int(room * cfg.window_fraction / 1.15) - 50) if cfg.fill == "passages"
                  else max(100, int(room * cfg.window_fraction)))
        used_hits: tuple[ScoredChunk, ...] = tuple(hits or ())
        for _ in range(3):  # the model's tokenizer may count more than the index did: shrink to fit
            if cfg.fill == "compressed":
                packed, used_hits = await asyncio.to_thread(self._compressed, question, corpus, hits, budget)
                hits = list(used_hits)
            else:
                packed = expand_and_pack(corpus, hits or [], token_budget=budget, neighbours=cfg.neighbours,
                                         count_tokens=self.llm.count_tokens)
            request = prompts.answer_request(question, packed.text, max_tokens=cfg.max_tokens, stage="")
            need = self.llm.count_tokens(prompt_text(request.messages)) + cfg.max_tokens
            if need <= self.llm.profile.usable_window:
                break
            budget = max(100, int(budget * self.llm.profile.usable_window / need * 0.95))
        retrieve_ms = (time.perf_counter() - t0) * 1000.0
        return await answer_from_context(
            self.llm, question, packed, route=self.route, max_tokens=cfg.max_tokens, on_delta=on_delta,
            hits=used_hits, retrieve_ms=retrieve_ms,
        )
