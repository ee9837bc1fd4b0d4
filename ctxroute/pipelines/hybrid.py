"""Hybrid: many retrieved passages, expanded and packed up to the usable window."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ctxroute.pipelines import prompts
from ctxroute.pipelines.llm.base import LLMClient, prompt_text
from ctxroute.pipelines.rag import answer_from_context, expand_and_pack
from ctxroute.pipelines.result import CollectionLike, Corpus, DeltaCallback, StrategyResult, answer_room
from ctxroute.types import Route, ScoredChunk


@dataclass(frozen=True)
class HybridConfig:
    k: int = 40
    neighbours: int = 1
    retriever: str = "hybrid"
    max_tokens: int = 300
    window_fraction: float = 0.9  # share of the usable window the packed passages may use


class Hybrid:
    route = Route.HYBRID

    def __init__(self, llm: LLMClient, config: HybridConfig = HybridConfig()) -> None:
        self.llm = llm
        self.config = config

    async def run(
        self, question: str, collection: CollectionLike | Corpus, *, on_delta: DeltaCallback | None = None,
        hits: list[ScoredChunk] | None = None,
    ) -> StrategyResult:
        corpus = Corpus.of(collection)
        t0 = time.perf_counter()
        if hits is None:
            hits = corpus.collection.search(question, self.config.k, retriever=self.config.retriever)
        room = answer_room(self.llm, prompts.ANSWER_SYSTEM, question, self.config.max_tokens)
        # packing adds sentence ids; expand to a little less than the room
        budget = max(200, int(room * self.config.window_fraction / 1.15) - 50)
        for _ in range(3):  # the model's tokenizer may count more than the index did: shrink to fit
            packed = expand_and_pack(
                corpus, hits, token_budget=budget, neighbours=self.config.neighbours, count_tokens=self.llm.count_tokens
            )
            request = prompts.answer_request(question, packed.text, max_tokens=self.config.max_tokens, stage="")
            need = self.llm.count_tokens(prompt_text(request.messages)) + self.config.max_tokens
            if need <= self.llm.profile.usable_window:
                break
            budget = max(100, int(budget * self.llm.profile.usable_window / need * 0.95))
        retrieve_ms = (time.perf_counter() - t0) * 1000.0
        return await answer_from_context(
            self.llm, question, packed, route=self.route, max_tokens=self.config.max_tokens, on_delta=on_delta,
            hits=tuple(hits), retrieve_ms=retrieve_ms,
        )
