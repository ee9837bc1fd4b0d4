"""The engine: decide, run, verify citations, escalate if needed, record.

``Engine.answer`` reads top to bottom:

1. validate the question and open the collection;
2. decide the route (the caller's, else the router's from a retrieval probe, the question
   type and the collection size against the model's window; extractive when no LLM);
3. run the strategy; on ``ContextWindowExceeded`` fall back to map-reduce (then hybrid),
   on any other ``LLMError`` fall back to the extractive reader with a warning;
4. verify citations (ids exist, cited sentences support their claims);
5. escalate a RAG answer: under the ``cascade`` policy (what ``auto`` means) when its fitted
   rule says the answer's signals (refusal, citations, asked-for type, overlap with the
   retrieved text) make the richer route worth its tokens; under the other policies when it
   abstains; under every policy when all its citations fail verification. The target is LC
   when the collection fits the usable window, else hybrid or map-reduce;
6. record route, reasons, fallbacks, usage per call and latency per stage in the Answer.

The self-contained steps (question check, collection stats, strategy dispatch, fallback
order) live in ``ctxroute.pipelines.engine_steps``; the configuration in ``engine_config``.
"""
from __future__ import annotations

import asyncio
import time
from dataclasses import replace
from typing import Any, AsyncIterator, Mapping, Sequence

from ctxroute.errors import CollectionNotFound, ContextWindowExceeded, InputError, LLMError
from ctxroute.pipelines.citations import VerifiedText, abstention, is_refusal, verify_citations
from ctxroute.pipelines.engine_config import LLM_ROUTES, Emit, EngineConfig, EngineEvent  # noqa: F401 - public here too
from ctxroute.pipelines.engine_steps import corpus_stats, default_fallbacks, run_strategy, validate_question
from ctxroute.pipelines.escalation import after_rag
from ctxroute.pipelines.llm.base import LLMClient
from ctxroute.pipelines.result import CollectionLike, Corpus, StrategyResult, scoped
from ctxroute.router import (
    QuestionTyper,
    RouteFeatures,
    Router,
    build_features,
    estimates_for,
    make_router,
    probe_signals,
)
from ctxroute.types import Answer, Budget, CallUsage, Route, RouteEstimate, RoutingDecision, ScoredChunk


