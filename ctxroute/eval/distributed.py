"""Batch evaluation over a Ray cluster: questions fanned out to actors that each hold an
``Engine`` (collection loaded once, LLM client built once), with a bound on the LLM calls in
flight per endpoint across the whole cluster.

Ray is imported inside functions only (``ctxroute[scale]``). Records are the runner's
(``runner.answer_record`` / ``error_record``) and are written to ``results.jsonl`` in the
order a sequential run writes them (questions in dataset order, routes in the order asked),
each one as soon as it and every record before it are done, so a killed run resumes like a
plain one. Their content equals a sequential run's except timings (``latency_ms``).

The bound: one ``CallLimiter`` actor per endpoint (the base URL of an OpenAI-compatible
server, else the backend name) holds a semaphore; every LLM call of every worker, the
optional LLM judge included, takes a permit first (``BoundedLLM``). The limiter is per run: two
runs at the same time each get their own bound.
"""
from __future__ import annotations

import json
import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable, Mapping, Sequence

from ctxroute.errors import InputError
from ctxroute.eval.datasets import EvalItem
from ctxroute.eval.runner import RunStats, answer_record, engine_answer_fn, error_record, plan_run


class CallLimiter:
    """Body of the per-endpoint limiter actor (an async Ray actor): a semaphore with
    ``limit`` permits, plus counts for checking the bound (``stats``)."""

    def __init__(self, limit: int) -> None:
        if limit < 1:
            raise InputError(f"the LLM call bound must be >= 1, got {limit}", limit=limit)
        self.limit = limit
        self._sem: Any = None
        self.active = 0
        self.peak = 0
        self.calls = 0

    async def acquire(self) -> None:
        import asyncio

        if self._sem is None:  # made on the actor's own event loop
            self._sem = asyncio.Semaphore(self.limit)
        await self._sem.acquire()
        self.active += 1
        self.calls += 1
        self.peak = max(self.peak, self.active)

    async def release(self) -> None:
        self.active -= 1
        self._sem.release()

    async def stats(self) -> dict[str, int]:
        return {"limit": self.limit, "active": self.active, "peak": self.peak, "calls": self.calls}


