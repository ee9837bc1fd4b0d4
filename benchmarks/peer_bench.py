"""ctxroute against its peers on the same passages, interleaved, one table.

Runs, in fresh processes and interleaved per repetition: ctxroute (``peer_ctxroute.py``:
default bf16-where-available ingestion, long passages truncated as the peers do; ``--windows``
adds a run that embeds them whole), the raw MiniLM encode in
fp32 and bf16, LlamaIndex (VectorStoreIndex + BM25 + QueryFusionRetriever) and LangChain
(FAISS + BM25Retriever + EnsembleRetriever) from the peer harness
(``../shared/tools/peerbench``; copy it somewhere writable, make its ``venv/`` and
``data/`` as its README says). Prints one markdown table: build seconds, passages/s, query
p50/p95 with and without the query embedding, peak RSS, disk, with the load average.

Run: ``nice -n 10 python benchmarks/peer_bench.py --peerbench /tmp/peerbench --n 1000
[--reps 1] [--windows] [--agreement 1000] [--out peer.json]``. No timed assertions:
numbers are reported, with ratios against the peers measured in the same run.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Sequence

HERE = Path(__file__).resolve().parent


def _run(cmd: list[str], cwd: Path, timeout: int) -> tuple[int, float]:
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1", TOKENIZERS_PARALLELISM="false")
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, cwd=cwd, env=env, timeout=timeout, capture_output=True, text=True)
    if proc.returncode != 0:
        print(f"FAILED ({proc.returncode}): {' '.join(cmd)}\n{proc.stderr[-2000:]}", file=sys.stderr)
    return proc.returncode, time.perf_counter() - t0


def run(peerbench: Path, n: int | None, reps: int, windows: bool, agreement: int, timeout: int,
        systems: Sequence[str] | None = None) -> dict[str, Any]:
    py_peer = str(peerbench / "venv" / "bin" / "python")
    runs = peerbench / "runs"
    runs.mkdir(exist_ok=True)
    size = ["--n", str(n)] if n else []
    results: dict[str, list[dict[str, Any]]] = {}
    load: list[list[float]] = [list(os.getloadavg())]
    for rep in range(1, reps + 1):
        ours = [sys.executable, str(HERE / "peer_ctxroute.py"), "--data", str(peerbench / "data"), *size]
        # (name, command, where its result lands): ctxroute writes to --out; the peer harness's scripts
        # name their file by system and rep (bench_embed by dtype and rep, so the batch-16 run is rep 100 + rep)
        plan: list[tuple[str, list[str], Path]] = [
            ("ctxroute", [*ours, "--agreement", str(agreement if rep == 1 else 0),
                          "--out", str(runs / f"ctxroute.rep{rep}.json")], runs / f"ctxroute.rep{rep}.json"),
            ("embed_fp32", [py_peer, "bench_embed.py", "--dtype", "fp32", "--rep", str(rep), *size],
             runs / f"embed_fp32.rep{rep}.json"),
            ("embed_bf16", [py_peer, "bench_embed.py", "--dtype", "bf16", "--rep", str(rep), *size],
             runs / f"embed_bf16.rep{rep}.json"),
            # the raw encoder at ctxroute's own batch size (16; the harness's default is 64): the strict floor
            ("embed_bf16_b16", [py_peer, "bench_embed.py", "--dtype", "bf16", "--batch", "16", "--rep",
                                str(100 + rep), *size], runs / f"embed_bf16.rep{100 + rep}.json"),
            ("llamaindex", [py_peer, "bench_llamaindex.py", "--rep", str(rep), *size], runs / f"llamaindex.rep{rep}.json"),
            ("langchain", [py_peer, "bench_langchain.py", "--rep", str(rep), *size], runs / f"langchain.rep{rep}.json"),
        ]
        if windows:  # the non-default policy: every long passage embedded whole, as windows
            out = runs / f"ctxroute_windows.rep{rep}.json"
            plan.insert(1, ("ctxroute_windows", [*ours, "--long-text", "windows", "--out", str(out)], out))
        for name, cmd, path in plan:
            if systems and name not in systems:
                continue
            print(f"{time.strftime('%H:%M:%S')} rep {rep}: {name} (load {os.getloadavg()[0]:.1f})", file=sys.stderr)
            rc, wall = _run(cmd, peerbench, timeout)
            if rc == 0 and path.exists():
                r = json.loads(path.read_text())
                r["process_wall_s"] = wall
                results.setdefault(name, []).append(r)
            load.append(list(os.getloadavg()))
    return {"results": results, "load": load, "n": n, "reps": reps}


def _med(rs: Sequence[dict[str, Any]], *keys: str) -> float:
    vals = []
    for r in rs:
        v: Any = r
        for k in keys:
            v = v.get(k) if isinstance(v, dict) else None
        if isinstance(v, (int, float)):
            vals.append(float(v))
    return statistics.median(vals) if vals else float("nan")


def table(data: dict[str, Any]) -> str:
    res = data["results"]
    rows = ["| system | build s | passages/s | query p50 / p95 ms, with embedding | without embedding | "
            "peak RSS MiB | disk |", "|---|---|---|---|---|---|---|"]

    def fmt(x: float, f: str = "{:.1f}") -> str:
        return "–" if x != x else f.format(x)

    for name in ("ctxroute", "ctxroute_windows"):
        rs = res.get(name, [])
        if rs:
            disk = _med(rs, "disk_bytes") / 1e6
            rows.append(
                f"| {rs[0]['system']} hybrid (bm25+dense+graph) | {fmt(_med(rs, 'build_s'))} | "
                f"{fmt(_med(rs, 'passages_per_s'))} | {fmt(_med(rs, 'q_hybrid_with_embedding', 'p50_ms'), '{:.2f}')} / "
                f"{fmt(_med(rs, 'q_hybrid_with_embedding', 'p95_ms'), '{:.2f}')} | "
                f"{fmt(_med(rs, 'q_hybrid_no_embedding', 'p50_ms'), '{:.2f}')} / "
                f"{fmt(_med(rs, 'q_hybrid_no_embedding', 'p95_ms'), '{:.2f}')} | {fmt(_med(rs, 'peak_rss_mib'), '{:.0f}')} | "
                f"{disk:.2f} MB ({_med(rs, 'disk_over_text'):.2f}x text) |")
    for name, label in (("embed_fp32", "MiniLM encode alone, fp32"), ("embed_bf16", "MiniLM encode alone, bf16"),
                        ("embed_bf16_b16", "MiniLM encode alone, bf16, batch 16")):
        rs = res.get(name, [])
        if rs:
            rows.append(f"| {label} | {fmt(_med(rs, 'encode_s'))} | {fmt(_med(rs, 'passages_per_s'))} | – | – | "
                        f"{fmt(_med(rs, 'peak_rss_mib'), '{:.0f}')} | – |")
    for name, label, q in (("llamaindex", "LlamaIndex QueryFusionRetriever (vector+BM25)", "q_fusion_async"),
                           ("langchain", "LangChain EnsembleRetriever (FAISS+BM25)", "q_ensemble")):
        rs = res.get(name, [])
        if rs:
            rows.append(
                f"| {label} | {fmt(_med(rs, 'build_total_s'))} | {fmt(_med(rs, 'passages_per_s_build'))} | "
                f"{fmt(_med(rs, q, 'p50_ms'), '{:.2f}')} / {fmt(_med(rs, q, 'p95_ms'), '{:.2f}')} | "
                f"vector search only: {fmt(_med(rs, 'q_vector_search_no_embed', 'p50_ms'), '{:.2f}')} / "
                f"{fmt(_med(rs, 'q_vector_search_no_embed', 'p95_ms'), '{:.2f}')} | "
                f"{fmt(_med(rs, 'peak_rss_mib'), '{:.0f}')} | in memory |")
    out = ["\n".join(rows), ""]
    c = res.get("ctxroute", [])
    if c:
        pps = _med(c, "passages_per_s")
        peers = {k: _med(res.get(k, []), "passages_per_s_build") for k in ("llamaindex", "langchain")}
        raw = {k: _med(res.get(k, []), "passages_per_s") for k in ("embed_fp32", "embed_bf16")}
        dtype = "embed_bf16" if "bfloat16" in c[0]["system"] else "embed_fp32"
        b16 = _med(res.get("embed_bf16_b16", []), "passages_per_s")
        out.append(f"ctxroute build throughput: {pps / peers['llamaindex']:.2f}x LlamaIndex, "
                   f"{pps / peers['langchain']:.2f}x LangChain, {pps / raw[dtype]:.2f} of the raw {dtype[6:]} "
                   f"encode in its own process (batch 64{f'; {pps / b16:.2f} of it at batch 16' if b16 == b16 and dtype == 'embed_bf16' else ''}); "
                   f"ingestion embed stage / same-process encode of the same texts: "
                   f"{_med(c, 'embed_share_of_raw'):.2f}. Query encoder: {c[0].get('query_encoder')}.")
        w = res.get("ctxroute_windows", [])
        if w:
            wp = _med(w, "passages_per_s")
            out.append(f"With --long-text windows: {wp / peers['llamaindex']:.2f}x LlamaIndex, "
                       f"{wp / peers['langchain']:.2f}x LangChain, {wp / raw[dtype]:.2f} of the raw {dtype[6:]} encode.")
        ag = c[0].get("agreement")
        if ag:
            out.append(f"Query encoder agreement on {ag['queries']} queries: cosine to fp32 torch mean "
                       f"{ag['onnx_vs_fp32_cosine_mean']:.4f} (min {ag['onnx_vs_fp32_cosine_min']:.4f}); dense "
                       f"top-10 overlap ONNX vs fp32 query {ag['dense_top10_overlap_onnx_vs_fp32_query']:.3f}; "
                       f"stored float16 ({c[0]['system']}) vs {ag['passage_vectors_reference']} passage vectors "
                       f"{ag['dense_top10_overlap_stored_fp16_vs_fp32_passages']:.3f}.")
        out.append("Disk by file (MB): " + ", ".join(f"{k} {v / 1e6:.2f}" for k, v in sorted(
            c[0]["disk_files"].items(), key=lambda kv: -kv[1])))
    out.append("Load average (1 min) through the run: " + " ".join(f"{x[0]:.1f}" for x in data["load"])
               + f"; {os.cpu_count()} CPUs")
    return "\n".join(out)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--peerbench", type=Path, required=True, help="writable copy of ../shared/tools/peerbench")
    ap.add_argument("--n", type=int, default=None, help="first N passages (default: all)")
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--windows", action="store_true",
                    help="also ctxroute with long passages embedded whole as windows (the default truncates them)")
    ap.add_argument("--agreement", type=int, default=1000, help="queries for the encoder agreement check")
    ap.add_argument("--timeout", type=int, default=3600)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--systems", default="", help="comma-separated subset to run (default: all)")
    ap.add_argument("--merge", type=Path, default=None,
                    help="JSON of an earlier run: its repetitions join this run's (medians in the table)")
    ap.add_argument("--merge-systems", default=None,
                    help="comma-separated systems whose earlier repetitions to keep (default: all)")
    a = ap.parse_args(argv)
    if a.merge_systems is not None:
        a.merge_systems = [x for x in a.merge_systems.split(",") if x]
    data = run(a.peerbench, a.n, a.reps, a.windows, a.agreement, a.timeout,
               [x for x in a.systems.split(",") if x] or None)
    if a.merge:
        old = json.loads(a.merge.read_text())
        for name, rs in old["results"].items():  # repetitions of both runs; medians in the table
            mine = data["results"].setdefault(name, [])
            if mine and rs and "agreement" not in mine[0] and "agreement" in rs[0]:
                mine[0]["agreement"] = rs[0]["agreement"]  # the encoder check does not depend on the rerun
            if a.merge_systems is None or name in a.merge_systems:
                mine.extend(rs)
        data["load"] = old["load"] + data["load"]
    print(table(data))
    if a.out:
        for rs in data["results"].values():
            for r in rs:
                r.pop("topk", None)
                r.pop("topk_hybrid", None)
        a.out.write_text(json.dumps(data, indent=1))


if __name__ == "__main__":
    main()
