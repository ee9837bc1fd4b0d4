"""Rate limit, token budget and answer cache: in-process, and degrading when Redis is down."""
from __future__ import annotations

import socket

import pytest

from ctxroute.api.cache import AnswerCache, CacheKey
from ctxroute.api.errors import RateLimited, TenantBudgetExhausted
from ctxroute.api.limits import Limits
from ctxroute.api.redis_link import RedisLink


def _key(**kw: str) -> CacheKey:
    base = dict(tenant="t", collection="c", version="v1", question="What is X?", route="auto", model="m")
    base.update(kw)
    return CacheKey(**base)


def _dead_redis_url() -> str:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{s.getsockname()[1]}/0"


def test_cache_key_separates_everything_that_changes_an_answer():
    k = _key()
    assert _key(question="  what is   x? ").digest() == k.digest()  # whitespace and case only
    for field, value in [("tenant", "u"), ("collection", "d"), ("version", "v2"), ("question", "What is Y?"),
                         ("route", "rag"), ("model", "m2"), ("options", "k=3")]:
        assert _key(**{field: value}).digest() != k.digest(), field


async def test_in_process_cache_roundtrip_and_lru():
    cache = AnswerCache(RedisLink(""), ttl_s=60, size=2)
    await cache.put(_key(question="a"), {"answer": "A"})
    await cache.put(_key(question="b"), {"answer": "B"})
    assert await cache.get(_key(question="a")) == {"answer": "A"}
    await cache.put(_key(question="c"), {"answer": "C"})  # evicts b, the least recently used
    assert await cache.get(_key(question="b")) is None
    assert await cache.get(_key(question="a")) == {"answer": "A"}
    assert await cache.get(_key(question="a", version="v2")) is None


async def test_disabled_cache_stores_nothing():
    cache = AnswerCache(RedisLink(""), ttl_s=0, size=10)
    await cache.put(_key(), {"answer": "A"})
    assert await cache.get(_key()) is None


async def test_unreachable_redis_falls_back_in_process():
    failures: list[int] = []
    link = RedisLink(_dead_redis_url(), timeout_s=0.2, on_failure=lambda: failures.append(1))
    cache = AnswerCache(link, ttl_s=60, size=10)
    await cache.put(_key(), {"answer": "A"})
    assert await cache.get(_key()) == {"answer": "A"}
    assert failures and not link.healthy
    limits = Limits(link, rate_per_min=2, tokens_per_day=0)
    await limits.check_rate("t")
    await limits.check_rate("t")
    with pytest.raises(RateLimited):
        await limits.check_rate("t")
    await link.aclose()


async def test_rate_limit_is_per_tenant_with_retry_after():
    limits = Limits(RedisLink(""), rate_per_min=3, tokens_per_day=0)
    for _ in range(3):
        await limits.check_rate("a")
    with pytest.raises(RateLimited) as info:
        await limits.check_rate("a")
    assert 1 <= info.value.retry_after <= 60
    await limits.check_rate("b")  # another tenant is not affected


async def test_token_budget():
    limits = Limits(RedisLink(""), rate_per_min=0, tokens_per_day=100)
    await limits.check_tokens("a")
    await limits.record_tokens("a", 60)
    await limits.check_tokens("a")
    await limits.record_tokens("a", 60)
    with pytest.raises(TenantBudgetExhausted, match="120 of its 100"):
        await limits.check_tokens("a")
    await limits.check_tokens("b")
