"""Cost of adding one document to a files-backend collection: append-only segments (this
code) against the full rewrite of every version (``--before-ref``, default a2d4028, the last
commit with that layout), measured in the same run on the same synthetic passages.

For each size in ``--sizes`` (passages) a collection is built in one write from synthetic
documents (seeded Zipf words; ``passage_tokens=64``; passages average ~48 tokens, so 100k passages are ~5M tokens) with
the hashing embedder (dim 384, the size of MiniLM's vectors: bytes on disk as with a real
model, no model time). Then single documents are added one at a time (``--doc-sizes``
sentences each, ~1 sentence a passage) and per add the wall seconds, the add's own phase
timings and the bytes the process wrote (``wchar`` of ``/proc/self/io``: every ``write()``)
are recorded. After the adds two documents are removed (tombstones) and query latency
(``bm25``, ``dense``, ``hybrid``; p50 over ``--queries`` questions, after one warm-up each)
is measured on the segmented collection and on the same collection after
``Collection.compact()``, queries interleaved between the two, with dense recall@10 against
exact search on the live vectors (segments above 50k rows use HNSW). Single-query FAISS flat
search runs on 2 OpenMP threads: on a loaded 2-core machine it swings between ~1 and ~30 ms
for 10k vectors from one minute to the next, hence the interleaving.

The "before" side runs in a subprocess with ``PYTHONPATH`` set to ``git archive <ref>``
of ``ctxroute/`` (no checkout of the shared tree). Output: JSON (``--out``) and a markdown
summary on stdout. Timings are noisy on a shared machine: the load average is recorded.

    nice -n 10 .venv/bin/python benchmarks/store_append.py --sizes 10000 100000 --out eval_results/store_append.json
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
VOCAB = 30_000
SENTENCES_PER_BASE_DOC = 100  # ~100 passages (~35-token sentences, passages of one or two)


class Corpus:
    """Seeded synthetic text: Zipf-distributed pseudo-words (duplicates among the 30k draws
        are harmless), sentences of 8-18 words."""

    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)
        # words of 1-4 syllables, ~3 tokens a word (cl100k): sentences of ~35 tokens
        syllables = np.array([a + b for a in "bcdfghklmnprstvw" for b in ("a", "e", "i", "o", "u", "an", "er", "in", "on")])
        lengths = self.rng.integers(1, 5, size=VOCAB)
        self.words = np.array(["".join(self.rng.choice(syllables, size=n)) for n in lengths])
        p = 1.0 / np.arange(1, VOCAB + 1)
        self.p = p / p.sum()

    def text(self, n_sentences: int) -> str:
        lengths = self.rng.integers(8, 19, size=n_sentences)
        ids = self.rng.choice(VOCAB, size=int(lengths.sum()), p=self.p)
        out, at = [], 0
        for n in lengths:
            out.append(" ".join(self.words[ids[at:at + n]]).capitalize() + ".")
            at += n
        return " ".join(out)

    def queries(self, n: int) -> list[str]:
        mid = np.arange(200, 5000)  # neither stop-word-like nor unseen
        return [" ".join(self.words[self.rng.choice(mid, size=3)]) for _ in range(n)]


def _wchar() -> int:
    for line in Path("/proc/self/io").read_text().splitlines():
        if line.startswith("wchar:"):
            return int(line.split()[1])
    return 0


def _dir_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())


def _p50_ms(fn: Any, queries: list[str]) -> float:
    fn(queries[0])  # warm-up (the graph's PageRank matrix is built on first use)
    times = []
    for q in queries:
        t0 = time.perf_counter()
        fn(q)
        times.append((time.perf_counter() - t0) * 1000)
    return float(statistics.median(times))


def _latency(col: Any, queries: list[str]) -> dict[str, float]:
    return {r: _p50_ms(lambda q, r=r: col.search(q, 10, r), queries) for r in ("bm25", "dense", "hybrid")}


def _latency_pair(col: Any, a: Any, b: Any, queries: list[str]) -> tuple[dict[str, float], dict[str, float]]:
    """p50 on two states of one collection, queries interleaved (a, b, a, b, ...), so a
    change in machine load hits both alike."""
    out_a, out_b = {}, {}
    for r in ("bm25", "dense", "hybrid"):
        times: dict[int, list[float]] = {0: [], 1: []}
        for which, st in enumerate((a, b)):  # warm-up: retrievers, the graph's matrix
            col._state = st
            col.search(queries[0], 10, r)
        for q in queries:
            for which, st in enumerate((a, b)):
                col._state = st
                t0 = time.perf_counter()
                col.search(q, 10, r)
                times[which].append((time.perf_counter() - t0) * 1000)
        out_a[r], out_b[r] = float(statistics.median(times[0])), float(statistics.median(times[1]))
    col._state = b
    return out_a, out_b


def _dense_recall(col: Any, queries: list[str]) -> float:
    st = col._state
    vectors = np.asarray(st.dense.vectors, dtype=np.float32)
    hits = []
    for q in queries:
        v = col.query_embedder.embed([q])[0]
        scores = vectors @ v
        tenth = np.sort(scores)[-10]
        got = [p for p, _ in st.dense.search(v, 10)]
        hits.append(sum(scores[p] >= tenth - 1e-5 for p in got) / 10)  # ties at the cut count as found
    return float(np.mean(hits))


def measure(size: int, adds: int, doc_sizes: list[int], n_queries: int, seed: int) -> dict[str, Any]:
    """One collection of ``size`` passages with the ``ctxroute`` on ``sys.path``."""
    import ctxroute
    from ctxroute.retrievers.chunking import ChunkingConfig
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.retrievers.embedders import HashingEmbedder

    corpus = Corpus(seed)
    emb = HashingEmbedder(384)
    config = CollectionConfig.for_embedder(emb, chunking=ChunkingConfig(passage_tokens=64))
    out: dict[str, Any] = {"code": str(Path(ctxroute.__file__).parent), "size_target": size}
    with tempfile.TemporaryDirectory(prefix="store-append-") as tmp:
        col = CollectionStore(Path(tmp)).create("bench", config, emb)
        n_docs = max(1, round(size / 100))
        docs = [document_from_text(corpus.text(SENTENCES_PER_BASE_DOC), title=f"Base {i}", doc_id=f"base{i}")
                for i in range(n_docs)]
        t0 = time.perf_counter()
        col.add_documents(docs)
        out["build_seconds"] = time.perf_counter() - t0
        out["passages"] = len(col.passages())
        out["disk_bytes"] = _dir_bytes(col.path)
        rows = []
        for i in range(adds):
            n_sent = doc_sizes[i % len(doc_sizes)]
            doc = document_from_text(corpus.text(n_sent), title=f"New {i}", doc_id=f"new{i}")
            w0, t0 = _wchar(), time.perf_counter()
            stats = col.add_documents([doc])
            seconds, written = time.perf_counter() - t0, _wchar() - w0
            t0 = time.perf_counter()
            col.search(f"new {i}", 10, "hybrid")  # the first query after a write builds the graph's matrix
            first_query = time.perf_counter() - t0
            rows.append({"sentences": n_sent, "passages": stats.passages, "seconds": seconds, "bytes_written": written,
                         "first_hybrid_query_seconds": first_query,
                         "phases": {k: round(v, 4) for k, v in stats.seconds.items()}})
        out["adds"] = rows
        col.remove_document("base0")
        col.remove_document("new0")
        queries = corpus.queries(n_queries)
        st = col._state
        out["segments"] = len(getattr(st, "segments", []) or [None])
        out["dead_rows"] = int(getattr(st.sparse, "n_dead", 0))
        if hasattr(col, "compact"):
            segmented = col._state
            t0 = time.perf_counter()
            col.compact()
            out["compact_seconds"] = time.perf_counter() - t0
            out["query_p50_ms"], out["compacted_query_p50_ms"] = _latency_pair(col, segmented, col._state, queries)
            out["compacted_dense_recall_at_10"] = _dense_recall(col, queries[:20])
            col._state = segmented
        else:
            out["query_p50_ms"] = _latency(col, queries)
        out["dense_recall_at_10"] = _dense_recall(col, queries[:20])
    return out


def _child(args: argparse.Namespace) -> None:
    result = [measure(size, args.adds, args.doc_sizes, args.queries, args.seed) for size in args.sizes]
    Path(args.child_out).write_text(json.dumps(result, indent=1))


def _run(code_root: Path | None, args: argparse.Namespace, adds: int) -> list[dict[str, Any]]:
    with tempfile.NamedTemporaryFile(suffix=".json", delete=False) as fh:
        target = Path(fh.name)
    env = dict(os.environ)
    if code_root is not None:
        env["PYTHONPATH"] = f"{code_root}{os.pathsep}{env.get('PYTHONPATH', '')}"
    cmd = [sys.executable, __file__, "--child-out", str(target), "--adds", str(adds), "--queries", str(args.queries),
           "--seed", str(args.seed), "--sizes", *map(str, args.sizes), "--doc-sizes", *map(str, args.doc_sizes)]
    subprocess.run(cmd, env=env, check=True, cwd=str(code_root or ROOT))
    return json.loads(target.read_text())


def _summary(after: list[dict[str, Any]], before: list[dict[str, Any]] | None, load: tuple[str, str]) -> str:
    lines = [f"load average at start / end: {load[0]} / {load[1]} (2 shared cores)", "",
             "| passages | code | s per add (median) | MB written per add (median) | s per passage added | query p50 ms bm25 / dense / hybrid |",
             "|---:|---|---:|---:|---:|---|"]
    for i, a in enumerate(after):
        for label, r in (("before (full rewrite)", before[i] if before else None), ("after (segments)", a)):
            if r is None:
                continue
            s = statistics.median(x["seconds"] for x in r["adds"])
            mb = statistics.median(x["bytes_written"] for x in r["adds"]) / 1e6
            per = statistics.median(x["seconds"] / max(x["passages"], 1) for x in r["adds"])
            q = r["query_p50_ms"]
            lines.append(f"| {r['passages']:,} | {label} | {s:.3f} | {mb:.2f} | {per * 1000:.1f} ms | "
                         f"{q['bm25']:.1f} / {q['dense']:.1f} / {q['hybrid']:.1f} ({r['segments']} segments) |")
        if "compacted_query_p50_ms" in a:
            q = a["compacted_query_p50_ms"]
            lines.append(f"| {a['passages']:,} | after, compacted ({a['compact_seconds']:.1f} s) | | | | "
                         f"{q['bm25']:.1f} / {q['dense']:.1f} / {q['hybrid']:.1f} (1 segment) |")
    for label, runs in (("after", after), ("before", before or [])):
        if not runs:
            continue
        lines += ["", f"Per add ({label}): passages added, seconds, MB written, first hybrid query after it"]
        for a in runs:
            lines.append(f"- {a['passages']:,}: " + "; ".join(
                f"{x['passages']} p {x['seconds']:.3f} s {x['bytes_written'] / 1e6:.2f} MB "
                f"q1 {x['first_hybrid_query_seconds']:.2f} s" for x in a["adds"]))
    if before:
        ratios = []
        for a, b in zip(after, before):
            sa = statistics.median(x["seconds"] for x in a["adds"])
            sb = statistics.median(x["seconds"] for x in b["adds"])
            ratios.append(f"{a['passages']:,} passages: {sb / sa:.0f}x faster, "
                          f"{statistics.median(x['bytes_written'] for x in b['adds']) / max(1, statistics.median(x['bytes_written'] for x in a['adds'])):.0f}x fewer bytes")
        lines += ["", "Before / after per add: " + "; ".join(ratios)]
    lines += ["", "dense recall@10 vs exact: " + "; ".join(
        f"{a['passages']:,}: segmented {a['dense_recall_at_10']:.2f}, compacted {a.get('compacted_dense_recall_at_10', float('nan')):.2f}"
        for a in after)]
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    ap.add_argument("--adds", type=int, default=7, help="single-document adds per size (this code)")
    ap.add_argument("--adds-before", type=int, default=3, help="single-document adds per size (before)")
    ap.add_argument("--doc-sizes", type=int, nargs="+", default=[20, 5, 80],
                    help="sentences per added document (~20, ~5 and ~80 passages)")
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--before-ref", default="a2d4028", help="git ref of the full-rewrite layout ('' to skip)")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--child-out", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child_out:
        _child(args)
        return
    load_start = " ".join(os.getloadavg().__repr__().strip("()").split(", "))
    after = _run(None, args, args.adds)
    before = None
    if args.before_ref:
        with tempfile.TemporaryDirectory(prefix="ctxroute-before-") as old:
            archive = subprocess.run(["git", "-C", str(ROOT), "archive", args.before_ref, "ctxroute"],
                                     check=True, capture_output=True).stdout
            subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
            before = _run(Path(old), args, args.adds_before)
    load_end = " ".join(os.getloadavg().__repr__().strip("()").split(", "))
    result = {"after": after, "before": before, "before_ref": args.before_ref, "load_average": [load_start, load_end],
              "settings": {k: v for k, v in vars(args).items() if k not in ("out", "child_out")}}
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1, default=str))
    print(_summary(after, before, (load_start, load_end)))


if __name__ == "__main__":
    main()
