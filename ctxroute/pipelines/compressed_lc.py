"""Compressed long context: the query-relevant sentences of every document, in one prompt.

The compressor (``ctxroute.pipelines.compress``) keeps whole sentences under a budget of
``ratio`` x the documents' tokens, in document order, with ``[S#]`` ids and omission markers;
the budget is also capped by the room the model's usable window leaves. Then one answer call,
as on the LC route.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field, replace

from ctxroute.pipelines import prompts
from ctxroute.pipelines.compress import CompressConfig, compress
from ctxroute.pipelines.llm.base import LLMClient, prompt_text
from ctxroute.pipelines.rag import answer_from_context
from ctxroute.pipelines.result import CollectionLike, Corpus, DeltaCallback, StrategyResult, answer_room
from ctxroute.router.estimates import fmt_tokens
from ctxroute.types import Route, ScoredChunk


@dataclass(frozen=True)
class CompressedLCConfig:
    compress: CompressConfig = field(default_factory=CompressConfig)
    max_tokens: int = 300


class CompressedLongContext:
    route = Route.COMPRESSED

    def __init__(self, llm: LLMClient, config: CompressedLCConfig = CompressedLCConfig()) -> None:
        self.llm = llm
        self.config = config

    async def run(
        self, question: str, collection: CollectionLike | Corpus, *, on_delta: DeltaCallback | None = None,
        hits: list[ScoredChunk] | None = None,
    ) -> StrategyResult:
        corpus = Corpus.of(collection)
        cfg = self.config
        t0 = time.perf_counter()
        usable = self.llm.profile.usable_window
        room = max(100, answer_room(self.llm, prompts.ANSWER_SYSTEM, question, cfg.max_tokens))
        cap = room
        warnings: list[str] = []
        out = await asyncio.to_thread(compress, question, corpus, cfg.compress, hits=hits, cap_tokens=cap,
                                      count_tokens=self.llm.count_tokens)
        wanted = cfg.compress.budget(out.selection.full_tokens)
        if wanted > room:
            warnings.append(
                f"compressed-lc: ratio {cfg.compress.ratio} of {fmt_tokens(out.selection.full_tokens)} tokens = "
                f"{fmt_tokens(wanted)} > room {fmt_tokens(room)} in the usable window; compressed to fit"
            )
        for _ in range(3):  # the model's tokenizer may count more than the index did: shrink to fit
            request = prompts.answer_request(question, out.packed.text, max_tokens=cfg.max_tokens, stage="")
            need = self.llm.count_tokens(prompt_text(request.messages)) + cfg.max_tokens
            if need <= usable:
                break
            cap = max(50, int(min(cap, out.selection.kept_tokens) * usable / need * 0.95))
            out = await asyncio.to_thread(compress, question, corpus, cfg.compress, hits=out.hits, cap_tokens=cap,
                                          count_tokens=self.llm.count_tokens)
        retrieve_ms = (time.perf_counter() - t0) * 1000.0
        result = await answer_from_context(
            self.llm, question, out.packed, route=self.route, max_tokens=cfg.max_tokens, on_delta=on_delta,
            hits=out.hits, retrieve_ms=retrieve_ms,
        )
        if warnings:
            result = replace(result, warnings=tuple(warnings) + result.warnings)
        return result


__all__ = ["CompressedLCConfig", "CompressedLongContext"]
