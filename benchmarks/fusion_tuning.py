"""Choose the hybrid fusion by tuning on some QA sets and reporting on the others.

Input: the ``--dump`` of ``benchmarks/retrieval_quality.py`` (each question's bm25, dense and
graph top-50: chunk id, score, gold units covered). Candidates: weighted reciprocal rank
fusion over a grid of ``rrf_k`` and per-retriever weights, and score-normalised fusion
(min-max per list, weighted sum). The objective on the tuning sets, in order: the largest
shortfall of hybrid recall@10 below the best single retriever on any tuning set (smaller is
better: "never lose to its best part"), then mean recall@10, then mean recall@5.

Run: ``python benchmarks/fusion_tuning.py DUMP --tune loogle,leval_contracts --report sec_10q,lara_32k_location``.
"""
from __future__ import annotations

import argparse
import itertools
import json
from collections import defaultdict
from collections.abc import Sequence
from pathlib import Path

SINGLES = ("bm25", "dense", "graph")
KS = (1, 5, 10, 20)


def load_dump(path: Path) -> list[dict]:
    return [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]


def fuse(lists: dict[str, list], method: str, rrf_k: float, weights: dict[str, float]) -> list[list[int]]:
    """Fused ranking of one question: the covered-unit lists of the hits, best first."""
    score: dict[str, float] = defaultdict(float)
    cover: dict[str, list[int]] = {}
    best_rank: dict[str, int] = {}
    for name, hits in lists.items():
        w = weights.get(name, 0.0)
        if not w or not hits:
            continue
        if method == "score":
            vals = [h[1] for h in hits]
            lo, hi = min(vals), max(vals)
        for rank, (cid, sc, cov) in enumerate(hits, start=1):
            cover[cid] = cov
            best_rank[cid] = min(best_rank.get(cid, rank), rank)
            if method == "rrf":
                score[cid] += w / (rrf_k + rank)
            else:
                score[cid] += w * ((sc - lo) / (hi - lo) if hi > lo else 1.0)
    order = sorted(score, key=lambda c: (-score[c], best_rank[c], c))
    return [cover[c] for c in order]


def recall(cov: Sequence[Sequence[int]], units: int, k: int) -> float:
    got: set[int] = set()
    for c in cov[:k]:
        got.update(c)
    return len(got) / units


def table(records: list[dict], method: str, rrf_k: float, weights: dict[str, float]) -> dict[str, dict[int, float]]:
    sums: dict[str, dict[int, float]] = defaultdict(lambda: defaultdict(float))
    n: dict[str, int] = defaultdict(int)
    for r in records:
        cov = fuse(r["lists"], method, rrf_k, weights)
        n[r["dataset"]] += 1
        for k in KS:
            sums[r["dataset"]][k] += recall(cov, r["units"], k)
    return {d: {k: sums[d][k] / n[d] for k in KS} for d in sums}


def singles(records: list[dict]) -> dict[str, dict[str, dict[int, float]]]:
    out: dict[str, dict[str, dict[int, float]]] = {}
    for name in SINGLES:
        out[name] = table(records, "rrf", 60, {name: 1.0})
    return out


def candidates() -> list[tuple[str, float, dict[str, float]]]:
    grid = (0.0, 0.5, 1.0, 2.0)
    out = []
    for wb, wd, wg in itertools.product(grid, grid, grid):
        if wb == wd == wg == 0 or (wb == 0 and wd == 0):
            continue
        weights = {"bm25": wb, "dense": wd, "graph": wg}
        for k in (1, 5, 10, 20, 60):
            out.append(("rrf", float(k), weights))
        out.append(("score", 0.0, weights))
    return out


def objective(res: dict[str, dict[int, float]], best: dict[str, dict[int, float]], sets: Sequence[str]) -> tuple:
    shortfall = max(max(0.0, best[d][10] - res[d][10]) for d in sets)
    return (-round(shortfall, 4), sum(res[d][10] for d in sets) / len(sets), sum(res[d][5] for d in sets) / len(sets))


def label(method: str, rrf_k: float, weights: dict[str, float]) -> str:
    w = "/".join(f"{weights[n]:g}" for n in SINGLES)
    return f"rrf k={rrf_k:g} w(bm25/dense/graph)={w}" if method == "rrf" else f"score-norm w={w}"


def run(records: list[dict], tune: Sequence[str], report: Sequence[str]) -> str:
    one = singles(records)
    datasets = sorted({r["dataset"] for r in records})
    best = {d: {k: max(one[n][d][k] for n in SINGLES) for k in KS} for d in datasets}
    scored = []
    for method, k, w in candidates():
        res = table(records, method, k, w)
        scored.append((objective(res, best, tune), method, k, w, res))
    scored.sort(key=lambda x: x[0], reverse=True)
    _, method, k, w, res = scored[0]
    lines = [f"chosen on {', '.join(tune)}: {label(method, k, w)}", "",
             "| data set | in-sample? | retriever | " + " | ".join(f"R@{k}" for k in KS) + " |",
             "|---|---|---|" + "---|" * len(KS)]
    for d in datasets:
        tag = "tuned on" if d in tune else ("held out" if d in report else "not used")
        for n in SINGLES:
            lines.append(f"| {d} | {tag} | {n} | " + " | ".join(f"{one[n][d][x]:.3f}" for x in KS) + " |")
        lines.append(f"| {d} | {tag} | **fused** | " + " | ".join(f"{res[d][x]:.3f}" for x in KS) + " |")
    lines += ["", "top 5 candidates on the tuning sets (objective: -max shortfall@10, mean R@10, mean R@5):"]
    for obj, m, kk, ww, _ in scored[:5]:
        lines.append(f"- {label(m, kk, ww)}: {tuple(round(x, 4) for x in obj)}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("dump", type=Path)
    ap.add_argument("--tune", default="loogle,leval_contracts")
    ap.add_argument("--report", default="sec_10q,lara_32k_location")
    args = ap.parse_args(argv)
    records = load_dump(args.dump)
    tune = [d.strip() for d in args.tune.split(",") if d.strip()]
    report = [d.strip() for d in args.report.split(",") if d.strip()]
    print(run(records, tune, report))


if __name__ == "__main__":
    main()
