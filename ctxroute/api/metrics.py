"""Prometheus metrics of one app instance (own registry, so several apps can coexist)."""
from __future__ import annotations

from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.exposition import CONTENT_TYPE_LATEST

__all__ = ["Metrics", "CONTENT_TYPE_LATEST"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("ctxroute_requests", "HTTP requests", ["method", "path", "status"], registry=r)
        self.latency = Histogram(
            "ctxroute_request_latency_seconds", "HTTP request latency", ["method", "path"], registry=r,
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120),
        )
        self.tokens = Counter("ctxroute_llm_tokens", "LLM tokens used by queries", ["tenant", "kind"], registry=r)
        self.cost = Counter("ctxroute_llm_cost", "LLM cost of queries (profile currency)", registry=r)
        self.routes = Counter("ctxroute_route", "Routes taken by queries", ["route"], registry=r)
        self.cache = Counter("ctxroute_answer_cache", "Answer cache lookups", ["result"], registry=r)
        self.stage_latency = Histogram(
            "ctxroute_stage_latency_seconds", "Latency per query stage", ["stage"], registry=r,
            buckets=(0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1, 5, 30, 120),
        )
        self.redis_failures = Counter("ctxroute_redis_failures", "Redis calls that fell back to in-process", registry=r)
        self.jobs = Gauge("ctxroute_jobs_running", "Ingestion jobs running", registry=r)

    def observe(self, scope: Any, status: int, seconds: float) -> None:
        """Count one request under its route template (``/v1/collections/{name}``); a request
        served by a mounted app counts under ``<mount>/*``; no match at all is ``unmatched``."""
        route = scope.get("route")
        path = getattr(route, "path", None)
        if path is None:
            root = scope.get("root_path") or ""
            path = f"{root}/*" if root and scope.get("endpoint") is not None else "unmatched"
        method = scope.get("method", "")
        self.requests.labels(method, path, str(status)).inc()
        self.latency.labels(method, path).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)
