"""Query latency and write cost of the ``postgres`` storage backend against ``files`` on the
same collection, in the same run.

1. A synthetic corpus (``ctxroute.synthetic.generate_corpus``, a few thousand passages) is
   ingested in batches into a files collection and into a postgres collection (a real
   PostgreSQL 16 + pgvector from ``pgserver``, local Unix socket). The passage vectors are
   computed once (the postgres ingest reads them from an embedding cache), so the two ingests
   differ only in their indexing and commit. Reported: the commit ("save") seconds per backend
   and the Postgres insert rate in passages/s (documents, chunk hierarchy, vectors, tsvector
   and key terms, one transaction per batch).
2. Loading: a cold ``open`` of each (the files version from disk; postgres from its rows,
   BM25 and graph rebuilt in memory) and a replica's refresh after a one-document write
   through another handle (postgres reads only the new document).
3. Query p50/p95 (ms) for bm25, dense and hybrid, with the query embedding (its cache
   cleared before every query) and without (vectors precomputed), on both backends; dense
   exact (the default below ``hnsw_threshold``) and, with ``--hnsw``, both backends' HNSW.

Run: ``python benchmarks/store_latency.py [--docs 60] [--words 4000] [--embedder minilm|hashing-384]
[--queries 100] [--hnsw] [--out store_latency.json] [--embed-cache vectors.dbm]``. Ratios are postgres / files (> 1: postgres slower).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np


def _pct(seconds: Sequence[float]) -> dict[str, float]:
    ms = np.asarray(seconds, dtype=np.float64) * 1000
    return {"p50_ms": round(float(np.percentile(ms, 50)), 3), "p95_ms": round(float(np.percentile(ms, 95)), 3),
            "n": int(ms.size)}


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _time(fn: Callable[[], Any]) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def _queries(col: Any, questions: Sequence[str], with_embedding: bool, retrievers: Sequence[str],
             k: int) -> dict[str, dict[str, float]]:
    cache = getattr(col.query_embedder, "cache", None)
    if not with_embedding:
        col.query_embedder.embed(list(questions))  # precomputed: every query vector is a cache hit
    out = {}
    for name in retrievers:
        times = []
        for q in questions:
            if with_embedding and cache is not None:
                cache.clear()
            times.append(_time(lambda: col.search(q, k=k, retriever=name)))
        out[name] = _pct(times)
    return out


def run(args: argparse.Namespace) -> dict[str, Any]:
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.retrievers.embedders import CachedEmbedder, make_embedder
    from ctxroute.retrievers.pg_schema import close_pools
    from ctxroute.synthetic import generate_corpus

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

    report: dict[str, Any] = {"load_start": _load(), "args": vars(args)}
    corpus = generate_corpus(seed=args.seed, n_docs=args.docs, n_words=args.words)
    docs = [document_from_text(d.text, title=d.title, source=f"report-{i}.md", format="md")
            for i, d in enumerate(corpus)]
    questions = [qa.question for d in corpus for qa in d.qa][: args.queries]
    import dbm

    # the second ingest reuses the vectors; --embed-cache keeps them for the next run as well
    cache = dbm.open(str(args.embed_cache), "c") if args.embed_cache else None
    embedder = CachedEmbedder(make_embedder(args.embedder), cache=cache)
    config = CollectionConfig.for_embedder(embedder, **({"hnsw_threshold": 1000} if args.hnsw else {}))
    tmp = Path(tempfile.mkdtemp(prefix="ctxroute-store-bench-"))
    server = pgserver.get_server(tmp / "pg", cleanup_mode="stop")
    stores = {"files": lambda: CollectionStore(tmp / "files"),
              "postgres": lambda: CollectionStore(server.get_uri(), namespace="bench")}
    try:
        cols: dict[str, Any] = {}
        for kind, make in stores.items():
            col = make().create("bench", config, embedder)
            seconds: dict[str, float] = {}
            passages = 0
            t0 = time.perf_counter()
            for start in range(0, len(docs), args.batch):
                stats = col.add_documents(docs[start:start + args.batch])
                passages += stats.passages
                for stage, s in stats.seconds.items():
                    seconds[stage] = seconds.get(stage, 0.0) + s
            wall = time.perf_counter() - t0
            report[f"ingest_{kind}"] = {"passages": passages, "wall_s": round(wall, 2),
                                        "stages_s": {k: round(v, 3) for k, v in seconds.items()},
                                        "save_passages_per_s": round(passages / seconds["save"], 1)}
            cols[kind] = col
        report["load_after_ingest"] = _load()
        report["save_ratio_postgres_over_files"] = round(
            report["ingest_postgres"]["stages_s"]["save"] / report["ingest_files"]["stages_s"]["save"], 2)

        for kind, make in stores.items():  # cold open: a new store object (no per-process cache)
            report[f"open_{kind}_s"] = round(min(_time(lambda: make().open("bench", embedder)) for _ in range(3)), 3)
        refresh = {}
        for kind, make in stores.items():
            reader = make().open("bench", embedder)
            writer = make().open("bench", embedder)
            extra = document_from_text(f"One more note {kind}: the pilot boat sailed at dawn.", doc_id=f"extra-{kind}")
            writer.add_documents([extra])
            refresh[kind] = round(_time(reader.refresh), 3)
            assert extra.id in reader
            writer.remove_document(extra.id)
            reader.refresh()
        report["refresh_after_one_doc_s"] = refresh

        latency: dict[str, Any] = {}
        for kind, make in stores.items():
            col = make().open("bench", embedder)
            col.search(questions[0], k=args.k)  # warm the retrievers of this version
            latency[kind] = {"with_embedding": _queries(col, questions, True, ("dense", "hybrid"), args.k),
                             "without_embedding": _queries(col, questions, False, ("bm25", "dense", "hybrid"), args.k)}
        report["latency"] = latency
        ratios = {}
        for mode in ("with_embedding", "without_embedding"):
            for name, files in latency["files"][mode].items():
                ratios[f"{name} {mode}"] = round(latency["postgres"][mode][name]["p50_ms"] / files["p50_ms"], 2)
        report["p50_ratio_postgres_over_files"] = ratios
        agree = []
        for q in questions[:20]:
            a = [h.chunk.id for h in cols["files"].search(q, k=10, retriever="dense")]
            b = [h.chunk.id for h in cols["postgres"].search(q, k=10, retriever="dense")]
            agree.append(len(set(a) & set(b)) / max(1, len(a)))
        report["dense_top10_overlap"] = round(float(np.mean(agree)), 3)
        if args.hnsw:  # recall@10 of each backend's HNSW search against its own exact search
            report["hnsw_recall_at_10"] = _hnsw_recall(cols, embedder, questions, args.k)
        report["load_end"] = _load()
    finally:
        close_pools()
        server.cleanup()
        if cache is not None:
            cache.close()
    return report


def _hnsw_recall(cols: dict[str, Any], embedder: Any, questions: Sequence[str], k: int) -> dict[str, Any]:
    from ctxroute.retrievers.dense import DenseIndex
    from ctxroute.retrievers.pg_dense import PgDenseIndex

    vectors = np.asarray(embedder.embed(list(questions)), dtype=np.float32)
    out = {}
    for kind, col in cols.items():
        hnsw = col._state.dense
        if kind == "files":
            exact = DenseIndex(hnsw.dim, hnsw_threshold=10**9)
            exact.add(hnsw.vectors)
        else:
            exact = PgDenseIndex(hnsw.pool, hnsw.collection_id, hnsw.dim, 10**9, hnsw.positions)
        if hnsw.kind != "hnsw":  # the files backend makes HNSW per segment, for segments above the threshold
            out[kind] = f"{hnsw.kind} (no HNSW segment)"
            continue
        hits = [len({i for i, _ in hnsw.search(v, k)} & {i for i, _ in exact.search(v, k)}) / k for v in vectors]
        out[kind] = round(float(np.mean(hits)), 3)
    return out


def markdown(r: dict[str, Any]) -> str:
    a = r["args"]
    lines = [f"store latency: {r['ingest_files']['passages']} passages ({a['docs']} synthetic reports), embedder "
             f"{a['embedder']}, dense {'HNSW' if a['hnsw'] else 'exact'}, k={a['k']}; load average "
             f"{r['load_start']} (start) / {r['load_after_ingest']} (after ingest) / {r['load_end']} (end)", "",
             "| | files | postgres | postgres / files |", "|---|---|---|---|"]
    fi, pg = r["ingest_files"], r["ingest_postgres"]
    lines.append(f"| commit (save) s, all batches | {fi['stages_s']['save']} | {pg['stages_s']['save']} | "
                 f"{r['save_ratio_postgres_over_files']} |")
    lines.append(f"| commit rate, passages/s | {fi['save_passages_per_s']} | {pg['save_passages_per_s']} | |")
    lines.append(f"| ingest wall s (batches of {a['batch']}) | {fi['wall_s']} | {pg['wall_s']} | "
                 f"{round(pg['wall_s'] / fi['wall_s'], 2)} |")
    lines.append(f"| cold open s | {r['open_files_s']} | {r['open_postgres_s']} | "
                 f"{round(r['open_postgres_s'] / r['open_files_s'], 2)} |")
    rf = r["refresh_after_one_doc_s"]
    lines.append(f"| refresh after a 1-doc write s | {rf['files']} | {rf['postgres']} | "
                 f"{round(rf['postgres'] / rf['files'], 2)} |")
    for mode in ("without_embedding", "with_embedding"):
        for name, files in r["latency"]["files"][mode].items():
            p = r["latency"]["postgres"][mode][name]
            lines.append(f"| {name} {mode.replace('_', ' ')}: p50 / p95 ms | {files['p50_ms']} / {files['p95_ms']} | "
                         f"{p['p50_ms']} / {p['p95_ms']} | {r['p50_ratio_postgres_over_files'][f'{name} {mode}']} |")
    lines.append(f"\ndense top-10 overlap postgres vs files: {r['dense_top10_overlap']}")
    if "hnsw_recall_at_10" in r:
        lines.append(f"HNSW recall@10 against the same backend's exact search: {r['hnsw_recall_at_10']}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--docs", type=int, default=60)
    p.add_argument("--words", type=int, default=4000)
    p.add_argument("--batch", type=int, default=10, help="documents per add_documents call (one commit each)")
    p.add_argument("--embedder", default="minilm")
    p.add_argument("--queries", type=int, default=100)
    p.add_argument("--k", type=int, default=10)
    p.add_argument("--seed", type=int, default=11)
    p.add_argument("--hnsw", action="store_true", help="hnsw_threshold=1000: both backends search HNSW indexes")
    p.add_argument("--out", type=Path)
    p.add_argument("--embed-cache", type=Path, help="a dbm file keeping passage vectors between runs")
    args = p.parse_args(argv)
    report = run(args)
    print(markdown(report))
    if args.out:
        args.out.write_text(json.dumps(report, indent=1, default=str))


if __name__ == "__main__":
    main()
