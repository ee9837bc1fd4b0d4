"""Per-tenant request rate and daily token budget: Redis-backed when configured (so several
workers share the counts), in-process otherwise or while Redis is down."""
from __future__ import annotations

import math
import threading
import time

from ctxroute.api.errors import RateLimited, TenantBudgetExhausted
from ctxroute.api.redis_link import RedisLink


class _WindowCounter:
    """Fixed-window counters keyed by (name, window index); old windows are dropped."""

    def __init__(self) -> None:
        self._counts: dict[tuple[str, int], int] = {}
        self._lock = threading.Lock()

    def add(self, name: str, window: int, amount: int) -> int:
        with self._lock:
            if len(self._counts) > 10_000:
                self._counts = {k: v for k, v in self._counts.items() if k[1] >= window}
            key = (name, window)
            self._counts[key] = self._counts.get(key, 0) + amount
            return self._counts[key]

    def get(self, name: str, window: int) -> int:
        with self._lock:
            return self._counts.get((name, window), 0)


class Limits:
    """``await check_rate(tenant)`` before work; ``check_tokens`` before an LLM query and
    ``record_tokens`` after it. Both raise 429-mapped errors carrying ``retry_after``."""

    def __init__(self, link: RedisLink, *, rate_per_min: int, tokens_per_day: int) -> None:
        self._link = link
        self.rate_per_min = rate_per_min
        self.tokens_per_day = tokens_per_day
        self._local = _WindowCounter()

    async def _add(self, key: str, window: int, amount: int, ttl: int) -> int:
        rkey = f"ctxroute:lim:{key}:{window}"

        async def op(r):  # type: ignore[no-untyped-def]
            async with r.pipeline(transaction=True) as p:
                p.incrby(rkey, amount)
                p.expire(rkey, ttl)
                res = await p.execute()
            return int(res[0])

        value = await self._link.run(op)
        return self._local.add(key, window, amount) if value is None else value

    async def check_rate(self, tenant: str) -> None:
        if self.rate_per_min <= 0:
            return
        now = time.time()
        window = int(now // 60)
        count = await self._add(f"rate:{tenant}", window, 1, 120)
        if count > self.rate_per_min:
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise RateLimited(
                f"tenant {tenant!r} sent more than {self.rate_per_min} requests this minute; retry in {retry} s "
                "or ask the operator to raise CTXROUTE_RATE_LIMIT_PER_MIN",
                retry_after=retry,
            )

    async def check_tokens(self, tenant: str) -> None:
        if self.tokens_per_day <= 0:
            return
        now = time.time()
        day = int(now // 86400)
        used = await self._add(f"tokens:{tenant}", day, 0, 2 * 86400)
        if used >= self.tokens_per_day:
            retry = max(1, math.ceil((day + 1) * 86400 - now))
            raise TenantBudgetExhausted(
                f"tenant {tenant!r} used {used} of its {self.tokens_per_day} LLM tokens today; retry in {retry} s "
                "or ask the operator to raise CTXROUTE_TENANT_TOKENS_PER_DAY",
                retry_after=retry,
            )

    async def record_tokens(self, tenant: str, tokens: int) -> None:
        if self.tokens_per_day <= 0 or tokens <= 0:
            return
        await self._add(f"tokens:{tenant}", int(time.time() // 86400), tokens, 2 * 86400)

    # --- failed authentication (per client address) ------------------------------------
    async def check_auth_failures(self, client: str, limit: int) -> None:
        """429 once ``client`` failed to authenticate ``limit`` times this minute (0: off),
        before its key is even looked at, so guessing keys gets nowhere."""
        if limit <= 0:
            return
        now = time.time()
        window = int(now // 60)
        if await self._add(f"authfail:{client}", window, 0, 120) >= limit:
            retry = max(1, math.ceil((window + 1) * 60 - now))
            raise RateLimited(
                f"too many failed authentications from {client} this minute; retry in {retry} s with a valid key "
                "(CTXROUTE_AUTH_FAILURES_PER_MIN)",
                retry_after=retry,
            )

    async def record_auth_failure(self, client: str) -> None:
        await self._add(f"authfail:{client}", int(time.time() // 60), 1, 120)
