"""Ingestion throughput and query latency of the retrieval layer, with same-run references.

- Ingestion: a synthetic corpus (``ctxroute.synthetic.generate_corpus``) of about
  ``--tokens`` tokens goes into a temporary collection; tokens/s per stage (chunk, embed,
  sparse, dense, graph, save, total).
- Embedding reference: ``embedder.embed`` over the SAME passage texts with the same batch
  size, in the same run; the ratio ingest-embed throughput / raw says how much the
  ingestion adds around the model (aim >= 0.9).
- Query latency p50/p95 (ms) for bm25, dense (without and with query embedding), graph and
  hybrid (both without query embedding: vectors are precomputed), and ``rank_bm25``'s
  ``BM25Okapi`` on the same passages and tokens as the sparse reference.

Run: ``python benchmarks/bench_retrieval.py [--tokens 1000000] [--queries 200]
[--embedder minilm|hashing] [--bf16] [--out bench.json]`` or ``ctxroute bench retrieval``.
No timed assertions anywhere: numbers are reported, with ratios against references.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import random
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

from ctxroute.types import Document

Progress = Callable[[str, int, int], None]  # (stage, done, total)
WORDS_PER_TOKEN = 0.75  # English prose under cl100k_base, roughly
WORDS_PER_DOC = 15_000


@dataclass
class Latency:
    p50_ms: float
    p95_ms: float
    mean_ms: float
    n: int

    @classmethod
    def of(cls, seconds: Sequence[float]) -> Latency:
        ms = np.asarray(seconds, dtype=np.float64) * 1000.0
        return cls(float(np.percentile(ms, 50)), float(np.percentile(ms, 95)), float(ms.mean()), len(ms))


@dataclass
class BenchResult:
    embedder: str
    bf16: bool
    documents: int
    passages: int
    tokens: int
    ingest_seconds: dict[str, float]
    ingest_tokens_per_s: dict[str, float]
    raw_embed_seconds: float
    raw_embed_tokens_per_s: float
    embed_ratio: float  # ingestion embed throughput / raw embedder throughput
    embed_batch_ratio: float  # the same from median per-batch seconds (robust to load bursts)
    rank_bm25_build_seconds: float
    latency: dict[str, Latency]
    bm25_speedup_vs_rank_bm25: float  # rank_bm25 p50 / bm25 p50
    load_average: dict[str, list[float]] = field(default_factory=dict)
    cpu_count: int = 0


class _PrecomputedQueries:
    """Embedder that serves query vectors computed beforehand (falls back to ``inner``), so
    retriever latency can be measured without the model call."""

    def __init__(self, inner: Any, vectors: Mapping[str, np.ndarray]) -> None:
        self.inner = inner
        self.name = inner.name
        self.dim = inner.dim
        self.vectors = vectors

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        if all(t in self.vectors for t in texts):
            return np.stack([self.vectors[t] for t in texts])
        return self.inner.embed(texts)


def make_corpus(tokens: int, seed: int = 7) -> tuple[list[Document], list[str]]:
    """About ``tokens`` tokens of synthetic reports, and their answerable gold questions."""
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.synthetic import generate_corpus

    words = max(200, int(tokens * WORDS_PER_TOKEN))
    n_docs = max(1, math.ceil(words / WORDS_PER_DOC))
    synthetic = generate_corpus(seed=seed, n_docs=n_docs, n_words=words // n_docs)
    docs = [
        document_from_text(d.text, title=d.title, doc_id=f"report-{i:03d}", format="md", source="synthetic")
        for i, d in enumerate(synthetic)
    ]
    questions = [q.question for d in synthetic for q in d.qa if q.answerable]
    return docs, questions


def make_queries(questions: Sequence[str], texts: Sequence[str], n: int, seed: int = 11) -> list[str]:
    """``n`` distinct queries: the gold questions (shuffled), then, if more are needed,
    question-like snippets of 6-10 consecutive words from random passages."""
    rng = random.Random(seed)
    out = list(dict.fromkeys(questions))
    rng.shuffle(out)
    out = out[:n]
    seen = set(out)
    attempts = 0
    while len(out) < n and texts and attempts < 100 * n:
        attempts += 1
        words = re.findall(r"[A-Za-z0-9][\w'-]*", texts[rng.randrange(len(texts))])
        if len(words) < 12:
            continue
        size = rng.randint(6, 10)
        start = rng.randrange(len(words) - size)
        q = "what about " + " ".join(words[start : start + size]) + "?"
        if q not in seen:
            seen.add(q)
            out.append(q)
    return out


def _time(fn: Callable[[str], Any], queries: Sequence[str], warmup: int = 3) -> Latency:
    for q in queries[:warmup]:
        fn(q)
    seconds: list[float] = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        seconds.append(time.perf_counter() - t0)
    return Latency.of(seconds)


def run(
    *,
    tokens: int = 1_000_000,
    queries: int = 200,
    embedder_kind: str = "minilm",
    bf16: bool | None = None,
    seed: int = 7,
    progress: Progress | None = None,
) -> BenchResult:
    from rank_bm25 import BM25Okapi

    from ctxroute.retrievers.collection import EMBED_BATCH, CollectionConfig, CollectionStore, index_text
    from ctxroute.retrievers.dense import DenseRetriever
    from ctxroute.retrievers.embedders import make_embedder
    from ctxroute.retrievers.graph import GraphRetriever
    from ctxroute.retrievers.hybrid import HybridRetriever
    from ctxroute.retrievers.sparse import Tokenizer

    load: dict[str, list[float]] = {"start": list(os.getloadavg())}
    embedder = make_embedder(embedder_kind, bf16=bf16, batch_size=EMBED_BATCH)
    if hasattr(embedder, "load"):
        embedder.load()
    embedder.embed(["warm up the model"] * 4)

    docs, questions = make_corpus(tokens, seed)
    with tempfile.TemporaryDirectory(prefix="ctxroute-bench-") as tmp:
        config = CollectionConfig.for_embedder(embedder)
        coll = CollectionStore(Path(tmp)).create("bench", config, embedder)
        embed_marks: list[float] = []  # when each ingestion embed batch finished

        def ingest_progress(stage: str, done: int, total: int) -> None:
            if stage == "embed":
                embed_marks.append(time.perf_counter())
            if progress:
                progress(stage, done, total)

        t0 = time.perf_counter()
        stats = coll.add_documents(docs, progress=ingest_progress)
        total = time.perf_counter() - t0
        seconds = dict(stats.seconds)
        seconds["total"] = total
        load["after_ingest"] = list(os.getloadavg())

        passages = coll.passages()
        by_doc = {d.id: d for d in coll.documents()}
        texts = [index_text(by_doc[p.doc_id], p) for p in passages]

        # raw embedder on the same passages, same batches as the collection's ingestion
        raw_batches: list[float] = []
        t0 = time.perf_counter()
        for start in range(0, len(texts), EMBED_BATCH):
            tb = time.perf_counter()
            embedder.embed(texts[start : start + EMBED_BATCH])
            raw_batches.append(time.perf_counter() - tb)
            if progress:
                progress("raw embed", min(start + EMBED_BATCH, len(texts)), len(texts))
        raw = time.perf_counter() - t0
        # full batches only: ingestion batch i took marks[i] - marks[i-1] (the first has no start mark)
        ingest_batches = np.diff(embed_marks)[: max(0, len(texts) // EMBED_BATCH - 1)]
        full_raw = raw_batches[1 : len(texts) // EMBED_BATCH]
        batch_ratio = (
            float(np.median(full_raw) / np.median(ingest_batches)) if len(ingest_batches) and full_raw else float("nan")
        )

        # sparse reference: rank_bm25 on the same tokens
        tokenizer = Tokenizer(config.sparse)
        t0 = time.perf_counter()
        okapi = BM25Okapi([tokenizer(t) for t in texts])
        okapi_build = time.perf_counter() - t0

        qs = make_queries(questions, [p.text_of(by_doc[p.doc_id]) for p in passages], queries, seed)
        vectors = dict(zip(qs, embedder.embed(qs)))
        pre = _PrecomputedQueries(embedder, vectors)
        bm25 = coll.retriever("bm25")
        dense_live = coll.retriever("dense")
        dense_pre = DenseRetriever(dense_live.index, pre, passages)  # type: ignore[attr-defined]
        graph_pre = GraphRetriever(coll.retriever("graph").index, {p.id: p for p in passages},  # type: ignore[attr-defined]
                                   [bm25, dense_pre])
        weights = dict(config.fusion_weights)
        hybrid_pre = HybridRetriever({"bm25": bm25, "dense": dense_pre, "graph": graph_pre}, weights=weights)
        seeds = {q: HybridRetriever({"bm25": bm25, "dense": dense_pre}).retrieve(q, 50) for q in qs[:50]}

        def okapi_search(q: str) -> list[int]:
            scores = okapi.get_scores(tokenizer(q))
            top = np.argpartition(-scores, 9)[:10]
            return top[np.argsort(-scores[top])].tolist()

        cases: dict[str, Callable[[str], Any]] = {
            "bm25": lambda q: bm25.retrieve(q, 10),
            "rank_bm25 (reference)": okapi_search,
            "dense (precomputed query vector)": lambda q: dense_pre.retrieve(q, 10),
            "dense (with query embedding)": lambda q: dense_live.retrieve(q, 10),
            "graph (precomputed query vector)": lambda q: graph_pre.retrieve(q, 10),
            "graph PageRank only (given 50 seeds)": lambda q: graph_pre.rerank(q, seeds[q], 50),
            "hybrid (precomputed query vector)": lambda q: hybrid_pre.retrieve(q, 10),
        }
        latency: dict[str, Latency] = {}
        for i, (name, fn) in enumerate(cases.items(), start=1):
            latency[name] = _time(fn, list(seeds) if "given" in name else qs)
            if progress:
                progress("queries", i, len(cases))
        load["end"] = list(os.getloadavg())

    n_tokens = stats.tokens
    per_s = {stage: (n_tokens / s if s > 0 else float("inf")) for stage, s in seconds.items()}
    raw_tps = n_tokens / raw if raw > 0 else float("inf")
    return BenchResult(
        embedder=str(embedder.name),
        bf16=bool(getattr(embedder, "bf16", False)),
        documents=stats.documents,
        passages=stats.passages,
        tokens=n_tokens,
        ingest_seconds=seconds,
        ingest_tokens_per_s=per_s,
        raw_embed_seconds=raw,
        raw_embed_tokens_per_s=raw_tps,
        embed_ratio=per_s.get("embed", 0.0) / raw_tps if raw_tps else 0.0,
        embed_batch_ratio=batch_ratio,
        rank_bm25_build_seconds=okapi_build,
        latency=latency,
        bm25_speedup_vs_rank_bm25=latency["rank_bm25 (reference)"].p50_ms / max(latency["bm25"].p50_ms, 1e-9),
        load_average=load,
        cpu_count=os.cpu_count() or 0,
    )


def markdown(result: BenchResult) -> str:
    r = result
    lines = [
        f"Corpus: {r.documents} documents, {r.passages} passages, {r.tokens:,} tokens; embedder "
        f"{r.embedder}{' (bf16)' if r.bf16 else ''}; {r.cpu_count} CPUs; load average "
        + ", ".join(f"{k} {v[0]:.1f}" for k, v in r.load_average.items()),
        "",
        "| ingestion stage | seconds | tokens/s |",
        "|---|---|---|",
    ]
    for stage, s in r.ingest_seconds.items():
        lines.append(f"| {stage} | {s:.2f} | {r.ingest_tokens_per_s[stage]:,.0f} |")
    lines.append(f"| raw embedder, same passages and batches (reference) | {r.raw_embed_seconds:.2f} | "
                 f"{r.raw_embed_tokens_per_s:,.0f} |")
    lines += [
        "",
        f"Ingestion embed throughput / raw embedder throughput: **{r.embed_ratio:.2f}** over the whole stage, "
        f"**{r.embed_batch_ratio:.2f}** from median per-batch times (aim >= 0.90)",
        f"rank_bm25 BM25Okapi build on the same tokens: {r.rank_bm25_build_seconds:.2f} s "
        f"(our sparse stage: {r.ingest_seconds.get('sparse', float('nan')):.2f} s)",
        "",
        "| query | p50 ms | p95 ms | mean ms | n |",
        "|---|---|---|---|---|",
    ]
    for name, lat in r.latency.items():
        lines.append(f"| {name} | {lat.p50_ms:.2f} | {lat.p95_ms:.2f} | {lat.mean_ms:.2f} | {lat.n} |")
    lines += ["", f"bm25 p50 speed-up over rank_bm25: **{r.bm25_speedup_vs_rank_bm25:.1f}x**; hybrid p50 "
              f"(no query embedding): **{r.latency['hybrid (precomputed query vector)'].p50_ms:.2f} ms** (aim <= 5)"]
    return "\n".join(lines)


def to_json(result: BenchResult) -> str:
    return json.dumps(asdict(result), indent=2)


def main(argv: Sequence[str] | None = None) -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tokens", type=int, default=1_000_000)
    ap.add_argument("--queries", type=int, default=200)
    ap.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"])
    ap.add_argument("--bf16", action="store_true", default=None, help="default: bf16 where the CPU has bf16 units")
    ap.add_argument("--fp32", dest="bf16", action="store_false")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                  TimeElapsedColumn(), transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(stage, total=total)
            bar.update(tasks[stage], completed=done, total=total)

        result = run(tokens=args.tokens, queries=args.queries, embedder_kind=args.embedder, bf16=args.bf16,
                     seed=args.seed, progress=progress)
    print(markdown(result))
    if args.out:
        args.out.write_text(to_json(result))


if __name__ == "__main__":
    main()
