"""Completion cache: in-process LRU, real Redis, Redis outages; LLMConfig/build_llm."""
from __future__ import annotations

import asyncio
import logging
import time
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from ctxroute.errors import InputError, LLMServerError
from ctxroute.pipelines.llm.base import LLMRequest, LLMResponse, StreamDelta, StreamEnd
from ctxroute.pipelines.llm.cache import CachedLLM, CompletionCache, InProcessCache, RedisCache, cache_key
from ctxroute.pipelines.llm.factory import LLMConfig, build_llm, resolve_profile
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from tests.redis_fixture import RedisProcess

CACHE_LOGGER = "ctxroute.pipelines.llm.cache"


def req(text: str, **kw: object) -> LLMRequest:
    return LLMRequest.of("sys", text, **kw)


def echo(request: LLMRequest) -> str:
    return f"answer to {request.messages[-1].content}"


def resp(text: str) -> LLMResponse:
    return LLMResponse(text=text, prompt_tokens=1, completion_tokens=1, model="m")


def test_in_process_lru_evicts_least_recently_used() -> None:
    lru = InProcessCache(maxsize=2)
    lru.set("a", resp("A"))
    lru.set("b", resp("B"))
    assert lru.get("a") is not None  # a is now the most recent
    lru.set("c", resp("C"))
    assert lru.get("b") is None and lru.get("a") is not None and lru.get("c") is not None and len(lru) == 2
    with pytest.raises(InputError):
        InProcessCache(-1)


def test_cache_key_covers_what_changes_the_answer() -> None:
    base = req("q")
    k = cache_key("m", base)
    assert k == cache_key("m", req("q", stage="other.stage"))  # the label does not change the answer
    assert len({k, cache_key("m2", base), cache_key("m", req("q2")), cache_key("m", req("q", max_tokens=7)),
                cache_key("m", req("q", stop=("x",))), cache_key("m", req("q", temperature=0.5))}) == 6


async def test_repeated_request_is_served_from_cache() -> None:
    inner = ScriptedLLM(rules=[("", echo)])
    llm = CachedLLM(inner, CompletionCache(InProcessCache(16)))
    first = await llm.complete(req("q1"))
    second = await llm.complete(req("q1"))
    assert not first.cached and second.cached
    assert second.text == first.text and second.prompt_tokens == first.prompt_tokens
    assert len(inner.requests) == 1 and llm.cache.hits == 1 and llm.cache.misses == 1
    assert llm.count_tokens("a b") == inner.count_tokens("a b") and llm.profile == inner.profile


async def test_sampled_requests_and_errors_are_not_cached() -> None:
    inner = ScriptedLLM([LLMServerError("down", status=503)], rules=[], default="fine")
    llm = CachedLLM(inner, CompletionCache())
    with pytest.raises(LLMServerError):
        await llm.complete(req("q"))
    assert (await llm.complete(req("q"))).text == "fine"
    await llm.complete(req("hot", temperature=0.8))
    again = await llm.complete(req("hot", temperature=0.8))
    assert not again.cached and len(inner.requests) == 4
    sampled = CachedLLM(ScriptedLLM(default="x"), CompletionCache(), cache_sampled=True)
    await sampled.complete(req("hot", temperature=0.8))
    assert (await sampled.complete(req("hot", temperature=0.8))).cached


async def test_streams_are_stored_when_complete_and_replayed() -> None:
    inner = ScriptedLLM(default="one two three four five six seven eight")
    llm = CachedLLM(inner, CompletionCache())
    partial = llm.stream(req("s"))
    first = await partial.__anext__()
    assert isinstance(first, StreamDelta)
    await partial.aclose()  # abandoned: nothing stored
    assert (await llm.complete(req("other"))).cached is False
    items = [i async for i in llm.stream(req("s"))]
    assert len(items) > 2 and isinstance(items[-1], StreamEnd) and not items[-1].response.cached
    replay = [i async for i in llm.stream(req("s"))]
    assert len(replay) == 2 and isinstance(replay[0], StreamDelta) and isinstance(replay[1], StreamEnd)
    assert replay[0].text == items[-1].response.text and replay[1].response.cached
    assert (await llm.complete(req("s"))).cached  # a stored stream also answers complete()


