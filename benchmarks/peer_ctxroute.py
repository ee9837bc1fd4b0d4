"""ctxroute's side of the peer benchmark: build a collection over the peer harness's passages
(one document, one passage each, as the peers index them) and time it the way the peers
are timed. Run in its own process by ``benchmarks/peer_bench.py``; writes one JSON result.

Measures: build seconds (chunk + embed + sparse + dense + graph + save) and passages/s; the
raw embedder on the same texts in the same process (the floor the ingestion sits on); query
p50/p95 of hybrid (bm25 + dense + graph) with a fresh query embedding (LRU cache cleared) and
with precomputed query vectors, and the query embedding alone; peak RSS; collection bytes on
disk against the raw text bytes; agreement of the ONNX query encoder with the fp32 torch
model (cosine, and dense top-10 overlap) and of float16-stored vectors with float32 ones.
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def lat(fn: Callable[[str], Any], queries: Sequence[str], warmup: int = 5) -> dict[str, float]:
    for q in queries[:warmup]:
        fn(q)
    s = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        s.append(time.perf_counter() - t0)
    ms = np.asarray(s) * 1000
    return {"p50_ms": float(np.percentile(ms, 50)), "p95_ms": float(np.percentile(ms, 95)), "n": len(s)}


def pseudo_queries(texts: Sequence[str], n: int, seed: int = 3) -> list[str]:
    """Question-like snippets of passages (to reach ``n`` queries for the agreement check)."""
    rng = np.random.default_rng(seed)
    out = []
    while len(out) < n:
        words = texts[int(rng.integers(len(texts)))].split()
        if len(words) > 12:
            a = int(rng.integers(0, len(words) - 10))
            out.append("what about " + " ".join(words[a:a + int(rng.integers(6, 11))]) + "?")
    return out


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", type=Path, required=True, help="folder with passages.jsonl and queries.jsonl")
    ap.add_argument("--n", type=int, default=None)
    ap.add_argument("--dtype", default="auto", choices=["auto", "fp32", "bf16"])
    ap.add_argument("--long-text", default="truncate", choices=["windows", "truncate"])
    ap.add_argument("--agreement", type=int, default=0, help="queries for the ONNX/fp16 agreement check (0: skip)")
    ap.add_argument("--out", type=Path, required=True)
    a = ap.parse_args(argv)

    from ctxroute.retrievers.chunking import ChunkingConfig
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore, index_text
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.retrievers.embedders import make_embedder

    ps = [json.loads(line) for line in (a.data / "passages.jsonl").open()]
    ps = ps[: a.n] if a.n else ps
    qs = [json.loads(line)["question"] for line in (a.data / "queries.jsonl").open()]
    docs = [document_from_text(p["text"], doc_id=f"p{p['id']}", title="", format="txt") for p in ps]
    raw_bytes = sum(len(p["text"].encode("utf-8")) for p in ps)
    bf16 = None if a.dtype == "auto" else a.dtype == "bf16"
    embedder = make_embedder(None, bf16=bf16, long_text=a.long_text)
    embedder.load()
    embedder.embed([p["text"] for p in ps[:64]])  # warm-up, untimed (as the peers do)
    out: dict[str, Any] = {"system": f"ctxroute ({embedder.dtype}, {a.long_text})", "n_passages": len(ps),
                           "n_queries": len(qs), "load_start": list(os.getloadavg())}
    with tempfile.TemporaryDirectory(prefix="ctxroute-peer-") as tmp:
        config = CollectionConfig.for_embedder(embedder, chunking=ChunkingConfig(passage_tokens=2048,
                                                                                 section_tokens=4096))
        coll = CollectionStore(Path(tmp)).create("bench", config, embedder)
        t0 = time.perf_counter()
        stats = coll.add_documents(docs)
        build = time.perf_counter() - t0
        out.update(build_s=build, passages_per_s=len(ps) / build, stage_s=dict(stats.seconds),
                   passages_indexed=stats.passages, rss_after_build_mib=resource.getrusage(
                       resource.RUSAGE_SELF).ru_maxrss / 1024)
        texts = [index_text(coll.document(p.doc_id), p) for p in coll.passages()]
        t0 = time.perf_counter()
        for start in range(0, len(texts), 256):  # the model alone, same texts, same policy
            embedder.embed(texts[start:start + 256])
        raw = time.perf_counter() - t0
        out.update(raw_embed_s=raw, raw_passages_per_s=len(texts) / raw,
                   embed_share_of_raw=raw / stats.seconds["embed"])
        files = coll.backend.live_files(coll.name)
        out.update(disk_bytes=sum(files.values()), raw_text_bytes=raw_bytes,
                   disk_over_text=sum(files.values()) / raw_bytes, disk_files=files)

        hybrid = coll.retriever("hybrid")
        qe = coll.query_embedder

        def fresh(q: str) -> Any:
            qe.cache.clear()  # every query pays its embedding
            return hybrid.retrieve(q, 10)

        out["q_hybrid_with_embedding"] = lat(fresh, qs)
        out["q_embed_only"] = lat(lambda q: (qe.cache.clear(), qe.embed([q])), qs)
        for q in qs:
            qe.embed([q])  # now cached: retrieval without the embedding
        out["q_hybrid_no_embedding"] = lat(lambda q: hybrid.retrieve(q, 10), qs)
        inner = getattr(qe, "inner", qe)  # loaded by now: its variant is known
        variant = getattr(inner, "variant", "")
        out["query_encoder"] = type(inner).__name__ + (f" ({variant})" if variant else "")
        out["q_bm25"] = lat(lambda q: coll.retriever("bm25").retrieve(q, 10), qs)
        out["topk_hybrid"] = [[h.chunk.doc_id for h in hybrid.retrieve(q, 10)] for q in qs]

        if a.agreement:
            from ctxroute.retrievers.embedders import SentenceTransformerEmbedder

            aq = (qs + pseudo_queries([p["text"] for p in ps], a.agreement))[: a.agreement]
            fp32 = SentenceTransformerEmbedder(bf16=False, threads=1)
            ref = fp32.embed(aq)
            got = getattr(qe, "inner", qe).embed(aq)
            cos = (ref * got).sum(axis=1)
            dense = coll.retriever("dense").index
            full = fp32.embed(texts) if embedder.bf16 else None  # fp32 passage vectors
            stored = dense.vectors

            def top(mat: np.ndarray, q: np.ndarray) -> set[int]:
                return set(np.argsort(-(mat @ q), kind="stable")[:10].tolist())

            ov_q = np.mean([len(top(stored, r) & top(stored, g)) / 10 for r, g in zip(ref, got)])
            exact = full if full is not None else stored.astype(np.float32)
            ov_store = np.mean([len(top(exact, r) & top(stored, r)) / 10 for r in ref])
            out["agreement"] = {
                "queries": len(aq), "onnx_vs_fp32_cosine_mean": float(cos.mean()),
                "onnx_vs_fp32_cosine_min": float(cos.min()),
                "dense_top10_overlap_onnx_vs_fp32_query": float(ov_q),
                "dense_top10_overlap_stored_fp16_vs_fp32_passages": float(ov_store),
                "passage_vectors_reference": "fp32 torch" if full is not None else "float32 of the stored vectors",
            }
    out["peak_rss_mib"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["load_end"] = list(os.getloadavg())
    a.out.write_text(json.dumps(out))


if __name__ == "__main__":
    main()
