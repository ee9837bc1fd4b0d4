"""The engine's self-contained steps, as plain functions ``Engine`` calls.

Holds the question check (``validate_question``), the collection sizes the router reads
(``corpus_stats``), the fallback order of a forced route (``default_fallbacks``) and the
dispatch that runs one route's strategy (``run_strategy``). The engine's decide / verify /
escalate flow stays in ``ctxroute.pipelines.engine``.
"""
from __future__ import annotations

import asyncio

from ctxroute.errors import InputError, InputTooLarge
from ctxroute.pipelines.compressed_lc import CompressedLongContext
from ctxroute.pipelines.engine_config import Emit, EngineConfig, EngineEvent
from ctxroute.pipelines.extractive import ExtractiveReader
from ctxroute.pipelines.hybrid import Hybrid
from ctxroute.pipelines.llm.base import LLMClient
from ctxroute.pipelines.long_context import LongContext
from ctxroute.pipelines.map_reduce import MapReduce
from ctxroute.pipelines.rag import RAG
from ctxroute.pipelines.result import Corpus, StrategyResult
from ctxroute.router import CollectionStats
from ctxroute.types import Route, ScoredChunk

__all__ = ["corpus_stats", "default_fallbacks", "run_strategy", "validate_question"]


def default_fallbacks(route: Route) -> tuple[Route, ...]:
    """The routes tried after ``route`` fails, in order."""
    return tuple(r for r in (Route.RAG, Route.HYBRID, Route.MR, Route.LC) if r != route)


def validate_question(question: str, max_chars: int) -> str:
    """The stripped question; ``InputError`` when empty, ``InputTooLarge`` past ``max_chars``."""
    if not isinstance(question, str) or not question.strip():
        raise InputError("question is empty; pass the question text")
    if len(question) > max_chars:
        raise InputTooLarge(
            f"question has {len(question)} characters, more than max_question_chars="
            f"{max_chars}; shorten it or raise EngineConfig.max_question_chars",
            chars=len(question),
        )
    return question.strip()


def corpus_stats(corpus: Corpus) -> CollectionStats:
    """Collection sizes for the router: the collection's own ``stats()`` when it has one,
    else counted from the corpus's chunks."""
    coll_stats = getattr(corpus.collection, "stats", None)
    if callable(coll_stats):
        s = coll_stats()
        return CollectionStats(n_docs=s.n_docs, total_tokens=s.total_tokens, doc_tokens=tuple(s.doc_tokens),
                               n_passages=s.n_passages, n_sections=s.n_sections, passage_tokens=s.passage_tokens)
    doc_tokens = tuple(
        corpus.chunks(d).document.n_tokens or sum(s.n_tokens for s in corpus.sentences(d)) for d in corpus.doc_ids()
    )
    return CollectionStats(n_docs=len(doc_tokens), total_tokens=sum(doc_tokens), doc_tokens=doc_tokens,
                           n_passages=sum(len(corpus.passages(d)) for d in corpus.doc_ids()))


async def run_strategy(
    llm: LLMClient | None, cfg: EngineConfig, route: Route, question: str, corpus: Corpus,
    probe: list[ScoredChunk] | None, emit: Emit | None,
) -> StrategyResult:
    """Run ``route``'s strategy (extractive when there is no LLM), reusing the router's
    retrieval ``probe`` where it matches what the strategy would search for."""
    on_delta = (lambda text: emit(EngineEvent("delta", text))) if emit else None
    if route == Route.EXTRACTIVE or llm is None:
        hits = probe if probe is not None and cfg.probe_retriever == cfg.extractive.retriever else None
        return await asyncio.to_thread(ExtractiveReader(cfg.extractive).run, question, corpus, hits=hits)
    if route == Route.RAG:
        hits = probe if probe is not None and cfg.probe_retriever == cfg.rag.retriever and cfg.probe_k >= cfg.rag.k else None
        if hits is None:
            hits = await asyncio.to_thread(corpus.collection.search, question, cfg.rag.k, cfg.rag.retriever)
        return await RAG(llm, cfg.rag).run(question, corpus, on_delta=on_delta, hits=hits)
    if route == Route.LC:
        return await LongContext(llm, cfg.lc).run(question, corpus, on_delta=on_delta)
    if route == Route.COMPRESSED:  # searches itself: as many passages as the budget needs
        return await CompressedLongContext(llm, cfg.compressed).run(question, corpus, on_delta=on_delta)
    if route == Route.HYBRID:  # fill="compressed" searches itself: as many passages as its room needs
        hits = (await asyncio.to_thread(corpus.collection.search, question, cfg.hybrid.k, cfg.hybrid.retriever)
                if cfg.hybrid.fill == "passages" else None)
        return await Hybrid(llm, cfg.hybrid).run(question, corpus, on_delta=on_delta, hits=hits)
    on_progress = (lambda stage, done, total: emit(EngineEvent("progress", {"stage": stage, "done": done, "total": total}))) if emit else None
    return await MapReduce(llm, cfg.mr).run(question, corpus, on_delta=on_delta, on_progress=on_progress)
