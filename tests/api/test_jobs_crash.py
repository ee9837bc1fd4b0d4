"""A server process killed (SIGKILL) in the middle of an ingestion job: another worker of the
same home, and a restarted server, report the job ``interrupted`` instead of ``running``
forever; the collection stays loadable."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx

from tests.api.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def _serve(home: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=str(home), CTXROUTE_EMBEDDER="hashing", CTXROUTE_READER="extractive",
               CTXROUTE_RATE_LIMIT_PER_MIN="0", HF_HUB_OFFLINE="1")
    proc = subprocess.Popen([sys.executable, "-m", "ctxroute", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, "server exited"
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc, url
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline
        time.sleep(0.2)


def _big_jsonl(n: int = 4000) -> bytes:
    words = "harbour pilot vessel mooring fee orchard cider station glacier turbine".split()
    lines = []
    for i in range(n):
        text = " ".join(f"{words[(i + j) % len(words)]}{j % 97}" for j in range(160)) + f". Record {i} ends here."
        lines.append(json.dumps({"id": f"rec-{i}", "text": text}))
    return "\n".join(lines).encode()


def test_killed_worker_leaves_an_interrupted_job(tmp_path):
    home = tmp_path / "home"
    a, url_a = _serve(home)
    b, url_b = _serve(home)
    try:
        assert httpx.post(f"{url_a}/v1/collections", json={"name": "big"}).status_code == 201
        r = httpx.post(f"{url_a}/v1/collections/big/files", params={"background": True}, timeout=60,
                       files=[("files", ("big.jsonl", _big_jsonl(), "application/jsonl"))])
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 60
        while httpx.get(f"{url_b}/v1/jobs/{job_id}").json()["status"] != "running":  # B reads A's job file
            assert time.monotonic() < deadline, "the job never started"
            time.sleep(0.02)
        a.send_signal(signal.SIGKILL)
        a.wait(timeout=30)
        job = httpx.get(f"{url_b}/v1/jobs/{job_id}").json()
        assert job["status"] == "interrupted", job
        assert job["finished_at"] and "stopped during ingestion" in job["errors"][-1]["message"]
        assert [j["status"] for j in httpx.get(f"{url_b}/v1/jobs").json()["jobs"]] == ["interrupted"]
        info = httpx.get(f"{url_b}/v1/collections/big")
        assert info.status_code == 200, info.text  # the half-done write left the last committed version
    finally:
        for p in (a, b):
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=30)
    c, url_c = _serve(home)  # a restart agrees
    try:
        assert httpx.get(f"{url_c}/v1/jobs/{job_id}").json()["status"] == "interrupted"
        assert not (home / "tenants" / "default" / "jobs" / job_id).exists(), "the spooled upload was not removed"
    finally:
        c.terminate()
        c.wait(timeout=30)
