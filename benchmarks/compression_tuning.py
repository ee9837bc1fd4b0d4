"""Two-fold cross-validated choice of the compressor's selection settings, on the prepared
(cached) tuning sets only: LooGLE and L-Eval contracts (``compression_retention.py --cache``).

Each set's documents are split in two folds (sorted by id, alternating). For each fold, the
grid point with the best mean retention over the tuning sets and ratios (each set and ratio
weighing the same) is picked on that fold and scored on the other: the out-of-fold numbers.
The final values are the ones picked on all tuning documents. No LaRA or SEC number is read.

Run: ``python benchmarks/compression_tuning.py --cache DIR [--grid rag]`` after
``python benchmarks/compression_retention.py --datasets loogle,leval_contracts --embedder minilm
--retriever hybrid --cache DIR`` (the rankings and sentences are read from DIR).
"""
from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from collections.abc import Sequence
from dataclasses import asdict, replace
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

TUNING_SETS = ("loogle", "leval_contracts")
RATIOS = (0.1, 0.2, 0.35, 0.5)


sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its scripts load each other
from _siblings import sibling as _sibling  # noqa: E402


def _memo_lexical() -> None:
    """The lexical scores depend on the question, the sentences and quote_boost only: memoise
    them for the grid (the selection is what varies)."""
    import ctxroute.pipelines.compress as c

    orig = c.lexical_scores
    memo: dict[tuple, np.ndarray] = {}

    def lexical(question: str, texts: Sequence[str], *, quote_boost: float = 1.0) -> np.ndarray:
        key = (question, len(texts), texts[0] if texts else "", texts[-1] if texts else "", quote_boost)
        if key not in memo:
            memo[key] = orig(question, texts, quote_boost=quote_boost)
        return memo[key]

    c.lexical_scores = lexical  # type: ignore[assignment]


def per_question(prepared: Sequence[object], cfg: object, ratios: Sequence[float]) -> dict[str, np.ndarray]:
    """Document id -> retention per (question, ratio) for ``cfg`` (RAG's: ``rag_per_question``)."""
    bench = _sibling("compression_retention")
    out: dict[str, np.ndarray] = {}
    for p in prepared:
        rows = []
        for it in p.items:  # type: ignore[attr-defined]
            row = []
            for r in ratios:
                sel = bench.select_prepared(p, it, replace(cfg, ratio=r))  # type: ignore[type-var]
                row.append(bench.retention(it, bench._spans(p.sentences, sel.kept.get(p.doc.id, ())), p.doc))  # type: ignore[attr-defined]
            rows.append(row)
        out[p.doc.id] = np.asarray(rows, dtype=np.float64).reshape(-1, len(ratios))  # type: ignore[attr-defined]
    return out


def rag_per_question(prepared: Sequence[object], ratios: Sequence[float], base: object) -> dict[str, np.ndarray]:
    bench = _sibling("compression_retention")
    out = {}
    for p in prepared:
        toks = bench.sentence_tokens(p.sentences, p.doc)  # type: ignore[attr-defined]
        rows = []
        for it in p.items:  # type: ignore[attr-defined]
            rows.append([bench.retention(it, bench._spans(p.sentences, bench.rag_keep(it.ranking, p.sentences,  # type: ignore[attr-defined]
                         replace(base, ratio=r).budget(p.full_tokens), p.doc, toks)), p.doc) for r in ratios])  # type: ignore[attr-defined]
        out[p.doc.id] = np.asarray(rows, dtype=np.float64).reshape(-1, len(ratios))  # type: ignore[attr-defined]
    return out


def folds(prepared: Sequence[object]) -> list[set[str]]:
    """Two folds of document ids: per data set, sorted by id, alternating."""
    f: list[set[str]] = [set(), set()]
    for ds in sorted({p.dataset for p in prepared}):  # type: ignore[attr-defined]
        ids = sorted(p.doc.id for p in prepared if p.dataset == ds)  # type: ignore[attr-defined]
        for i, d in enumerate(ids):
            f[i % 2].add(d)
    return f


def table(prepared: Sequence[object], scores: dict[str, np.ndarray], docs: set[str] | None = None) -> dict[str, np.ndarray]:
    """Data set -> mean retention per ratio over the questions of ``docs`` (all when None)."""
    out = {}
    for ds in sorted({p.dataset for p in prepared}):  # type: ignore[attr-defined]
        rows = [scores[p.doc.id] for p in prepared if p.dataset == ds and (docs is None or p.doc.id in docs)]  # type: ignore[attr-defined]
        out[ds] = np.concatenate(rows).mean(axis=0)
    return out


def objective(t: dict[str, np.ndarray]) -> float:
    return float(np.mean([v.mean() for v in t.values()]))


