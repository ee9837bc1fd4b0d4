"""Long context: every document, every sentence with its id, in one prompt.

Raises ``ContextWindowExceeded`` before calling the model when the prompt does not fit the
model's usable window (the engine then falls back to map-reduce or hybrid).
"""
from __future__ import annotations

import time
from dataclasses import dataclass

from ctxroute.errors import ContextWindowExceeded
from ctxroute.pipelines.llm.base import LLMClient
from ctxroute.pipelines.packing import pack_evidence
from ctxroute.pipelines.rag import answer_from_context
from ctxroute.pipelines.result import CollectionLike, Corpus, DeltaCallback, StrategyResult
from ctxroute.types import Route


@dataclass(frozen=True)
class LongContextConfig:
    max_tokens: int = 300


class LongContext:
    route = Route.LC

    def __init__(self, llm: LLMClient, config: LongContextConfig = LongContextConfig()) -> None:
        self.llm = llm
        self.config = config

    async def run(
        self, question: str, collection: CollectionLike | Corpus, *, on_delta: DeltaCallback | None = None
    ) -> StrategyResult:
        corpus = Corpus.of(collection)
        t0 = time.perf_counter()
        window = self.llm.profile.usable_window
        doc_ids = corpus.doc_ids()
        docs = [corpus.chunks(d).document for d in doc_ids]
        indexed = sum(c.n_tokens for c in docs)
        if indexed > 1.5 * window:  # clearly too long: do not even pack it
            raise ContextWindowExceeded(
                f"lc: the collection has ~{indexed} tokens, beyond the usable window of {window} tokens of "
                f"{self.llm.profile.name}; use map-reduce or hybrid",
                prompt_tokens=indexed,
                window=window,
            )
        packed = pack_evidence(
            docs,
            documents=corpus.documents_for(doc_ids),
            sentences_by_doc=corpus.sentences_for(doc_ids),
            count_tokens=self.llm.count_tokens,
            token_budget=10 * window,
            doc_order=doc_ids,
        )
        retrieve_ms = (time.perf_counter() - t0) * 1000.0
        # answer_from_context counts the full prompt and raises before any model call
        return await answer_from_context(
            self.llm, question, packed, route=self.route, max_tokens=self.config.max_tokens, on_delta=on_delta,
            retrieve_ms=retrieve_ms,
        )