class Engine:
    """Routes and answers questions over collections.

    ``store_or_collections``: a ``CollectionStore`` (anything with ``open(name)``) or a mapping
    name -> Collection. ``llm``: any ``LLMClient``; ``None`` answers extractively.
    """

    def __init__(
        self,
        store_or_collections: Any,
        llm: LLMClient | None,
        router: Router | None = None,
        *,
        config: EngineConfig = EngineConfig(),
    ) -> None:
        self.store = store_or_collections
        self.llm = llm
        self.config = config
        self.router = router
        self._typers: dict[str, QuestionTyper] = {}
        self._open: dict[str, CollectionLike] = {}

    # --- public API ---------------------------------------------------------------------
    async def answer(
        self,
        question: str,
        collection: str | CollectionLike,
        route: Route | str | None = None,
        budget: Budget | None = None,
        docs: Sequence[str] | None = None,
    ) -> Answer:
        """Answer ``question`` over ``collection``; ``docs`` restricts retrieval, the router's
        sizes and every strategy to those document ids (unknown ids raise DocumentNotFound)."""
        return await self._answer(question, collection, route, budget, emit=None, docs=docs)

    def answer_sync(
        self,
        question: str,
        collection: str | CollectionLike,
        route: Route | str | None = None,
        budget: Budget | None = None,
        docs: Sequence[str] | None = None,
    ) -> Answer:
        """``answer`` for synchronous callers (not from inside a running event loop)."""
        return asyncio.run(self.answer(question, collection, route, budget, docs=docs))

    async def answer_stream(
        self,
        question: str,
        collection: str | CollectionLike,
        route: Route | str | None = None,
        budget: Budget | None = None,
        docs: Sequence[str] | None = None,
    ) -> AsyncIterator[EngineEvent]:
        """Events for SSE: decision, deltas of the answering call (true token streaming for
        RAG/LC/hybrid and the MR reduce call), then the verified citations and the final Answer.
        Citations are only sent after verification. A ``fallback`` event means the deltas so
        far belonged to an attempt that was discarded."""
        queue: asyncio.Queue[EngineEvent | None] = asyncio.Queue()
        task = asyncio.create_task(
            self._answer(question, collection, route, budget, emit=queue.put_nowait, docs=docs)
        )
        task.add_done_callback(lambda _: queue.put_nowait(None))
        try:
            while True:
                event = await queue.get()
                if event is None:
                    break
                yield event
            answer = await task
            yield EngineEvent("citations", answer.citations)
            yield EngineEvent("final", answer)
        finally:
            if not task.done():
                task.cancel()

    async def decide(
        self,
        question: str,
        collection: str | CollectionLike,
        route: Route | str | None = None,
        budget: Budget | None = None,
        docs: Sequence[str] | None = None,
    ) -> RoutingDecision:
        """The routing decision alone (retrieval probe, features, policy); no LLM call."""
        coll = scoped(self.collection(collection), docs)
        decision, _, _ = await self._decide(self._validate(question), Corpus(coll), route, budget or Budget())
        return decision

    def collection(self, name: str | CollectionLike) -> CollectionLike:
        """Open (and cache) a collection by name; raises CollectionNotFound."""
        if not isinstance(name, str):
            return name
        if name in self._open:
            coll = self._open[name]
            refresh = getattr(coll, "refresh", None)
            if callable(refresh):
                refresh()
            return coll
        if isinstance(self.store, Mapping):
            if name not in self.store:
                raise CollectionNotFound(name)
            coll = self.store[name]
        else:
            coll = self.store.open(name)
        self._open[name] = coll
        return coll

    def as_runnable(self, collection: str | CollectionLike, route: Route | str | None = None):  # type: ignore[no-untyped-def]
        """A LangChain ``Runnable`` (question str -> Answer) over ``answer``."""
        from ctxroute.pipelines.langchain import engine_runnable

        return engine_runnable(self, collection, route=route)

    async def aclose(self) -> None:
        if self.llm is not None:
            await self.llm.aclose()

    # --- the engine -----------------------------------------------------------------------
    async def _answer(
        self,
        question: str,
        collection: str | CollectionLike,
        route: Route | str | None,
        budget: Budget | None,
        emit: Emit | None,
        docs: Sequence[str] | None = None,
    ) -> Answer:
        t_start = time.perf_counter()
        question = self._validate(question)
        coll = scoped(self.collection(collection), docs)
        corpus = Corpus(coll)
        budget = budget or Budget()

        # 1. decide
        t0 = time.perf_counter()
        decision, probe, feats = await self._decide(question, corpus, route, budget)
        timings = {"route": (time.perf_counter() - t0) * 1000.0, "retrieve": 0.0, "llm": 0.0, "verify": 0.0}
        if emit:
            emit(EngineEvent("decision", decision))

        usage: list[CallUsage] = []
        warnings: list[str] = []
        fallbacks: list[str] = []
        current = decision.route
        if self.llm is None and current in LLM_ROUTES:
            warnings.append(f"no LLM configured: route {current.value} answered by the extractive reader")
            current = Route.EXTRACTIVE
        tried: list[Route] = []
        outcome: tuple[StrategyResult, VerifiedText, bool, str] | None = None
        for _attempt in range(6):  # at most: route, window fallback x2, escalation, LLM-failure fallback
            if outcome is not None and current in tried:
                break
            tried.append(current)
            # 2. run
            try:
                result = await self._run(current, question, corpus, probe, emit)
            except ContextWindowExceeded as exc:
                nxt = next((r for r in (Route.MR, Route.HYBRID) if r not in tried), None)
                prefix = f"{current.value}: "
                warnings.append(exc.message if exc.message.startswith(prefix) else prefix + exc.message)
                if nxt is None:
                    raise
                fallbacks.append(f"{current.value}->{nxt.value}: context window exceeded")
                current = self._announce(nxt, emit)
                continue
            except LLMError as exc:
                warnings.append(f"{current.value}: LLM call failed ({exc.code}: {exc.message}); "
                                "answered by the extractive reader instead")
                fallbacks.append(f"{current.value}->extractive: {exc.code}")
                current = self._announce(Route.EXTRACTIVE, emit)
                continue
            usage.extend(result.usage)
            warnings.extend(result.warnings)
            timings["retrieve"] += result.timings_ms.get("retrieve", 0.0)
            timings["llm"] += result.timings_ms.get("llm", 0.0)

            # 3. verify
            t0 = time.perf_counter()
            verified = await self._verify(result, question, coll)
            timings["verify"] += (time.perf_counter() - t0) * 1000.0
            warnings.extend(verified.warnings)
            abstained, reason = (result.abstained, result.abstain_reason) if result.abstained else abstention(result.text)
            if not abstained and not verified.citations and is_refusal(result.text):
                abstained, reason = True, verified.text
            outcome = (result, verified, abstained, reason)

            # 4. escalate
            all_failed = verified.n_cited > 0 and not verified.citations
            if current == Route.RAG and self.config.escalate and self.llm is not None:
                spent = sum(u.prompt_tokens + u.completion_tokens for u in usage)
                router = self._router() if decision.policy not in ("forced", "no-llm") else None
                nxt, why, extra = after_rag(
                    router, question, corpus, decision, feats, result, verified, abstained=abstained,
                    all_failed=all_failed, tried=tried, budget=budget, spent=spent,
                    usable_window=self.llm.profile.usable_window,
                )
                if extra:
                    decision = replace(decision, reasons=decision.reasons + extra)
                if nxt is not None:
                    fallbacks.append(f"rag->{nxt.value}: {why}")
                    current = self._announce(nxt, emit)
                    continue
                if why:
                    warnings.append(why)
            break

        # 5. record
        if outcome is None:
            raise InputError(f"no route could answer: tried {', '.join(r.value for r in tried)}")
        result, verified, abstained, reason = outcome
        if verified.n_cited == 0 and not abstained and result.route != Route.EXTRACTIVE:
            warnings.append("the model cited no source sentence" + ("" if verified.citations else
                                                                    ": nothing in the answer is verified"))
        elif verified.n_removed and verified.n_removed == verified.n_cited and not abstained:
            warnings.append(f"all {verified.n_cited} citations of the answer were removed: nothing in it is verified")
        text = verified.text
        if abstained:
            text = f"The documents do not contain the answer: {reason}" if reason else "The documents do not contain the answer."
        timings["total"] = (time.perf_counter() - t_start) * 1000.0
        return Answer(
            text=text,
            citations=verified.citations,
            decision=decision,
            route_taken=result.route,
            usage=tuple(usage),
            latency_ms={k: round(v, 2) for k, v in timings.items()},
            warnings=tuple(dict.fromkeys(warnings)),
            abstained=abstained,
            abstain_reason=reason if abstained else "",
            fallbacks_taken=tuple(fallbacks),
        )

    # --- steps ---------------------------------------------------------------------------
    def _validate(self, question: str) -> str:
        return validate_question(question, self.config.max_question_chars)

    def _router(self) -> Router:
        if self.router is None:
            self.router = make_router(self.config.policy, params_path=self.config.router_params,
                                      settings=self.config.estimate_settings())
        return self.router

    def _typer(self, coll: CollectionLike) -> QuestionTyper:
        # the collection's query-side encoder (LRU-cached, torch-free where available) when it has one
        embedder = (getattr(coll, "query_embedder", None) or getattr(coll, "embedder", None)
                    if self.config.typer_embeddings else None)
        key = getattr(embedder, "name", "none")
        if key not in self._typers:
            self._typers[key] = QuestionTyper(embedder)
        return self._typers[key]

    async def _decide(
        self, question: str, corpus: Corpus, route: Route | str | None, budget: Budget
    ) -> tuple[RoutingDecision, list[ScoredChunk] | None, RouteFeatures | None]:
        if route is not None:
            try:
                forced = Route(route.value if isinstance(route, Route) else str(route).lower())
            except ValueError:
                raise InputError(
                    f"unknown route {route!r}; use one of {', '.join(r.value for r in Route)} or auto"
                ) from None
            features: Mapping[str, float | str] = {}
            estimates: tuple[RouteEstimate, ...] = ()
            if self.llm is not None:  # estimates (no probe) so escalation can respect the budget
                stats = await asyncio.to_thread(self._stats, corpus)
                qprofile = await asyncio.to_thread(self._typer(corpus.collection).classify, question)
                feats = build_features(question, stats, self.llm.profile, question_profile=qprofile, budget=budget,
                                       count_tokens=self.llm.count_tokens)
                features = feats.as_dict()
                estimates = estimates_for(feats, self.llm.profile, self.config.estimate_settings())
            return RoutingDecision(forced, (f"route {forced.value} requested by the caller",), features,
                                   estimates=estimates, fallbacks=default_fallbacks(forced), policy="forced"), None, None
        coll = corpus.collection
        hits = await asyncio.to_thread(coll.search, question, self.config.probe_k, self.config.probe_retriever)
        if self.llm is None:
            return RoutingDecision(Route.EXTRACTIVE, ("no LLM configured: extractive reader",), {},
                                   policy="no-llm"), hits, None
        stats = await asyncio.to_thread(self._stats, corpus)
        qprofile = await asyncio.to_thread(self._typer(coll).classify, question)
        doc_chars = {d: len(corpus.document(d).text) for d in corpus.doc_ids()}
        features = build_features(
            question, stats, self.llm.profile, question_profile=qprofile,
            probe=probe_signals(hits, doc_chars=doc_chars), budget=budget, count_tokens=self.llm.count_tokens,
        )
        return self._router().route(features, self.llm.profile, budget), hits, features

    _stats = staticmethod(corpus_stats)

    async def _run(
        self, route: Route, question: str, corpus: Corpus, probe: list[ScoredChunk] | None, emit: Emit | None
    ) -> StrategyResult:
        return await run_strategy(self.llm, self.config, route, question, corpus, probe, emit)

    async def _verify(self, result: StrategyResult, question: str, coll: CollectionLike) -> VerifiedText:
        if result.route == Route.EXTRACTIVE:
            return VerifiedText(result.text, result.citations, (), len(result.citations), 0)
        embedder = getattr(coll, "embedder", None) if self.config.citations.use_embeddings else None
        return await asyncio.to_thread(
            verify_citations, result.text, result.sentence_map,
            embedder=embedder, config=self.config.citations, question=question,
        )

    @staticmethod
    def _announce(route: Route, emit: Emit | None) -> Route:
        if emit:
            emit(EngineEvent("fallback", route.value))
        return route
