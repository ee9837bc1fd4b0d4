"""Ingestion throughput with Ray (1 and 2 local actors) against the plain in-process ingest,
on the same files, in the same run, with the real all-MiniLM-L6-v2 embedder.

Corpus: the first ``--docs`` LooGLE articles from the shared data folder, written as .txt
files (so every path loads files, as ``ctxroute ingest`` does); the synthetic reports of
``ctxroute.synthetic`` when the shared data is absent (said so in the output).

For each configuration a fresh collection is built in a temporary store:

- ``plain``: ``load_paths`` + ``Collection.add_documents`` in this process, torch's default
  threads (what ``ctxroute ingest`` does);
- ``plain-1t``: the same with one torch thread (the per-core reference for the actors);
- ``ray-1`` / ``ray-2``: ``ray_ingest`` with 1 / 2 actors (one torch thread each) on one local
  cluster started once (its start-up is reported apart, not in any throughput).

Reported per configuration: passages/s end to end (wall clock of the whole ingest, actor
start-up and model load included), passages/s of the embedding stage alone, the commit's
seconds (BM25, FAISS, graph, save: the serial part), and the ratio to ``plain``. The Ray
collections are checked against ``plain``: same version, same passages, vector max |diff|
and min cosine (bf16 batches of different composition differ in the last bits).

Run: ``nice -n 10 python benchmarks/ray_ingest.py [--docs 4] [--runs plain,plain-1t,ray-1,ray-2] [--repeat 2]
[--out ray_ingest.json]``. Reports the load average at start and end: on a shared 2-core
machine the numbers are noisy, and 2 actors can at best double 1 actor's throughput.
"""
from __future__ import annotations

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Iterator, Sequence

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def write_corpus(folder: Path, n_docs: int) -> str:
    """``n_docs`` documents as .txt files under ``folder``; returns where they came from."""
    folder.mkdir(parents=True, exist_ok=True)
    loogle = SHARED / "LooGLE"
    if loogle.is_dir():
        from ctxroute.eval.datasets import load_dataset

        ds = load_dataset("loogle", SHARED)
        for i, (key, src) in enumerate(list(ds.documents.items())[:n_docs]):
            (folder / f"{i:02d}.txt").write_text(f"{src.title}\n\n{src.text}", encoding="utf-8")
        return f"LooGLE, first {n_docs} articles"
    from ctxroute.synthetic import generate_corpus

    for i, doc in enumerate(generate_corpus(n_docs=n_docs, n_words=15000)):
        (folder / f"{i:02d}.md").write_text(doc.text, encoding="utf-8")
    return f"synthetic reports x{n_docs} (shared data absent)"


def plain_run(store: Any, name: str, docs_dir: Path, threads: int | None) -> dict[str, Any]:
    from ctxroute.retrievers.collection import CollectionConfig
    from ctxroute.retrievers.documents import load_paths
    from ctxroute.retrievers.embedders import make_embedder

    t0 = time.perf_counter()
    emb = make_embedder(None, threads=threads)
    coll = store.create(name, CollectionConfig.for_embedder(emb), emb)
    report = load_paths([docs_dir])
    t_load = time.perf_counter() - t0
    stats = coll.add_documents(report.documents)
    wall = time.perf_counter() - t0
    commit = sum(v for k, v in stats.seconds.items() if k not in ("chunk", "embed"))
    return {"passages": stats.passages, "wall_s": wall, "load_s": t_load, "embed_s": stats.seconds["embed"],
            "chunk_s": stats.seconds["chunk"], "commit_s": commit, "version": stats.version}


def ray_run(store: Any, name: str, docs_dir: Path, workers: int) -> dict[str, Any]:
    from ctxroute.retrievers.collection import CollectionConfig
    from ctxroute.retrievers.distributed import ray_ingest
    from ctxroute.retrievers.embedders import make_embedder

    t0 = time.perf_counter()
    emb = make_embedder(None)
    coll = store.create(name, CollectionConfig.for_embedder(emb), emb)
    res = ray_ingest(coll, [docs_dir], workers=workers, threads=1)
    wall = time.perf_counter() - t0
    s = res.seconds
    return {"passages": res.stats.passages, "wall_s": wall, "load_s": s["load"], "embed_s": s["ray embed"],
            "commit_s": s["commit"], "commit_chunk_s": res.stats.seconds.get("chunk", 0.0),
            "version": res.stats.version, "shards": res.shards, "vectors_missed": res.vectors_missed}


