"""Answer cache keyed by (tenant, collection, collection version, question, route, model,
options). Redis when configured, an in-process LRU otherwise or while Redis is down. A change
to a collection changes its version, so a stale answer is never served."""
from __future__ import annotations

import hashlib
import json
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from ctxroute.api.redis_link import RedisLink


@dataclass(frozen=True)
class CacheKey:
    tenant: str
    collection: str
    version: str
    question: str
    route: str  # requested route or "auto"
    model: str
    options: str = ""  # top_k, budget: anything else that changes the answer

    def digest(self) -> str:
        question = " ".join(self.question.split()).casefold()
        raw = json.dumps([self.tenant, self.collection, self.version, question, self.route, self.model, self.options])
        return "ctxroute:ans:" + hashlib.sha256(raw.encode()).hexdigest()


class _LRU:
    def __init__(self, size: int) -> None:
        self._size = size
        self._data: OrderedDict[str, tuple[float, str]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: str) -> str | None:
        with self._lock:
            item = self._data.get(key)
            if item is None:
                return None
            expires, value = item
            if expires < time.monotonic():
                del self._data[key]
                return None
            self._data.move_to_end(key)
            return value

    def put(self, key: str, value: str, ttl: float) -> None:
        if self._size <= 0:
            return
        with self._lock:
            self._data[key] = (time.monotonic() + ttl, value)
            self._data.move_to_end(key)
            while len(self._data) > self._size:
                self._data.popitem(last=False)


class AnswerCache:
    """``get`` returns the cached JSON payload (a dict) or None; ``put`` stores one."""

    def __init__(self, link: RedisLink, *, ttl_s: int, size: int) -> None:
        self._link = link
        self._ttl = ttl_s
        self._local = _LRU(size)

    @property
    def enabled(self) -> bool:
        return self._ttl > 0

    async def get(self, key: CacheKey) -> dict[str, Any] | None:
        if not self.enabled:
            return None
        k = key.digest()
        raw: Any = None
        if self._link.healthy:
            raw = await self._link.run(lambda r: r.get(k))
        if raw is None:
            raw = self._local.get(k)
        if raw is None:
            return None
        try:
            return json.loads(raw)
        except ValueError:
            return None

    async def put(self, key: CacheKey, payload: dict[str, Any]) -> None:
        if not self.enabled:
            return
        k = key.digest()
        raw = json.dumps(payload, separators=(",", ":"))
        stored = await self._link.run(lambda r: r.set(k, raw, ex=self._ttl))
        if not stored:
            self._local.put(k, raw, self._ttl)
