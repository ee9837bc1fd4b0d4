"""RAG: hybrid retrieval, multi-scale expansion, packing, answer (or explicit abstention)."""
from __future__ import annotations

import time
from dataclasses import dataclass

from ctxroute.pipelines import prompts
from ctxroute.pipelines.llm.base import LLMClient
from ctxroute.pipelines.packing import PackedContext, pack_evidence
from ctxroute.pipelines.result import CollectionLike, Corpus, DeltaCallback, StrategyResult, call_llm, check_window
from ctxroute.retrievers.hybrid import expand_hits
from ctxroute.types import Route, ScoredChunk


@dataclass(frozen=True)
class RAGConfig:
    k: int = 8
    context_tokens: int = 3000
    neighbours: int = 1
    retriever: str = "hybrid"
    max_tokens: int = 300


def expand_and_pack(
    corpus: Corpus, hits: list[ScoredChunk], *, token_budget: int, neighbours: int, count_tokens
) -> PackedContext:  # type: ignore[no-untyped-def]
    """Hits -> multi-scale passages (hit, neighbours, section) -> packed context, document order."""
    doc_ids = list(dict.fromkeys(h.chunk.doc_id for h in hits))
    chunks = {d: corpus.chunks(d) for d in doc_ids}
    passages = expand_hits(
        hits,
        passages_by_doc={d: c.passages for d, c in chunks.items()},
        sections_by_id={s.id: s for c in chunks.values() for s in c.sections},
        token_budget=token_budget,
        neighbours=neighbours,
    )
    # expand_hits returns document order; admit the hits' own passages first (best hit first)
    # under the budget, then the expansion; pack_evidence lays them out in document order again
    rank = {h.chunk.id: i for i, h in enumerate(hits)}
    ordered = sorted(passages, key=lambda p: rank.get(p.id, len(rank)))
    order = [d for d in corpus.doc_ids() if d in chunks]
    return pack_evidence(
        ordered,
        documents=corpus.documents_for(doc_ids),
        sentences_by_doc={d: c.sentences for d, c in chunks.items()},
        count_tokens=count_tokens,
        token_budget=int(token_budget * 1.15) + 50,
        doc_order=order,
    )


async def answer_from_context(
    llm: LLMClient,
    question: str,
    packed: PackedContext,
    *,
    route: Route,
    max_tokens: int,
    on_delta: DeltaCallback | None,
    hits: tuple[ScoredChunk, ...] = (),
    retrieve_ms: float = 0.0,
) -> StrategyResult:
    """One answer call over a packed context (shared by RAG, LC and hybrid)."""
    stage = f"{route.value}.answer"
    if not packed.sentence_map.refs:
        return StrategyResult(
            route=route,
            text=f"{prompts.NOT_FOUND}: retrieval found no passage for the question",
            sentence_map=packed.sentence_map,
            abstained=True,
            abstain_reason="retrieval returned no passages",
            timings_ms={"retrieve": retrieve_ms, "llm": 0.0},
        )
    request = prompts.answer_request(question, packed.text, max_tokens=max_tokens, stage=stage)
    check_window(llm, request, stage=stage)
    t0 = time.perf_counter()
    response, usage = await call_llm(llm, request, on_delta=on_delta)
    warnings: tuple[str, ...] = ()
    if response.finish_reason == "length":
        warnings = (f"{stage}: the answer was cut at max_tokens={max_tokens}",)
    return StrategyResult(
        route=route,
        text=response.text,
        sentence_map=packed.sentence_map,
        usage=(usage,),
        warnings=warnings,
        timings_ms={"retrieve": retrieve_ms, "llm": (time.perf_counter() - t0) * 1000.0},
        hits=hits,
        prompt_tokens_packed=packed.n_tokens,
    )


class RAG:
    route = Route.RAG

    def __init__(self, llm: LLMClient, config: RAGConfig = RAGConfig()) -> None:
        self.llm = llm
        self.config = config

    async def run(
        self, question: str, collection: CollectionLike | Corpus, *, on_delta: DeltaCallback | None = None,
        hits: list[ScoredChunk] | None = None,
    ) -> StrategyResult:
        """``hits``: reuse the router's probe when it used the same retriever and k."""
        corpus = Corpus.of(collection)
        t0 = time.perf_counter()
        hits = corpus.hits(question, self.config.k, self.config.retriever, hits)
        budget = min(self.config.context_tokens, self.llm.profile.usable_window - self.config.max_tokens - 400)
        packed = expand_and_pack(
            corpus, hits, token_budget=max(200, budget), neighbours=self.config.neighbours,
            count_tokens=self.llm.count_tokens,
        )
        retrieve_ms = (time.perf_counter() - t0) * 1000.0
        return await answer_from_context(
            self.llm, question, packed, route=self.route, max_tokens=self.config.max_tokens, on_delta=on_delta,
            hits=tuple(hits), retrieve_ms=retrieve_ms,
        )
