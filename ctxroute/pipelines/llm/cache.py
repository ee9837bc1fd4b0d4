"""Completion cache: ``CachedLLM`` wraps any ``LLMClient``; ``CompletionCache`` keeps answers in
an in-process LRU and, optionally, in Redis shared by several workers.

Redis is a convenience, never a dependency of a request: when it is down or goes away the
cache logs ONE warning per outage, serves from the in-process LRU and tries Redis again at
most every ``retry_interval_s``. Only deterministic requests (``temperature == 0``) are cached
unless ``cache_sampled=True``.
"""
from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import json
import logging
import time
from collections import OrderedDict
from typing import Any, AsyncIterator

from ctxroute.errors import InputError
from ctxroute.pipelines.llm.base import LLMClient, LLMRequest, LLMResponse, StreamDelta, StreamEnd, StreamItem
from ctxroute.pipelines.llm.openai import redact_url

logger = logging.getLogger(__name__)

KEY_VERSION = "v1"
DEFAULT_TTL_S = 7 * 24 * 3600


def cache_key(model: str, request: LLMRequest) -> str:
    """sha256 over the model and every request field that changes the answer (not ``stage``)."""
    payload = {
        "model": model,
        "messages": [[m.role, m.content] for m in request.messages],
        "max_tokens": request.max_tokens,
        "temperature": request.temperature,
        "stop": list(request.stop),
    }
    digest = hashlib.sha256(json.dumps(payload, sort_keys=True, ensure_ascii=False).encode("utf-8")).hexdigest()
    return f"ctxroute:llm:{KEY_VERSION}:{digest}"


def _encode(response: LLMResponse) -> str:
    return json.dumps(dataclasses.asdict(response), ensure_ascii=False)


def _decode(raw: str | bytes) -> LLMResponse | None:
    try:
        data = json.loads(raw)
        return LLMResponse(**data)
    except (ValueError, TypeError):
        return None


class InProcessCache:
    """A bounded LRU of responses, local to this process."""

    def __init__(self, maxsize: int = 1024) -> None:
        if maxsize < 0:
            raise InputError(f"cache maxsize must be >= 0, got {maxsize}")
        self.maxsize = maxsize
        self._items: OrderedDict[str, LLMResponse] = OrderedDict()

    def __len__(self) -> int:
        return len(self._items)

    def get(self, key: str) -> LLMResponse | None:
        item = self._items.get(key)
        if item is not None:
            self._items.move_to_end(key)
        return item

    def set(self, key: str, response: LLMResponse) -> None:
        if self.maxsize == 0:
            return
        self._items[key] = response
        self._items.move_to_end(key)
        while len(self._items) > self.maxsize:
            self._items.popitem(last=False)


class RedisCache:
    """Responses in Redis under ``ctxroute:llm:v1:<sha256>`` with a TTL. Errors propagate
    (``CompletionCache`` decides what an outage means). Short socket timeouts, no retries."""

    def __init__(self, url: str, ttl_s: int = DEFAULT_TTL_S, *, socket_timeout_s: float = 0.5) -> None:
        if not url.startswith(("redis://", "rediss://", "unix://")):
            raise InputError(f"Redis URL {redact_url(url)!r} must start with redis://, rediss:// or unix://; check CTXROUTE_REDIS_URL")
        self.url = url
        self.ttl_s = ttl_s
        self.socket_timeout_s = socket_timeout_s
        self._client: Any = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def __repr__(self) -> str:
        return f"RedisCache({redact_url(self.url)!r}, ttl_s={self.ttl_s})"

    def _redis(self) -> Any:
        loop = asyncio.get_running_loop()
        if self._client is None or self._loop is not loop:
            import redis.asyncio as aioredis
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            self._client = aioredis.Redis.from_url(
                self.url,
                socket_timeout=self.socket_timeout_s,
                socket_connect_timeout=self.socket_timeout_s,
                retry=Retry(NoBackoff(), 0),
            )
            self._loop = loop
        return self._client

    async def get(self, key: str) -> LLMResponse | None:
        raw = await self._redis().get(key)
        return None if raw is None else _decode(raw)

    async def set(self, key: str, response: LLMResponse) -> None:
        await self._redis().set(key, _encode(response), ex=self.ttl_s)

    async def ping(self) -> bool:
        return bool(await self._redis().ping())

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            try:
                await client.aclose()
            except Exception:  # closing a client whose server or loop is gone
                pass