async def test_redis_shares_answers_between_workers_with_ttl(redis_server: str) -> None:
    inner_a, inner_b = ScriptedLLM(rules=[("", echo)]), ScriptedLLM(rules=[("", echo)])
    worker_a = CachedLLM(inner_a, CompletionCache(InProcessCache(8), RedisCache(redis_server, ttl_s=120)))
    worker_b = CachedLLM(inner_b, CompletionCache(InProcessCache(8), RedisCache(redis_server, ttl_s=120)))
    question = req(f"shared {time.time_ns()}")
    miss = await worker_a.complete(question)
    hit = await worker_b.complete(question)
    assert not miss.cached and hit.cached and hit.text == miss.text
    assert len(inner_a.requests) == 1 and inner_b.requests == []
    client = aioredis.Redis.from_url(redis_server)
    try:
        key = cache_key(f"ScriptedLLM:{inner_a.profile.name}", question)
        assert 0 < await client.ttl(key) <= 120
    finally:
        await client.aclose()
    await worker_a.aclose()
    await worker_b.aclose()


async def test_redis_outage_serves_requests_and_warns_once(redis_restartable: RedisProcess, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger=CACHE_LOGGER)
    inner = ScriptedLLM(rules=[("", echo)])
    cache = CompletionCache(InProcessCache(64), RedisCache(redis_restartable.url, socket_timeout_s=0.3), retry_interval_s=0.3)
    llm = CachedLLM(inner, cache)
    await llm.complete(req("before"))
    assert cache.redis_available

    redis_restartable.stop()
    answers = [await llm.complete(req(f"during {i}")) for i in range(4)]
    assert [a.text for a in answers] == [f"answer to during {i}" for i in range(4)]
    assert (await llm.complete(req("before"))).cached  # still answered from the in-process LRU
    await asyncio.sleep(0.35)  # past the retry interval: one more (failing) attempt, no new warning
    assert (await llm.complete(req("during 5"))).text == "answer to during 5"
    warnings = [r for r in caplog.records if r.name == CACHE_LOGGER and r.levelno == logging.WARNING]
    assert len(warnings) == 1 and not cache.redis_available
    assert "unavailable" in warnings[0].getMessage()

    redis_restartable.start()
    await asyncio.sleep(0.35)
    await llm.complete(req("after"))
    assert cache.redis_available
    other = CachedLLM(ScriptedLLM(default="must not be called"), CompletionCache(InProcessCache(4), RedisCache(redis_restartable.url)))
    assert (await other.complete(req("after"))).text == "answer to after"  # written to Redis again
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1
    await llm.aclose()
    await other.aclose()


async def test_redis_down_from_the_start(caplog: pytest.LogCaptureFixture) -> None:
    from tests.redis_fixture import free_port

    caplog.set_level(logging.WARNING, logger=CACHE_LOGGER)
    cache = CompletionCache(redis=RedisCache(f"redis://:hunter2@127.0.0.1:{free_port()}/0", socket_timeout_s=0.2))
    llm = CachedLLM(ScriptedLLM(rules=[("", echo)]), cache)
    assert (await llm.complete(req("x"))).text == "answer to x"
    assert (await llm.complete(req("x"))).cached
    assert len(caplog.records) == 1 and "hunter2" not in caplog.text
    await llm.aclose()


