"""Collection size on disk against its raw text, load time and query latency without the
query embedding, on the peer harness's passages (all 4,956 by default), cheaply.

Vectors come from the hashing embedder at MiniLM's dimension (384), so the files have
exactly the sizes a MiniLM collection has (float16 vectors are stored uncompressed) while
the run needs no model; BM25, graph and chunk files do not depend on the embedder. Query
latency is measured with the query vector already made (the embedder is the hashing one),
which is the "without embedding" number. Runs against whatever ``ctxroute`` is importable,
so the same script measures an older checkout (``PYTHONPATH=/path/to/old python
benchmarks/footprint.py ...``) for a before/after in one run.

Run: ``nice -n 10 python benchmarks/footprint.py --data /tmp/peerbench/data [--n 4956]``.
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

import numpy as np


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, required=True)
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--queries", type=int, default=200)
    a = ap.parse_args(argv)
    import ctxroute
    from ctxroute.retrievers.chunking import ChunkingConfig
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.retrievers.embedders import HashingEmbedder

    ps = [json.loads(line) for line in (a.data / "passages.jsonl").open()]
    ps = ps[: a.n] if a.n else ps
    qs = [json.loads(line)["question"] for line in (a.data / "queries.jsonl").open()][: a.queries]
    docs = [document_from_text(p["text"], doc_id=f"p{p['id']}", title="", format="txt") for p in ps]
    text_bytes = sum(len(p["text"].encode("utf-8")) for p in ps)
    emb = HashingEmbedder(dim=384)
    out: dict[str, object] = {"code": str(Path(ctxroute.__file__).resolve().parents[1]), "passages": len(ps),
                              "text_bytes": text_bytes, "load_start": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory(prefix="ctxroute-footprint-") as tmp:
        store = CollectionStore(Path(tmp))
        config = CollectionConfig.for_embedder(emb, chunking=ChunkingConfig(passage_tokens=2048, section_tokens=4096))
        coll = store.create("fp", config, emb)
        t0 = time.perf_counter()
        coll.add_documents(docs)
        out["build_s_without_embedding_cost"] = time.perf_counter() - t0
        files = coll.backend.live_files(coll.name)
        size = sum(files.values())
        out.update(disk_bytes=size, disk_over_text=size / text_bytes, files=files)
        t0 = time.perf_counter()
        reopened = store.open("fp", emb)
        out["open_s"] = time.perf_counter() - t0
        hybrid = reopened.retriever("hybrid")
        hybrid.retrieve(qs[0], 10)  # first query builds the lazy structures (PageRank matrix)
        out["first_query_after_open_s"] = time.perf_counter() - t0
        for q in qs[:5]:
            hybrid.retrieve(q, 10)
        lat = []
        c0 = time.process_time()
        for q in qs:
            t1 = time.perf_counter()
            hybrid.retrieve(q, 10)
            lat.append(time.perf_counter() - t1)
        cpu_ms = (time.process_time() - c0) / len(qs) * 1000  # less sensitive to other jobs than wall time
        ms = np.asarray(lat) * 1000
        out.update(hybrid_p50_ms=float(np.percentile(ms, 50)), hybrid_p95_ms=float(np.percentile(ms, 95)),
                   hybrid_cpu_ms_per_query=cpu_ms,
                   note="hashing query vectors: latency without the query embedding")
    out["load_end"] = os.getloadavg()[0]
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    sys.exit(main())
