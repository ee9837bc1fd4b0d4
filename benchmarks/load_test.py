"""Bounded load test of the REST service on loopback: requests/s, p50 and p99 latency.

Two phases, each bounded by ``--seconds`` (or ``--requests``) at ``--concurrency`` clients:

- ``cached``: the same question again and again; after the first request every answer comes
  from the answer cache (Redis with ``--redis URL``, in-process otherwise). Measures the
  service itself: auth, rate limit, version check, cache lookup, JSON.
- ``retrieval``: distinct questions with ``cache: false``, answered by the extractive reader
  (no LLM): routing probe (hybrid retrieval: BM25 + dense + graph) and sentence scoring.
  Every question string is new (no answer or query-vector cache hit); the sentence vectors
  the reader scores with are embedded the first time a sentence is read and then served from
  the collection's LRU cache. ``retrieval-warm`` repeats the phase with new question strings
  over the same documents, once the first pass has touched their sentences: the steady state
  of a service whose collection is being asked about.

The server runs as its own process (``python -m ctxroute serve``) so the load generator does
not share its interpreter. The corpus is the synthetic demo generator's.

Run: ``python benchmarks/load_test.py [--seconds 10] [--concurrency 32] [--embedder minilm|hashing]
[--redis redis://127.0.0.1:6379/0] [--workers 1] [--client raw|httpx] [--out load.json]``

Besides requests/s it reports the server's CPU milliseconds per request (from /proc), which
stays meaningful when other work shares the machine: ``1000 / cpu_ms`` is the request rate
one free core would sustain.
No timed assertions: numbers are reported (note the machine's other load when comparing).
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    k = (len(values) - 1) * q
    lo, hi = int(k), min(int(k) + 1, len(values) - 1)
    return values[lo] + (values[hi] - values[lo]) * (k - lo)


class RawConnection:
    """A minimal HTTP/1.1 keep-alive client (asyncio streams), so that the load generator
    spends far less CPU per request than the server it measures (httpx spends ~3x more)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def post_json(self, path: str, body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        assert self.reader is not None
        head = (f"POST {path} HTTP/1.1\r\nHost: {self.host}:{self.port}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        self.writer.write(head + body)
        raw = await self.reader.readuntil(b"\r\n\r\n")
        lines = raw.split(b"\r\n")
        status = int(lines[0].split()[1])
        length = next(int(v) for k, _, v in (ln.partition(b":") for ln in lines[1:]) if k.lower() == b"content-length")
        return status, await self.reader.readexactly(length)

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            await self.writer.wait_closed()


async def run_phase(url: str, bodies: list[dict[str, Any]], *, seconds: float, max_requests: int,
                    concurrency: int, client: str) -> dict[str, Any]:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    counter = 0
    stop_at = time.perf_counter() + seconds
    payloads = [json.dumps(b).encode() for b in bodies]
    path = "/v1/collections/load/query"
    host, port = url.removeprefix("http://").split(":")
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as hx:

        async def worker() -> None:
            nonlocal counter
            conn = RawConnection(host, int(port)) if client == "raw" else None
            try:
                while time.perf_counter() < stop_at and counter < max_requests:
                    i = counter
                    counter += 1
                    t0 = time.perf_counter()
                    try:
                        if conn is not None:
                            code, data = await conn.post_json(path, payloads[i % len(payloads)])
                        else:
                            r = await hx.post(path, content=payloads[i % len(payloads)],
                                              headers={"content-type": "application/json"})
                            code, data = r.status_code, r.content
                        ok = code == 200 and (i % 50 or b'"answer"' in data)
                        key = str(code)
                    except (httpx.HTTPError, OSError, asyncio.IncompleteReadError) as exc:
                        ok, key = False, type(exc).__name__
                    dt = time.perf_counter() - t0
                    if ok:
                        latencies.append(dt)
                    else:
                        errors[key] = errors.get(key, 0) + 1
            finally:
                if conn is not None:
                    await conn.close()

        t_start, cpu_start = time.perf_counter(), time.process_time()
        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t_start
        client_cpu = time.process_time() - cpu_start
    return {
        "requests": len(latencies) + sum(errors.values()),
        "ok": len(latencies),
        "errors": errors,
        "seconds": round(elapsed, 3),
        "rps": round(len(latencies) / elapsed, 1) if elapsed else 0.0,
        "p50_ms": round(percentile(latencies, 0.50) * 1000, 2),
        "p99_ms": round(percentile(latencies, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(latencies) * 1000, 2) if latencies else float("nan"),
        "client_cpu_ms_per_request": round(client_cpu * 1000 / max(1, len(latencies) + sum(errors.values())), 3),
    }


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU seconds of a process and its threads (Linux /proc; None elsewhere)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measured(pid: int, phase: dict[str, Any], before: float | None) -> dict[str, Any]:
    after = cpu_seconds(pid)
    if before is not None and after is not None and phase["ok"]:
        cpu_ms = (after - before) * 1000 / phase["requests"]
        phase["server_cpu_ms_per_request"] = round(cpu_ms, 3)
        phase["server_rps_per_free_core"] = round(1000 / cpu_ms, 1) if cpu_ms > 0 else None
    return phase


def start_server(home: Path, port: int, args: argparse.Namespace) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=str(home), CTXROUTE_EMBEDDER=args.embedder, CTXROUTE_READER="extractive",
               CTXROUTE_RATE_LIMIT_PER_MIN="0", HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               TOKENIZERS_PARALLELISM="false")
    if args.redis:
        env["CTXROUTE_REDIS_URL"] = args.redis
    cmd = [sys.executable, "-m", "ctxroute", "serve", "--port", str(port), "--log-level", "warning",
           "--workers", str(args.workers)]
    return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def wait_ready(url: str, proc: subprocess.Popen[bytes], timeout: float = 180) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"server exited: {proc.stderr.read().decode() if proc.stderr else ''}")
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise SystemExit("server did not become ready")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=10.0, help="duration of each phase")
    ap.add_argument("--requests", type=int, default=100_000, help="upper bound of requests per phase")
    ap.add_argument("--concurrency", type=int, default=32)
    ap.add_argument("--embedder", choices=("minilm", "hashing"), default="minilm")
    ap.add_argument("--docs", type=int, default=3, help="synthetic reports in the collection")
    ap.add_argument("--words", type=int, default=8000, help="words per report")
    ap.add_argument("--redis", default="", help="redis://... to cache in Redis (in-process otherwise)")
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--client", choices=("raw", "httpx"), default="raw",
                    help="raw: minimal keep-alive HTTP/1.1 client (low CPU); httpx: a real-world client")
    ap.add_argument("--out", default="", help="write the results as JSON here")
    args = ap.parse_args()

    from ctxroute.synthetic import generate_corpus

    corpus = generate_corpus(seed=11, n_docs=args.docs, n_words=args.words)
    questions = [qa.question for d in corpus for qa in d.qa]
    with tempfile.TemporaryDirectory(prefix="ctxroute-load-") as tmp:
        port = free_port()
        url = f"http://127.0.0.1:{port}"
        proc = start_server(Path(tmp), port, args)
        try:
            wait_ready(url, proc)
            with httpx.Client(base_url=url, timeout=600) as c:
                c.post("/v1/collections", json={"name": "load"}).raise_for_status()
                t0 = time.perf_counter()
                docs = [{"text": d.text, "title": d.title} for d in corpus]
                c.post("/v1/collections/load/documents", json={"documents": docs}).raise_for_status()
                ingest_s = time.perf_counter() - t0
                info = c.get("/v1/collections/load").json()
                c.post("/v1/collections/load/query", json={"question": questions[0]}).raise_for_status()
            results: dict[str, Any] = {
                "config": {k: v for k, v in vars(args).items() if k != "out"},
                "collection": {"documents": info["documents"], "chunks": info["chunks"], "tokens": info["tokens"],
                               "ingest_seconds": round(ingest_s, 2)},
                "cpus": os.cpu_count(),
            }
            before = cpu_seconds(proc.pid)
            results["cached"] = measured(proc.pid, asyncio.run(run_phase(
                url, [{"question": questions[0]}], seconds=args.seconds, max_requests=args.requests,
                concurrency=args.concurrency, client=args.client)), before)
            bodies = [{"question": f"{q} ({i})", "cache": False} for i, q in enumerate(questions * 50)]
            before = cpu_seconds(proc.pid)
            results["retrieval"] = measured(proc.pid, asyncio.run(run_phase(
                url, bodies, seconds=args.seconds, max_requests=args.requests,
                concurrency=min(args.concurrency, 8), client=args.client)), before)
            bodies = [{"question": f"{q} [{i}]", "cache": False} for i, q in enumerate(questions * 50)]
            before = cpu_seconds(proc.pid)
            results["retrieval-warm"] = measured(proc.pid, asyncio.run(run_phase(
                url, bodies, seconds=args.seconds, max_requests=args.requests,
                concurrency=min(args.concurrency, 8), client=args.client)), before)
            results["load_average_after"] = os.getloadavg()
        finally:
            proc.terminate()
            proc.wait(timeout=30)
            if proc.stderr:
                proc.stderr.close()
    print(f"collection: {results['collection']}")
    print(f"load average after: {results['load_average_after']} on {results['cpus']} CPUs")
    print(f"{'phase':<10} {'ok':>7} {'errors':>7} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'server cpu ms/req':>18} "
          f"{'req/s per free core':>20} {'client cpu ms/req':>18}")
    for phase in ("cached", "retrieval", "retrieval-warm"):
        r = results[phase]
        print(f"{phase:<10} {r['ok']:>7} {sum(r['errors'].values()):>7} {r['rps']:>7} {r['p50_ms']:>8} {r['p99_ms']:>8} "
              f"{r.get('server_cpu_ms_per_request', '-'):>18} {r.get('server_rps_per_free_core', '-'):>20} "
              f"{r['client_cpu_ms_per_request']:>18}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