def test_config_from_env_and_secrets_hidden() -> None:
    env = {
        "CTXROUTE_LLM_BASE_URL": "http://localhost:8000/v1",
        "CTXROUTE_LLM_MODEL": "Qwen/Qwen2.5-7B-Instruct",
        "CTXROUTE_LLM_API_KEY": "sk-secret-123",
        "CTXROUTE_LLM_TIMEOUT": "30",
        "CTXROUTE_REDIS_URL": "redis://:pw-secret@localhost:6379/0",
    }
    config = LLMConfig.from_env(env)
    assert (config.backend, config.model, config.timeout_s, config.api_key) == ("openai", "Qwen/Qwen2.5-7B-Instruct", 30.0, "sk-secret-123")
    assert "sk-secret-123" not in repr(config) and "pw-secret" not in repr(config) and "***" in repr(config)
    assert resolve_profile(config).name == "qwen2.5-7b-instruct"
    assert LLMConfig.from_env({}).backend == "local"
    assert resolve_profile(LLMConfig.from_env({})).name == "smollm2-135m-instruct"
    with pytest.raises(InputError, match="CTXROUTE_LLM_TIMEOUT"):
        LLMConfig.from_env({"CTXROUTE_LLM_TIMEOUT": "soon"})
    with pytest.raises(InputError, match="backend"):
        LLMConfig.from_env({"CTXROUTE_LLM_BACKEND": "gpt"})
    with pytest.raises(InputError, match="CTXROUTE_LLM_MODEL"):
        LLMConfig.from_env({"CTXROUTE_LLM_BASE_URL": "http://x/v1"})


def test_unknown_model_needs_an_explicit_profile(tmp_path: Path) -> None:
    config = LLMConfig(backend="openai", base_url="http://x/v1", model="my-finetune")
    with pytest.raises(InputError, match="CTXROUTE_LLM_PROFILE"):
        build_llm(config)
    generic = resolve_profile(LLMConfig(backend="openai", base_url="http://x/v1", model="my-finetune", profile="generic"))
    assert (generic.name, generic.context_window) == ("my-finetune", 8192)
    profiles = tmp_path / "p.yaml"
    profiles.write_text("- {name: my-finetune, context_window: 32000, usable_window: 20000}\n")
    mine = LLMConfig(backend="openai", base_url="http://x/v1", model="my-finetune", profiles_file=profiles)
    assert resolve_profile(mine).usable_window == 20000


async def test_build_llm_wraps_in_cache() -> None:
    from ctxroute.pipelines.llm.openai import OpenAICompatibleLLM

    llm = build_llm(LLMConfig(backend="openai", base_url="http://localhost:1/v1", model="gpt-4o-mini", api_key="sk-zzz"))
    assert isinstance(llm, CachedLLM) and isinstance(llm.inner, OpenAICompatibleLLM)
    assert llm.profile.name == "gpt-4o-mini" and "sk-zzz" not in repr(llm)
    bare = build_llm(LLMConfig(backend="scripted", cache_size=0))
    assert isinstance(bare, ScriptedLLM)
    await llm.aclose()


async def test_identical_concurrent_requests_call_the_model_once() -> None:
    inner = ScriptedLLM(rules=[("", echo)], latency_s=0.05)
    llm = CachedLLM(inner, CompletionCache())
    answers = await asyncio.gather(*(llm.complete(req("same")) for _ in range(5)), llm.complete(req("different")))
    assert len(inner.requests) == 2
    assert {a.text for a in answers[:5]} == {"answer to same"} and sum(not a.cached for a in answers[:5]) == 1
    failing = CachedLLM(ScriptedLLM([LLMServerError("down", status=503), "later"], latency_s=0.05), CompletionCache())
    results = await asyncio.gather(*(failing.complete(req("q")) for _ in range(3)), return_exceptions=True)
    assert all(isinstance(r, LLMServerError) for r in results)
    assert (await failing.complete(req("q"))).text == "later"  # failures are not cached


async def test_waiters_take_over_when_the_running_call_is_cancelled() -> None:
    inner = ScriptedLLM(rules=[("", echo)], latency_s=0.1)
    llm = CachedLLM(inner, CompletionCache())
    owner = asyncio.create_task(llm.complete(req("q")))
    await asyncio.sleep(0.01)
    waiter = asyncio.create_task(llm.complete(req("q")))
    await asyncio.sleep(0.01)
    owner.cancel()
    assert (await waiter).text == "answer to q"
    with pytest.raises(asyncio.CancelledError):
        await owner
    assert len(inner.requests) == 2