class CompletionCache:
    """In-process LRU in front of an optional Redis; Redis failures never fail a request."""

    def __init__(self, local: InProcessCache | None = None, redis: RedisCache | None = None, *, retry_interval_s: float = 5.0) -> None:
        self.local = local if local is not None else InProcessCache()
        self.redis = redis
        self.retry_interval_s = retry_interval_s
        self._down_since: float | None = None
        self._next_try = 0.0
        self.hits = 0
        self.misses = 0

    @property
    def redis_available(self) -> bool:
        """False while Redis is considered down (after a failure, until a retry succeeds)."""
        return self.redis is not None and self._down_since is None

    def _use_redis(self) -> bool:
        return self.redis is not None and (self._down_since is None or time.monotonic() >= self._next_try)

    def _failed(self, exc: BaseException) -> None:
        now = time.monotonic()
        if self._down_since is None:
            self._down_since = now
            logger.warning(
                "Redis completion cache at %s is unavailable (%s: %s); serving from the in-process cache and retrying every %g s",
                redact_url(self.redis.url) if self.redis else "?",
                type(exc).__name__,
                exc,
                self.retry_interval_s,
            )
        self._next_try = now + self.retry_interval_s

    def _succeeded(self) -> None:
        if self._down_since is not None:
            logger.info("Redis completion cache is back after %.1f s", time.monotonic() - self._down_since)
            self._down_since = None

    async def get(self, key: str) -> LLMResponse | None:
        hit = self.local.get(key)
        if hit is None and self._use_redis():
            assert self.redis is not None
            try:
                hit = await self.redis.get(key)
                self._succeeded()
            except Exception as exc:  # redis errors, OSError, timeouts: the cache must never fail a request
                self._failed(exc)
            if hit is not None:
                self.local.set(key, hit)
        if hit is None:
            self.misses += 1
        else:
            self.hits += 1
        return hit

    async def set(self, key: str, response: LLMResponse) -> None:
        stored = dataclasses.replace(response, cached=False)
        self.local.set(key, stored)
        if self._use_redis():
            assert self.redis is not None
            try:
                await self.redis.set(key, stored)
                self._succeeded()
            except Exception as exc:
                self._failed(exc)

    async def aclose(self) -> None:
        if self.redis is not None:
            await self.redis.aclose()


class CachedLLM:
    """An ``LLMClient`` that answers repeated requests from a ``CompletionCache``."""

    def __init__(self, inner: LLMClient, cache: CompletionCache, *, cache_sampled: bool = False) -> None:
        self.inner = inner
        self.cache = cache
        self.cache_sampled = cache_sampled
        self.profile = inner.profile
        self._inflight: dict[str, asyncio.Future[LLMResponse]] = {}

    def __repr__(self) -> str:
        return f"CachedLLM({self.inner!r})"

    def count_tokens(self, text: str) -> int:
        return self.inner.count_tokens(text)

    def _key(self, request: LLMRequest) -> str | None:
        if request.temperature != 0 and not self.cache_sampled:
            return None
        model = getattr(self.inner, "model", None) or self.profile.name
        return cache_key(f"{type(self.inner).__name__}:{model}", request)

    async def _lookup(self, key: str | None) -> LLMResponse | None:
        if key is None:
            return None
        start = time.perf_counter()
        hit = await self.cache.get(key)
        if hit is None:
            return None
        return dataclasses.replace(hit, cached=True, latency_ms=(time.perf_counter() - start) * 1000.0)

    async def complete(self, request: LLMRequest) -> LLMResponse:
        """Cached answer, else one call to the inner client; identical requests that arrive
        while that call runs wait for it instead of calling again (single flight)."""
        key = self._key(request)
        hit = await self._lookup(key)
        if hit is not None or key is None:
            return hit if hit is not None else await self.inner.complete(request)
        running = self._inflight.get(key)
        if running is not None and running.get_loop() is asyncio.get_running_loop():
            try:
                shared = await asyncio.shield(running)
                return dataclasses.replace(shared, cached=True, latency_ms=0.0)
            except asyncio.CancelledError:
                if not running.cancelled():  # this caller was cancelled, not the shared call
                    raise
            return await self.complete(request)  # the caller that ran it was cancelled: run it here
        future: asyncio.Future[LLMResponse] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            response = await self.inner.complete(request)
            await self.cache.set(key, response)
            future.set_result(response)
            return response
        except Exception as exc:
            future.set_exception(exc)
            future.exception()  # mark retrieved: nobody may be waiting
            raise
        except BaseException:  # cancelled: waiters run the request themselves
            future.cancel()
            raise
        finally:
            if self._inflight.get(key) is future:
                del self._inflight[key]

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]:
        key = self._key(request)
        hit = await self._lookup(key)
        if hit is not None:
            if hit.text:
                yield StreamDelta(hit.text)
            yield StreamEnd(hit)
            return
        async for item in self.inner.stream(request):
            if isinstance(item, StreamEnd) and key is not None:
                await self.cache.set(key, item.response)
            yield item

    async def aclose(self) -> None:
        await self.inner.aclose()
        await self.cache.aclose()