GRIDS = {
    # the seed (top passages whole, a share of the budget) x weak_score (units scoring below it follow the
    # hits' rank order instead of their score; None: all by score, the design before this round)
    "weak": lambda base: [replace(base, seed_share=s, weak_score=t)
                          for s, t in itertools.product((0.25, 0.5, 0.75),
                                                        (None, 0.1, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 1.5))],
}
BEFORE = {"seed_share": 0.5, "weak_score": None}  # the design before this round


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--embedder", default="minilm")
    ap.add_argument("--retriever", default="hybrid")
    ap.add_argument("--long-text", default="truncate", help="the collections' long-passage policy (part of the cache's file names)")
    ap.add_argument("--grid", default="weak", choices=sorted(GRIDS))
    ap.add_argument("--out", type=Path, default=None)
    a = ap.parse_args(argv)
    from ctxroute.pipelines.compress import CompressConfig

    cache = _sibling("compression_cache")
    pkl = a.cache / f"prepared-{a.embedder}-{a.long_text}-{a.retriever}.pkl"
    prepared = [p for p in cache._load(pkl).values() if p.dataset in TUNING_SETS]  # LaRA and SEC are never read
    if not prepared:
        raise SystemExit(f"no tuning set in {pkl}; build it with compression_retention.py --cache")
    _memo_lexical()
    base = CompressConfig(retriever=a.retriever)
    grid = GRIDS[a.grid](base)
    t0 = time.perf_counter()
    scores = [per_question(prepared, c, RATIOS) for c in grid]
    rag = rag_per_question(prepared, RATIOS, base)
    f = folds(prepared)
    report: dict = {"grid": a.grid, "ratios": RATIOS, "rag": {k: v.tolist() for k, v in table(prepared, rag).items()},
                    "configs": [], "folds": []}
    fold_objective = [[objective(table(prepared, sc, f[i])) for i in (0, 1)] for sc in scores]
    picks = [max(range(len(grid)), key=lambda j: fold_objective[j][i]) for i in (0, 1)]  # picked on fold i
    ref = next(j for j, c in enumerate(grid) if all(getattr(c, k) == v for k, v in BEFORE.items()))
    for c, sc, fo in zip(grid, scores, fold_objective):
        t = table(prepared, sc)
        report["configs"].append({"config": asdict(c), "all": {k: v.tolist() for k, v in t.items()}, "objective": objective(t),
                                  "fold_objective": fo})
    for i, pick in enumerate(picks):
        held = table(prepared, scores[pick], f[1 - i])
        report["folds"].append({"picked_on": i, "config": asdict(grid[pick]),
                                "before_out_of_fold": {k: v.tolist() for k, v in table(prepared, scores[ref], f[1 - i]).items()},
                                "out_of_fold": {k: v.tolist() for k, v in held.items()},
                                "rag_out_of_fold": {k: v.tolist() for k, v in table(prepared, rag, f[1 - i]).items()}})
    # pooled out-of-fold: each document scored by the config picked on the other fold
    pooled = {p.doc.id: scores[picks[0] if p.doc.id in f[1] else picks[1]][p.doc.id] for p in prepared}
    report["pooled_out_of_fold"] = {k: v.tolist() for k, v in table(prepared, pooled).items()}
    report["pooled_before"] = {k: v.tolist() for k, v in table(prepared, scores[ref]).items()}
    print("pooled out of fold:", " ".join(f"{ds}:" + ",".join(f"{x:.3f}" for x in v) for ds, v in report["pooled_out_of_fold"].items()),
          "| before:", " ".join(f"{ds}:" + ",".join(f"{x:.3f}" for x in v) for ds, v in report["pooled_before"].items()))
    best = max(range(len(grid)), key=lambda j: report["configs"][j]["objective"])
    report["final"] = asdict(grid[best])
    report["seconds"] = time.perf_counter() - t0
    for row in sorted(report["configs"], key=lambda r: -r["objective"])[:12]:
        c = row["config"]
        print(f"{row['objective']:.4f} (folds {row['fold_objective'][0]:.4f} {row['fold_objective'][1]:.4f}) weak_score={c['weak_score']} seed={c['seed_share']:g} " +
              " ".join(f"{ds}:" + ",".join(f"{x:.3f}" for x in v) for ds, v in row["all"].items()))
    print("rag", " ".join(f"{ds}:" + ",".join(f"{x:.3f}" for x in v) for ds, v in report["rag"].items()))
    for fo in report["folds"]:
        c = fo["config"]
        print(f"picked on fold {fo['picked_on']}: weak_score={c['weak_score']} seed={c['seed_share']:g}; "
              "out of fold " + " ".join(f"{ds}:" + ",".join(f"{x:.3f}" for x in v) for ds, v in fo["out_of_fold"].items()) +
              " | before " + " ".join(f"{ds}:" + ",".join(f"{x:.3f}" for x in v) for ds, v in fo["before_out_of_fold"].items()) +
              " | rag " + " ".join(f"{ds}:" + ",".join(f"{x:.3f}" for x in v) for ds, v in fo["rag_out_of_fold"].items()))
    print(f"{len(grid)} configs in {report['seconds']:.1f} s")
    if a.out:
        a.out.write_text(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
