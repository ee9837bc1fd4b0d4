"""/healthz latency while a PDF bomb is uploaded (issue 13).

Starts `ctxroute serve` as a separate process on loopback (hashing embedder, extractive
reader), measures /healthz latency for a few seconds as the reference, then uploads a PDF bomb
synchronously (~15 KB that inflates to 4.8 MB of page content and 4.4 million characters)
while polling /healthz, and reports p50/p99/max of both windows, their ratio, and what the
upload answered.

    python benchmarks/pdf_bomb_healthz.py                  # default caps: the bomb is refused
    python benchmarks/pdf_bomb_healthz.py --caps off       # caps lifted: the parse runs to the end
    python benchmarks/pdf_bomb_healthz.py --source /tmp/old   # another checkout (before/after)

Timings on a shared CPU are noisy: the load average is printed with them.
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.api.pdfs import pdf_bomb  # noqa: E402


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _pct(xs: list[float], q: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(q * len(xs)))] if xs else float("nan")


def _poll(url: str, until: threading.Event | float, out: list[float]) -> None:
    with httpx.Client(timeout=120) as c:
        while True:
            if isinstance(until, threading.Event):
                if until.is_set():
                    return
            elif time.monotonic() > until:
                return
            t = time.perf_counter()
            c.get(f"{url}/healthz")
            out.append((time.perf_counter() - t) * 1000)
            time.sleep(0.005)


def run(lines: int, caps: str, source: str | None, reference_s: float) -> dict:
    port = _port()
    url = f"http://127.0.0.1:{port}"
    home = tempfile.mkdtemp(prefix="bomb-")
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=home, CTXROUTE_EMBEDDER="hashing", CTXROUTE_READER="extractive", HF_HUB_OFFLINE="1",
               CTXROUTE_RATE_LIMIT_PER_MIN="0", CTXROUTE_BACKGROUND_UPLOAD_KB="10240")
    if caps == "off":
        env.update(CTXROUTE_MAX_PDF_RATIO="0", CTXROUTE_MAX_PDF_CONTENT_MB="100000",
                   CTXROUTE_MAX_DOCUMENT_CHARS="1000000000")
    if source:
        env["PYTHONPATH"] = source
    proc = subprocess.Popen([sys.executable, "-m", "ctxroute", "serve", "--port", str(port), "--log-level", "warning"],
                            env=env, cwd=source or ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline or proc.poll() is not None:
                raise SystemExit("server did not start")
            time.sleep(0.2)
        httpx.post(f"{url}/v1/collections", json={"name": "bomb"}, timeout=30)
        reference: list[float] = []
        _poll(url, time.monotonic() + reference_s, reference)
        bomb = pdf_bomb(lines)
        during: list[float] = []
        done = threading.Event()
        result: dict = {}

        def upload() -> None:
            t = time.perf_counter()
            r = httpx.post(f"{url}/v1/collections/bomb/files", params={"background": False}, timeout=600,
                           files=[("files", ("bomb.pdf", bomb, "application/pdf"))])
            result.update(status=r.status_code, seconds=round(time.perf_counter() - t, 3),
                          body=r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text)
            done.set()

        poller = threading.Thread(target=_poll, args=(url, done, during))
        uploader = threading.Thread(target=upload)
        poller.start()
        uploader.start()
        uploader.join()
        poller.join()
    finally:
        proc.terminate()
        proc.wait(timeout=30)
    ref_p99, dur_p99 = _pct(reference, 0.99), _pct(during, 0.99)
    body = result.get("body")
    message = body.get("message") if isinstance(body, dict) else None
    if isinstance(body, dict) and "documents" in body:
        message = f"{len(body['documents'])} document(s), {sum(d['chars'] for d in body['documents']):,} characters"
    return {
        "bomb_bytes": len(bomb), "caps": caps, "source": source or str(ROOT),
        "upload": {"status": result.get("status"), "seconds": result.get("seconds"), "message": message},
        "healthz_reference_ms": {"n": len(reference), "p50": round(statistics.median(reference), 2),
                                 "p99": round(ref_p99, 2), "max": round(max(reference), 2)},
        "healthz_during_upload_ms": {"n": len(during), "p50": round(statistics.median(during), 2) if during else None,
                                     "p99": round(dur_p99, 2), "max": round(max(during), 2) if during else None},
        "p99_ratio_during_vs_reference": round(dur_p99 / ref_p99, 2) if ref_p99 else None,
        "loadavg": os.getloadavg(),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--lines", type=int, default=100_000, help="text lines in the bomb (100000: 4.4M characters)")
    ap.add_argument("--caps", choices=("default", "off"), default="default")
    ap.add_argument("--source", help="PYTHONPATH of another checkout to measure (e.g. the code before the fix)")
    ap.add_argument("--reference-seconds", type=float, default=3.0)
    args = ap.parse_args()
    print(json.dumps(run(args.lines, args.caps, args.source, args.reference_seconds), indent=2))


if __name__ == "__main__":
    main()
