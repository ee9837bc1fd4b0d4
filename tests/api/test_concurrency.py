"""Concurrency and Redis: 50 parallel queries finish without errors; the answer cache and the
limits live in a real Redis, and a Redis outage mid-test degrades to in-process without 5xx."""
from __future__ import annotations

import asyncio

import httpx
import redis
from httpx_sse import aconnect_sse

from ctxroute.pipelines.llm.scripted import ScriptedLLM
from tests.api.conftest import DOCS, upload

QUESTIONS = [
    "What is the wind turbine rated at?", "Who is the harbour master?", "When does the harvest start?",
    "Who founded the station?", "How much does mooring cost?", "How many apple varieties are grown?",
    "Where is fuel sold?", "When are weather balloons launched?", "Who planted the orchard?",
    "What does the orchard shop sell?",
]


def _setup(server) -> None:  # type: ignore[no-untyped-def]
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/v1/collections", json={"name": "par"}).status_code == 201
        assert upload(c, "par", DOCS).status_code == 201


class _CountingLLM(ScriptedLLM):
    """Records the most LLM calls in flight at once."""

    def __init__(self, *args, **kw) -> None:  # type: ignore[no-untyped-def]
        super().__init__(*args, **kw)
        self.in_flight = 0
        self.max_in_flight = 0

    async def _reply(self, request):  # type: ignore[no-untyped-def]
        self.in_flight += 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            return await super()._reply(request)
        finally:
            self.in_flight -= 1


async def test_fifty_parallel_queries(settings_factory, live_server, redis_server):
    llm = _CountingLLM(default="The station was founded in 1987 [S2].", latency_s=0.05)
    server = live_server(settings_factory(redis_url=redis_server, reader="llm", rate_limit_per_min=10_000), llm=llm)
    _setup(server)
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:

        async def one(i: int) -> httpx.Response:
            q = QUESTIONS[i % len(QUESTIONS)] + f" (variant {i})"
            body = {"question": q, "cache": i % 2 == 0, "route": ["rag", "extractive", None][i % 3]}
            return await c.post("/v1/collections/par/query", json=body)

        async def streamed(i: int) -> list[str]:
            async with aconnect_sse(c, "POST", "/v1/collections/par/query",
                                    json={"question": QUESTIONS[i], "stream": True, "route": "rag"}) as source:
                return [sse.event async for sse in source.aiter_sse()]

        results = await asyncio.gather(*(one(i) for i in range(50)), *(streamed(i) for i in range(10)))
    responses, streams = results[:50], results[50:]
    assert [r.status_code for r in responses] == [200] * 50, [r.text for r in responses if r.status_code != 200][:3]
    assert all(r.json()["answer"] for r in responses)
    for events in streams:
        assert events[0] == "decision" and events[-1] == "done" and "error" not in events, events
    assert len(llm.requests) >= 20
    # the scripted model sleeps 50 ms per call: served one at a time, no two calls would overlap
    assert llm.max_in_flight >= 4, f"queries were served serially (at most {llm.max_in_flight} LLM calls at once)"


async def test_redis_backs_the_cache_and_an_outage_degrades(settings_factory, live_server, redis_restartable):
    server = live_server(settings_factory(redis_url=redis_restartable.url, rate_limit_per_min=1000))
    _setup(server)
    r = redis.Redis.from_url(redis_restartable.url)
    q = {"question": "Who is the harbour master?"}
    async with httpx.AsyncClient(base_url=server.url, timeout=30) as c:
        first = await c.post("/v1/collections/par/query", json=q)
        assert first.status_code == 200 and not first.json()["cached"]
        assert r.keys("ctxroute:ans:*"), "the answer was not stored in Redis"
        assert r.keys("ctxroute:lim:rate:*"), "the rate limit does not count in Redis"
        assert (await c.post("/v1/collections/par/query", json=q)).json()["cached"]
        ready = (await c.get("/readyz")).json()
        assert ready["checks"]["redis"] == "ok"

        redis_restartable.stop()
        r.close()
        # outage: every request still answers (no 5xx), the cache falls back to in-process
        statuses = []
        for i in range(3):
            for question in QUESTIONS[:4]:
                resp = await c.post("/v1/collections/par/query", json={"question": question})
                statuses.append(resp.status_code)
                if i > 0:
                    assert resp.json()["cached"], "in-process fallback cache did not serve the repeat"
            async with aconnect_sse(c, "POST", "/v1/collections/par/query",
                                    json={"question": QUESTIONS[5], "stream": True}) as source:
                events = [sse.event async for sse in source.aiter_sse()]
            assert events[-1] == "done"
        assert set(statuses) == {200}, statuses
        assert (await c.get("/v1/collections")).status_code == 200
        ready = (await c.get("/readyz"))
        assert ready.status_code == 200 and ready.json()["checks"]["redis"].startswith("degraded")
        metrics = (await c.get("/metrics")).text
        assert "ctxroute_redis_failures_total" in metrics
        failures = [line for line in metrics.splitlines() if line.startswith("ctxroute_redis_failures_total")]
        assert float(failures[0].split()[-1]) >= 1

        # recovery: after the cool-down Redis is used again
        redis_restartable.start()
        await asyncio.sleep(2.2)
        resp = await c.post("/v1/collections/par/query", json={"question": "Who planted the orchard?"})
        assert resp.status_code == 200
    r2 = redis.Redis.from_url(redis_restartable.url)
    assert r2.keys("ctxroute:ans:*")
    r2.close()