def synthetic_docs(n_passages: int, seed: int = 11) -> list[Any]:
    """Documents of random sentences over a 5,000-word vocabulary, about ``n_passages``
    256-token passages in all (50 a document)."""
    from ctxroute.retrievers.documents import document_from_text

    rng = np.random.default_rng(seed)
    vocab = np.array([f"w{i}" for i in range(5000)])
    docs = []
    for d in range(max(1, n_passages // 50)):
        words = rng.choice(vocab, size=(286, 12))  # 286 twelve-word sentences: ~50 passages of 256 tokens
        text = " ".join(" ".join(row).capitalize() + "." for row in words)
        docs.append(document_from_text(f"Document {d}. " + text, source=f"synthetic-{d}.txt"))
    return docs


def commit_scale(store: Any, name: str, n_passages: int) -> dict[str, Any]:
    """The serial part alone: one ``add_documents`` of ~``n_passages`` passages whose vectors
    cost nothing to make (hashing embedder at MiniLM's 384 dimensions), per stage."""
    from ctxroute.retrievers.collection import CollectionConfig
    from ctxroute.retrievers.embedders import HashingEmbedder

    emb = HashingEmbedder(dim=384)
    docs = synthetic_docs(n_passages)
    coll = store.create(name, CollectionConfig.for_embedder(emb), emb)
    stats = coll.add_documents(docs)
    commit = sum(v for k, v in stats.seconds.items() if k not in ("chunk", "embed"))
    return {"passages": stats.passages, "seconds": dict(stats.seconds), "commit_s": commit,
            "commit_passages_per_s": stats.passages / commit}


@contextlib.contextmanager
def postgres_store() -> Iterator[Any]:
    """A CollectionStore on a throw-away PostgreSQL 16 + pgvector server (pgserver)."""
    import pgserver

    from ctxroute.retrievers.collection import CollectionStore

    tmp = tempfile.mkdtemp(prefix="ctxroute-ray-bench-pg-")
    server = pgserver.get_server(tmp, cleanup_mode="stop")
    try:
        yield CollectionStore(server.get_uri())
    finally:
        with contextlib.suppress(Exception):
            from ctxroute.retrievers.pg_schema import close_pools

            close_pools()
        server.cleanup()


def agreement(ca: Any, cb: Any) -> dict[str, Any]:
    """How the collection ``cb`` agrees with the reference ``ca``."""
    va = np.asarray(ca._state.dense.vectors, dtype=np.float32)
    vb = np.asarray(cb._state.dense.vectors, dtype=np.float32)
    cos = np.sum(va * vb, axis=1) / (np.linalg.norm(va, axis=1) * np.linalg.norm(vb, axis=1))
    return {"same_version": ca.version == cb.version, "same_passages": ca.passages() == cb.passages(),
            "max_abs_diff": float(np.abs(va - vb).max()), "min_cosine": float(cos.min())}


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=4, help="documents in the corpus (default 4)")
    ap.add_argument("--runs", default="plain,plain-1t,ray-1,ray-2", help="comma-separated configurations")
    ap.add_argument("--out", type=Path, default=None, help="also write the results as JSON")
    ap.add_argument("--repeat", type=int, default=1, help="repetitions of every run (order alternating); medians")
    ap.add_argument("--commit-passages", type=int, default=0,
                    help="also time the commit alone (hashing vectors) at this many passages, files store")
    ap.add_argument("--postgres", action="store_true",
                    help="also run ray-2 and the commit-alone run into a PostgreSQL store (pgserver)")
    a = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    runs = [r.strip() for r in a.runs.split(",") if r.strip()]
    from ctxroute.retrievers.collection import CollectionStore
    from ctxroute.retrievers.embedders import cpu_has_bf16

    out: dict[str, Any] = {"load_avg_start": os.getloadavg(), "cpus": os.cpu_count(), "bf16": cpu_has_bf16(),
                           "repeat": a.repeat, "reps": []}
    ray_runs = [r for r in runs if r.startswith("ray-")]
    with tempfile.TemporaryDirectory(prefix="ctxroute-ray-bench-") as tmp, contextlib.ExitStack() as stack:
        docs_dir = Path(tmp) / "docs"
        out["corpus"] = write_corpus(docs_dir, a.docs)
        if ray_runs:
            from ctxroute.retrievers.distributed import ray_session

            t0 = time.perf_counter()
            stack.enter_context(ray_session(num_cpus=os.cpu_count()))
            out["ray_start_s"] = time.perf_counter() - t0
        for rep in range(a.repeat):  # the order alternates, so load drifts hit every run alike
            store = CollectionStore(Path(tmp) / f"store{rep}")
            results: dict[str, Any] = {}
            for run in (runs if rep % 2 == 0 else runs[::-1]):
                if run.startswith("plain"):
                    results[run] = plain_run(store, run, docs_dir, 1 if run == "plain-1t" else None)
                else:
                    results[run] = ray_run(store, run, docs_dir, int(run.split("-")[1]))
                results[run]["load_avg"] = os.getloadavg()[0]
                print(rep, run, json.dumps(results[run]), file=sys.stderr)
            if "plain" in results:
                for run in results:
                    if run != "plain":
                        results[run]["vs_plain"] = agreement(store.open("plain"), store.open(run))
                        results[run]["x_plain"] = results["plain"]["wall_s"] / results[run]["wall_s"]
            out["reps"].append(results)
        if a.postgres and ray_runs:
            with postgres_store() as pg:
                r = out["ray_2_postgres"] = ray_run(pg, "ray2pg", docs_dir, 2)
                files = CollectionStore(Path(tmp) / "store0")
                if "plain" in runs:
                    r["vs_plain"] = agreement(files.open("plain"), pg.open("ray2pg"))
                print("ray-2-postgres", json.dumps(r), file=sys.stderr)
        if a.commit_passages:
            store = CollectionStore(Path(tmp) / "commit")
            out["commit_alone"] = {"files": commit_scale(store, "commit-files", a.commit_passages)}
            if a.postgres:
                with postgres_store() as pg:
                    out["commit_alone"]["postgres"] = commit_scale(pg, "commitpg", a.commit_passages)
    out["load_avg_end"] = os.getloadavg()
    lines = [f"corpus: {out['corpus']}; cpus {out['cpus']}, bf16 {out['bf16']}; load average at start "
             f"{out['load_avg_start'][0]:.2f}, at end {out['load_avg_end'][0]:.2f}"
             + (f"; ray cluster start {out['ray_start_s']:.1f}s (not counted)" if "ray_start_s" in out else "")
             + f"; median of {a.repeat} repetition(s), order alternating",
             "", "| run | passages | wall s | passages/s | x plain (same repetition) | embed s | embed passages/s | commit s |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for run in runs:
        reps = [rep[run] for rep in out["reps"]]
        med = {k: float(np.median([r[k] for r in reps])) for k in ("wall_s", "embed_s", "commit_s")}
        n = reps[0]["passages"]
        ratio = f"{np.median([r['x_plain'] for r in reps]):.2f}" if "x_plain" in reps[0] else ("1.00" if run == "plain" else "-")
        lines.append(f"| {run} | {n} | {med['wall_s']:.1f} | {n / med['wall_s']:.1f} | {ratio} | {med['embed_s']:.1f} | "
                     f"{n / med['embed_s']:.1f} | {med['commit_s']:.1f} |")
    for run in runs:
        for i, rep in enumerate(out["reps"]):
            v = rep[run].get("vs_plain")
            if v:
                lines.append(f"{run} vs plain (repetition {i + 1}): same version {v['same_version']}, same passages "
                             f"{v['same_passages']}, vector max |diff| {v['max_abs_diff']:.2e}, min cosine {v['min_cosine']:.5f}")
    if "ray_2_postgres" in out:
        r = out["ray_2_postgres"]
        v = r.get("vs_plain", {})
        lines.append(f"ray-2 into PostgreSQL: {r['passages']} passages, wall {r['wall_s']:.1f}s, commit {r['commit_s']:.1f}s"
                     + (f"; vs plain: same version {v['same_version']}, min cosine {v['min_cosine']:.5f}" if v else ""))
    for backend, c in out.get("commit_alone", {}).items():
        stages = ", ".join(f"{k} {v:.1f}s" for k, v in c["seconds"].items())
        lines.append(f"commit alone, {backend} store: {c['passages']:,} passages in {c['commit_s']:.1f}s = "
                     f"{c['commit_passages_per_s']:,.0f} passages/s ({stages})")
    print("\n".join(lines))
    if a.out:
        a.out.write_text(json.dumps(out, indent=1, default=str), encoding="utf-8")


if __name__ == "__main__":
    main()
