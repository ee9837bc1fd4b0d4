"""One shared Redis connection with graceful degradation: when Redis fails, callers fall back
to their in-process twin for a short cool-down instead of returning a 5xx."""
from __future__ import annotations

import asyncio
import time
from typing import Awaitable, Callable, TypeVar

import redis.asyncio as aioredis
from redis.exceptions import RedisError

T = TypeVar("T")


class RedisLink:
    """``await link.run(fn)`` returns ``fn(client)``'s result, or ``None`` when Redis is not
    configured or currently failing (the caller then uses its in-process fallback)."""

    def __init__(self, url: str, *, timeout_s: float = 0.5, cooldown_s: float = 2.0,
                 on_failure: Callable[[], None] | None = None) -> None:
        self.url = url
        self._timeout_s = timeout_s
        self._cooldown_s = cooldown_s
        self._down_until = 0.0
        self._on_failure = on_failure
        self._client: aioredis.Redis | None = None
        if url:
            self._client = aioredis.Redis.from_url(
                url, socket_timeout=timeout_s, socket_connect_timeout=timeout_s, health_check_interval=30,
            )

    @property
    def configured(self) -> bool:
        return self._client is not None

    @property
    def healthy(self) -> bool:
        return self._client is not None and time.monotonic() >= self._down_until

    async def run(self, fn: Callable[[aioredis.Redis], Awaitable[T]]) -> T | None:
        if self._client is None or time.monotonic() < self._down_until:
            return None
        try:
            return await asyncio.wait_for(fn(self._client), timeout=self._timeout_s * 2)
        except (RedisError, OSError, asyncio.TimeoutError):
            self._down_until = time.monotonic() + self._cooldown_s
            if self._on_failure is not None:
                self._on_failure()
            return None

    async def ping(self) -> bool:
        return bool(await self.run(lambda r: r.ping()))

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()

