"""A map-reduce answer streamed over SSE reports its map calls as ``progress`` events (real
uvicorn server, scripted model with a small window so the documents need several map calls)."""
from __future__ import annotations

import httpx
from httpx_sse import aconnect_sse

from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.types import ModelProfile
from tests.api.conftest import DOCS, upload


async def test_map_reduce_progress_events_over_sse(settings_factory, live_server) -> None:  # type: ignore[no-untyped-def]
    small = ModelProfile(name="small", context_window=2000, usable_window=700, size_class="small")
    llm = ScriptedLLM(default="NO_INFORMATION", profile=small)
    server = live_server(settings_factory(reader="llm", rate_limit_per_min=10_000), llm=llm)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/v1/collections", json={"name": "mr"}).status_code == 201
        assert upload(c, "mr", DOCS).status_code == 201
    async with httpx.AsyncClient(base_url=server.url, timeout=60) as c:
        async with aconnect_sse(c, "POST", "/v1/collections/mr/query",
                                json={"question": "Who founded the station?", "stream": True, "route": "mr"}) as source:
            events = [(sse.event, sse.json()) async for sse in source.aiter_sse()]
    kinds = [k for k, _ in events]
    assert kinds[0] == "decision" and kinds[-1] == "done", kinds
    progress = [d for k, d in events if k == "progress"]
    maps = [d for d in progress if d["stage"] == "map"]
    assert maps and maps[0]["done"] == 0 and maps[0]["total"] >= 2
    assert [d["done"] for d in maps[1:]] == list(range(1, maps[0]["total"] + 1))  # one event per map call
