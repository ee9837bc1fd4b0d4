"""Stateless API replicas: two `ctxroute serve` processes (real uvicorn, different ports, each
with its own empty CTXROUTE_HOME) sharing one PostgreSQL store (pgserver) and one Redis.

A write through one replica is visible through the other on the next request; the answer
cache (in Redis, keyed by collection version) is shared and invalidated across replicas;
concurrent writes through both lose and duplicate nothing; a replica SIGKILLed in the middle of
an ingestion job leaves the job to the other replica's in-process worker, which finishes it.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import pytest

pytest.importorskip("arq", reason="the Redis job queue needs arq (pip install 'ctxroute[scale]')")

from tests.api.conftest import free_port  # noqa: E402
from tests.pg_fixture import pg_missing  # noqa: E402
from tests.redis_fixture import RedisProcess, _binary_or_skip  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


class Replica:
    def __init__(self, store_url: str, redis_url: str, log: Path, **env_extra: str) -> None:
        self.home = Path(tempfile.mkdtemp(prefix="ctxroute-replica-"))
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
        env.update(CTXROUTE_HOME=str(self.home), CTXROUTE_STORE=store_url, CTXROUTE_REDIS_URL=redis_url,
                   CTXROUTE_EMBEDDER="hashing", CTXROUTE_READER="extractive", CTXROUTE_RATE_LIMIT_PER_MIN="0",
                   HF_HUB_OFFLINE="1", **env_extra)
        self.log = log
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ctxroute", "serve", "--port", str(self.port), "--log-level", "warning"],
            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
        self.client = httpx.Client(base_url=self.url, timeout=120)

    def wait_ready(self) -> "Replica":
        deadline = time.monotonic() + 120
        while True:
            assert self.proc.poll() is None, f"replica exited: {self.log.read_text()[-3000:]}"
            try:
                if httpx.get(f"{self.url}/readyz", timeout=1).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "replica not ready in 120 s"
            time.sleep(0.2)

    def stop(self) -> None:
        self.client.close()
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=30)


def _start_pair(store_url: str, redis_url: str, log: Path, **env: str) -> list[Replica]:
    pair = [Replica(store_url, redis_url, log, **env) for _ in range(2)]  # both start at once
    return [r.wait_ready() for r in pair]


@pytest.fixture(scope="module")
def shared(pg_server: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, str, Path]]:
    """(store URL, Redis URL, log) of this module: a database of its own and a Redis of its own
    (no other test's queued jobs reach these replicas' workers)."""
    reason = pg_missing()
    if reason:
        pytest.skip(reason)
    import psycopg

    base = pg_server.get_uri()
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute("DROP DATABASE IF EXISTS ctxroute_replicas")
        conn.execute("CREATE DATABASE ctxroute_replicas")
    redis = RedisProcess(_binary_or_skip())
    redis.start()
    try:
        yield base.replace("/postgres?", "/ctxroute_replicas?", 1), redis.url, tmp_path_factory.mktemp("replicas") / "log"
    finally:
        redis.close()


@pytest.fixture(scope="module")
def pair(shared: tuple[str, str, Path]) -> Iterator[list[Replica]]:
    replicas = _start_pair(*shared)
    try:
        yield replicas
    finally:
        for r in replicas:
            r.stop()


def _doc(i: int, tag: str) -> dict[str, str]:
    return {"id": f"{tag}-{i}", "title": f"Record {tag} {i}",
            "text": f"Record {tag} {i}. The lighthouse keeper {tag}{i} logged {i * 3} ships at dawn. "
                    f"The harbour fee for vessel {tag}{i} was {100 + i} dollars."}


def _ids(r: Replica, name: str) -> list[str]:
    resp = r.client.get(f"/v1/collections/{name}/documents")
    assert resp.status_code == 200, resp.text
    return [d["id"] for d in resp.json()["documents"]]


def test_a_write_through_one_is_read_through_the_other(pair: list[Replica]) -> None:
    a, b = pair
    assert a.client.post("/v1/collections", json={"name": "shared"}).status_code == 201
    assert b.client.get("/v1/collections/shared").json()["documents"] == 0
    assert b.client.post("/v1/collections", json={"name": "shared"}).status_code == 409  # one record
    r = a.client.post("/v1/collections/shared/documents", json={"documents": [_doc(1, "a"), _doc(2, "a")]})
    assert r.status_code == 201, r.text
    assert _ids(b, "shared") == ["a-1", "a-2"]  # the very next request through the other replica
    q = b.client.post("/v1/collections/shared/query", json={"question": "Who logged ships at dawn?", "cache": False})
    assert q.status_code == 200, q.text
    assert q.json()["citations"] and {c["doc_id"] for c in q.json()["citations"]} <= {"a-1", "a-2"}
    assert b.client.delete("/v1/collections/shared/documents/a-1").status_code == 204
    assert _ids(a, "shared") == ["a-2"]
    assert a.client.get("/v1/collections/shared/documents/a-1").status_code == 404
    assert [c["name"] for c in b.client.get("/v1/collections").json()["collections"]] == ["shared"]
    assert a.client.delete("/v1/collections/shared").status_code == 204
    assert b.client.get("/v1/collections/shared").status_code == 404
    assert b.client.post("/v1/collections/shared/query", json={"question": "anything?"}).status_code == 404


def test_answer_cache_is_shared_and_invalidated_by_version(pair: list[Replica]) -> None:
    a, b = pair
    assert a.client.post("/v1/collections", json={"name": "cached"}).status_code == 201
    assert a.client.post("/v1/collections/cached/documents", json={"documents": [_doc(1, "c")]}).status_code == 201
    question = {"question": "What was the harbour fee for vessel c7?"}
    first = a.client.post("/v1/collections/cached/query", json=question).json()
    assert first["cached"] is False
    again = b.client.post("/v1/collections/cached/query", json=question).json()  # same version: shared hit
    assert again["cached"] is True and again["answer"] == first["answer"]
    assert again["collection_version"] == first["collection_version"]
    r = b.client.post("/v1/collections/cached/documents", json={"documents": [_doc(7, "c")]})
    assert r.status_code == 201
    after = a.client.post("/v1/collections/cached/query", json=question).json()  # new version through A
    assert after["cached"] is False and after["collection_version"] == r.json()["version"]
    assert after["collection_version"] != first["collection_version"]
    assert "c-7" in {c["doc_id"] for c in after["citations"]}, after
    assert b.client.post("/v1/collections/cached/query", json=question).json()["cached"] is True


def test_concurrent_writes_through_both_replicas(pair: list[Replica]) -> None:
    a, b = pair
    assert a.client.post("/v1/collections", json={"name": "busy"}).status_code == 201
    failures: list[str] = []
    n = 12

    def writer(r: Replica, tag: str) -> None:
        with httpx.Client(base_url=r.url, timeout=120) as c:
            for i in range(n):
                resp = c.post("/v1/collections/busy/documents", json={"documents": [_doc(i, tag)]})
                if resp.status_code != 201:
                    failures.append(f"{tag}-{i}: {resp.status_code} {resp.text[:300]}")
                if i % 3 == 0:  # reads interleaved with the other replica's writes
                    q = c.post("/v1/collections/busy/query", json={"question": f"lighthouse keeper {tag}{i}"})
                    if q.status_code != 200:
                        failures.append(f"query {tag}-{i}: {q.status_code} {q.text[:300]}")

    threads = [threading.Thread(target=writer, args=(r, tag)) for r, tag in ((a, "x"), (b, "y"), (a, "z"))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=600)
    assert not failures, failures
    expected = sorted(f"{t}-{i}" for t in "xyz" for i in range(n))
    for r in pair:
        ids = _ids(r, "busy")
        assert sorted(ids) == expected and len(ids) == len(set(ids))
        assert r.client.get("/v1/collections/busy").json()["documents"] == len(expected)


def _records(n: int) -> tuple[bytes, list[str]]:
    vocab = "harbour pilot vessel mooring fee orchard cider station glacier turbine".split()
    lines, ids = [], []
    for i in range(n):
        text = " ".join(f"{vocab[(i + j) % len(vocab)]}{j % 89}" for j in range(120)) + f". Record {i} ends here."
        ids.append(f"rec-{i}")
        lines.append(json.dumps({"id": ids[-1], "text": text}))
    return "\n".join(lines).encode(), ids


def test_replica_killed_mid_ingest_the_other_finishes(shared: tuple[str, str, Path]) -> None:
    """The replica whose in-process worker runs an ingestion job is SIGKILLed after the job's
    first commits; the other replica's worker takes the job over (the lease lapses) and every
    document ends up in the shared store exactly once."""
    import redis

    store_url, _, log = shared
    own_redis = RedisProcess(_binary_or_skip())  # the module's replicas must not take this job
    own_redis.start()
    redis_url = own_redis.url
    replicas = _start_pair(store_url, redis_url, log, CTXROUTE_JOB_LEASE_S="2", CTXROUTE_JOB_BATCH_DOCS="150")
    try:
        a, b = replicas
        assert a.client.post("/v1/collections", json={"name": "big"}).status_code == 201
        data, ids = _records(2000)
        resp = a.client.post("/v1/collections/big/files", params={"background": True},
                             files=[("files", ("big.jsonl", data, "application/jsonl"))])
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        deadline = time.monotonic() + 300
        while True:
            job = (a if int(time.monotonic() * 10) % 2 else b).client.get(f"/v1/jobs/{job_id}").json()
            if job["status"] == "running" and job["documents_added"]:
                break
            assert job["status"] in ("queued", "running"), job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        r = redis.Redis.from_url(redis_url)
        pid = json.loads(r.get(f"ctxroute:job:default:{job_id}"))["pid"]
        victim = next(x for x in replicas if x.proc.pid == pid)
        survivor = next(x for x in replicas if x is not victim)
        victim.proc.send_signal(signal.SIGKILL)
        victim.proc.wait(timeout=30)
        committed = len(_ids(survivor, "big"))
        assert 0 < committed < len(ids), "the job finished before the kill; make it bigger"
        deadline = time.monotonic() + 600
        while (job := survivor.client.get(f"/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "partial",
                                                                                          "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "succeeded" and job["errors"] == [], job
        assert sorted(job["documents_added"]) == sorted(ids)
        listed = _ids(survivor, "big")
        assert sorted(listed) == sorted(ids) and len(listed) == len(set(listed))
        assert json.loads(r.get(f"ctxroute:job:default:{job_id}"))["attempts"] == 2
        r.close()
    finally:
        for x in replicas:
            x.stop()
        own_redis.close()


def test_compose_runs_two_replicas_on_one_store() -> None:
    """docker-compose.yml: api and api2 differ only in their host port; they, and the worker,
    share one Postgres (pgvector image, health-checked before they start) and one Redis."""
    import yaml

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    api, api2, worker, pg = services["api"], services["api2"], services["worker"], services["postgres"]
    assert {k: v for k, v in api2.items() if k != "ports"} == {k: v for k, v in api.items() if k != "ports"}
    assert api["ports"] != api2["ports"]
    store = api["environment"]["CTXROUTE_STORE"]
    assert store.startswith("postgresql://") and "@postgres:5432/" in store
    assert worker["environment"]["CTXROUTE_STORE"] == store
    assert pg["image"].startswith("pgvector/pgvector:pg16") and "pg_isready" in " ".join(pg["healthcheck"]["test"])
    for svc in (api, worker):
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
