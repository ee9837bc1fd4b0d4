"""Two `ctxroute serve` replicas (real processes) sharing one Redis and one home, each with its
in-process queue worker: the replica whose worker runs an ingestion job is SIGKILLed mid-job;
the other replica's worker finishes it, with every document once, and both the job and the
collection read the same from the survivor."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import redis

pytest.importorskip("arq", reason="the Redis job queue needs arq (pip install 'ctxroute[scale]')")

from tests.api.conftest import free_port  # noqa: E402
from tests.api.test_job_queue import _records  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _serve(home: Path, redis_url: str, log: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=str(home), CTXROUTE_EMBEDDER="hashing", CTXROUTE_READER="extractive",
               CTXROUTE_RATE_LIMIT_PER_MIN="0", CTXROUTE_REDIS_URL=redis_url, CTXROUTE_JOB_LEASE_S="2",
               CTXROUTE_JOB_BATCH_DOCS="150", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "ctxroute", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=log.open("ab"))
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, f"server exited: {log.read_text()[-2000:]}"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server not ready in 120 s"
        time.sleep(0.2)


def test_replica_killed_mid_job_the_other_finishes_it(redis_restartable, tmp_path) -> None:
    home, log = tmp_path / "home", tmp_path / "servers.log"
    procs: dict[str, subprocess.Popen] = {}
    try:
        for _ in range(2):
            proc, url = _serve(home, redis_restartable.url, log)
            procs[url] = proc
        url_a, url_b = procs
        assert httpx.post(f"{url_a}/v1/collections", json={"name": "big"}).status_code == 201
        data, ids = _records(3000)
        resp = httpx.post(f"{url_a}/v1/collections/big/files", params={"background": True}, timeout=60,
                       files=[("files", ("big.jsonl", data, "application/jsonl"))])
        assert resp.status_code == 202, resp.text
        job_id = resp.json()["id"]
        deadline = time.monotonic() + 240
        while True:  # reads alternate between the replicas
            job = httpx.get(f"{url_a if int(time.monotonic() * 10) % 2 else url_b}/v1/jobs/{job_id}").json()
            if job["status"] == "running" and job["documents_added"]:
                break
            assert job["status"] in ("queued", "running"), job
            assert time.monotonic() < deadline, job
            time.sleep(0.05)
        r = redis.Redis.from_url(redis_restartable.url)
        pid = json.loads(r.get(f"ctxroute:job:default:{job_id}"))["pid"]  # the process whose worker runs it
        victim_url = next(u for u, p in procs.items() if p.pid == pid)
        survivor = next(u for u in procs if u != victim_url)
        procs[victim_url].send_signal(signal.SIGKILL)
        procs[victim_url].wait(timeout=30)
        deadline = time.monotonic() + 600
        while (job := httpx.get(f"{survivor}/v1/jobs/{job_id}").json())["status"] not in ("succeeded", "partial", "failed"):
            assert time.monotonic() < deadline, job
            time.sleep(0.2)
        assert job["status"] == "succeeded" and job["errors"] == [], job
        assert sorted(job["documents_added"]) == sorted(ids)
        listed = [d["id"] for d in httpx.get(f"{survivor}/v1/collections/big/documents", timeout=60).json()["documents"]]
        assert sorted(listed) == sorted(ids) and len(listed) == len(set(listed))
        # the job's pid is now the survivor's
        state = json.loads(r.get(f"ctxroute:job:default:{job_id}"))
        assert state["attempts"] == 2 and state["pid"] == procs[survivor].pid
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