class BoundedLLM:
    """An ``LLMClient`` that takes a permit from a ``CallLimiter`` actor around every call
    (a stream holds its permit until it ends). Everything else is the inner client's."""

    def __init__(self, inner: Any, limiter: Any) -> None:
        self.inner = inner
        self.limiter = limiter
        self.profile = inner.profile

    def __getattr__(self, attr: str) -> Any:
        if attr in ("inner", "limiter"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    async def complete(self, request: Any) -> Any:
        await self.limiter.acquire.remote()
        try:
            return await self.inner.complete(request)
        finally:
            self.limiter.release.remote()  # sent even when this call is cancelled

    async def stream(self, request: Any) -> AsyncIterator[Any]:
        await self.limiter.acquire.remote()
        try:
            async for item in self.inner.stream(request):
                yield item
        finally:
            self.limiter.release.remote()

    async def aclose(self) -> None:
        await self.inner.aclose()


def _open_store(spec: str, namespace: str = "default") -> Any:
    from ctxroute.retrievers.collection import CollectionStore

    return CollectionStore(spec, namespace=namespace)


def store_factory_of(store: Any) -> Callable[[], Any]:
    """How a worker opens the same store: a files store by its absolute directory, a
    PostgreSQL one by its DSN and namespace (each worker makes its own connection pool); any
    other by shipping the store object itself (it must pickle)."""
    import functools

    backend = getattr(store, "backend", None)
    dsn = getattr(backend, "dsn", None)
    if dsn:
        return functools.partial(_open_store, str(dsn), str(getattr(backend, "namespace", "default")))
    try:
        root = store.root
    except AttributeError:
        return functools.partial(_same, store)
    return functools.partial(_open_store, str(Path(root).resolve()))


def _same(obj: Any) -> Any:
    return obj


@dataclass(frozen=True)
class EvalRecipe:
    """What each worker builds its engine from. ``llm_config`` (an ``LLMConfig``; its API key
    travels to the workers) or ``llm_factory`` (a picklable zero-argument callable, e.g. a
    test double); neither: the extractive reader, no LLM."""

    store_factory: Callable[[], Any]
    collection: str
    llm_config: Any = None
    llm_factory: Callable[[], Any] | None = None
    engine_config: Any = None
    llm_judge: bool = False
    budget: Any = None

    @property
    def has_llm(self) -> bool:
        return self.llm_config is not None or self.llm_factory is not None

    def endpoint(self) -> str:
        """The key of the LLM call bound: the server's base URL, else the backend's name."""
        cfg = self.llm_config
        if cfg is not None:
            return str(cfg.base_url or cfg.backend)
        return "custom" if self.llm_factory is not None else "none"


class EvalWorker:
    """Body of one evaluation actor (async): builds the store, the LLM client (behind the
    limiter) and the ``Engine`` once, then answers (item, route) pairs, many at a time."""

    def __init__(self, recipe: EvalRecipe, limiter: Any, dataset: str) -> None:
        from ctxroute.eval.judge import LLMJudge
        from ctxroute.pipelines.engine import Engine, EngineConfig

        llm = None
        if recipe.llm_factory is not None:
            llm = recipe.llm_factory()
        elif recipe.llm_config is not None:
            from ctxroute.pipelines.llm.factory import build_llm

            llm = build_llm(recipe.llm_config)
        if llm is not None and limiter is not None:
            llm = BoundedLLM(llm, limiter)
        self.engine = Engine(recipe.store_factory(), llm, config=recipe.engine_config or EngineConfig())
        self.judge = LLMJudge(llm) if recipe.llm_judge and llm is not None else None
        self.answer_fn = engine_answer_fn(self.engine, recipe.collection, recipe.budget)
        self.dataset = dataset

    async def run(self, index: int, item: EvalItem, route: str) -> tuple[int, dict[str, Any], bool]:
        """The record of one (item, route), as ``run_eval`` makes it; the flag says error."""
        import asyncio

        start = time.perf_counter()
        try:
            ans = await self.answer_fn(item, route)
            rec = answer_record(item, route, ans, (time.perf_counter() - start) * 1000, self.dataset)
            if self.judge is not None and item.answers:
                v = await self.judge.judge(item.question, item.answers, ans.text)
                rec["correct"]["llm_judge"] = float(v.correct)
                rec["llm_judge_rationale"] = v.rationale
            return index, rec, False
        except (KeyboardInterrupt, asyncio.CancelledError):
            raise
        except Exception as exc:  # noqa: BLE001 - a failed item is recorded, not a crash
            return index, error_record(item, route, exc, (time.perf_counter() - start) * 1000, self.dataset), True


@dataclass
class RayEvalStats:
    """``RunStats`` of the run plus how it was spread and what the LLM bound saw."""

    run: RunStats
    workers: int
    limiter: Mapping[str, int] = field(default_factory=dict)  # limit, peak, calls ({} without an LLM)


def run_eval_ray(
    items: Sequence[EvalItem],
    recipe: EvalRecipe,
    out: str | Path,
    *,
    routes: Sequence[str] = ("auto",),
    concurrency: int = 4,
    llm_calls: int | None = None,
    workers: int | None = None,
    dataset: str = "",
    retry_errors: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> RayEvalStats:
    """``run_eval`` over Ray actors. ``concurrency``: (item, route) pairs in flight in the
    whole cluster; ``workers``: actors (default: the cluster's CPUs, at most ``concurrency``);
    ``llm_calls``: LLM calls in flight per endpoint (default ``concurrency``). Needs a Ray
    connection (``ctxroute.retrievers.ray_cluster.ray_session``)."""
    from ctxroute.retrievers.ray_cluster import actor_cpus, cluster_cpus, import_ray

    ray = import_ray()
    if not ray.is_initialized():
        raise InputError("run_eval_ray needs a Ray connection: call it inside `with ray_session(...)`")
    routes, path, todo, total, skipped = plan_run(items, routes, out, concurrency, retry_errors)
    n_workers = max(1, min(workers or cluster_cpus(ray), concurrency, max(1, len(todo))))
    per_worker = math.ceil(concurrency / n_workers)
    t0 = time.perf_counter()
    if progress:
        progress(skipped, total)
    if not todo:  # everything recorded already: no actor to start
        return RayEvalStats(RunStats(total, skipped, 0, 0, time.perf_counter() - t0), 0, {})

    limiter = None
    if recipe.has_llm:
        limiter = ray.remote(CallLimiter).options(max_concurrency=10_000).remote(llm_calls or concurrency)
    worker_cls = ray.remote(num_cpus=actor_cpus(ray, n_workers))(EvalWorker)
    actors = [worker_cls.options(max_concurrency=per_worker).remote(recipe, limiter, dataset) for _ in range(n_workers)]
    counts = {"done": 0, "errors": 0}
    try:
        with path.open("a", encoding="utf-8") as fh:
            _fan_out(ray, actors, per_worker, todo, fh, counts, dataset,
                     lambda: progress and progress(skipped + counts["done"], total))
        limits = ray.get(limiter.stats.remote()) if limiter is not None else {}
    finally:
        for actor in actors:
            ray.kill(actor)
        if limiter is not None:
            ray.kill(limiter)
    run = RunStats(total, skipped, counts["done"], counts["errors"], time.perf_counter() - t0)
    return RayEvalStats(run, n_workers, limits)


def _fan_out(ray: Any, actors: list[Any], per_worker: int, todo: list[tuple[EvalItem, str]], fh: Any,
             counts: dict[str, int], dataset: str, tick: Callable[[], Any]) -> None:
    """Keep every actor busy with up to ``per_worker`` pairs; write records in ``todo`` order."""
    inflight: dict[Any, tuple[int, int]] = {}  # ref -> (index, actor)
    load = [0] * len(actors)
    ready: dict[int, dict[str, Any]] = {}
    next_submit = next_write = 0
    while next_write < len(todo):
        while next_submit < len(todo) and min(load) < per_worker:
            a = load.index(min(load))
            item, route = todo[next_submit]
            inflight[actors[a].run.remote(next_submit, item, route)] = (next_submit, a)
            load[a] += 1
            next_submit += 1
        finished, _ = ray.wait(list(inflight), num_returns=1)
        for ref in finished:
            index, a = inflight.pop(ref)
            load[a] -= 1
            try:
                _, rec, failed = ray.get(ref)
            except Exception as exc:  # noqa: BLE001 - a worker that died: the pair is recorded as failed
                item, route = todo[index]
                rec, failed = error_record(item, route, exc, 0.0, dataset), True
                rec["retryable"] = True
            counts["errors"] += int(failed)
            ready[index] = rec
        while next_write in ready:
            fh.write(json.dumps(ready.pop(next_write), ensure_ascii=False, default=str) + "\n")
            fh.flush()
            next_write += 1
            counts["done"] += 1
            tick()


__all__ = ["BoundedLLM", "CallLimiter", "EvalRecipe", "EvalWorker", "RayEvalStats", "run_eval_ray", "store_factory_of"]
