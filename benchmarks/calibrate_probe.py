"""Calibrate the retrieval-probe thresholds of the rules router on LaRA (dense MiniLM probe).

For ``--docs`` documents of each 32k kind (book, paper, financial): split the text into
~1,000-character passages, embed them with all-MiniLM-L6-v2, and for each question run a
dense top-10 probe and ``probe_signals``. LaRA's ``context_order`` gives the gold slice of a
``location`` question, so "retrieval hit" = the top-1 passage overlaps that slice. ``hallu``
questions are not answerable from the document.

Reports: ROC AUC of margin / entropy / top score for predicting a retrieval hit, hit rate by
margin bin (what ``Thresholds.confident_margin`` should be), and AUC of the top score for
telling answerable (location) from unanswerable (hallu) questions (what
``Thresholds.unanswerable_dense_top`` can do).

``--probe bm25`` does the same with ctxroute's BM25 index (no embedding: fast, so use many
documents), the probe the eval layer's LaRA replay uses.

Run: ``python benchmarks/calibrate_probe.py [--docs 4] [--probe dense|bm25] [--data ../shared/data] [--out calib.json]``
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from ctxroute.router import probe_signals  # noqa: E402
from ctxroute.types import Chunk, Level, ScoredChunk  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def passages(text: str, size: int = 1000) -> list[tuple[int, int]]:
    return [(i, min(len(text), i + size)) for i in range(0, len(text), size)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--docs", type=int, default=4, help="documents per kind")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--probe", default="dense", help="dense (MiniLM cosine) | bm25 (ctxroute SparseIndex)")
    args = ap.parse_args()
    from sklearn.metrics import roc_auc_score

    from ctxroute.retrievers.embedders import make_embedder
    from ctxroute.retrievers.sparse import SparseIndex

    emb = make_embedder("minilm") if args.probe == "dense" else None
    lara = args.data / "LaRA" / "datasets"
    rows: list[dict] = []
    for kind in ("book", "paper", "financial"):
        qs: dict[str, dict[str, list[dict]]] = {}
        for level in ("location", "hallu"):
            for line in (lara / "query" / f"32k_{kind}_{level}.jsonl").read_text(encoding="utf-8").splitlines():
                row = json.loads(line)
                qs.setdefault(row["file"], {}).setdefault(level, []).append(row)
        for file in sorted(qs)[: args.docs]:
            text = (lara / "32k" / kind / file).read_text(encoding="utf-8")
            spans = passages(text)
            if emb is not None:
                vecs = emb.embed([text[a:b] for a, b in spans])
            else:
                index = SparseIndex().build([text[a:b] for a, b in spans])
            chunks = [Chunk(f"p{i}", file, Level.PASSAGE, a, b, f"s{i // 4}", i) for i, (a, b) in enumerate(spans)]
            orders = [r["context_order"] for r in qs[file].get("location", []) if isinstance(r["context_order"], int)]
            n_slices = max(orders) + 1 if orders else 1
            slice_len = len(text) // n_slices
            for level, items in qs[file].items():
                qv = emb.embed([r["question"] for r in items]) if emb is not None else [None] * len(items)
                for r, v in zip(items, qv):
                    if emb is not None:
                        sims = vecs @ v
                        top = np.argsort(-sims)[:10]
                        hits = [ScoredChunk(chunks[i], float(sims[i]), "dense", scores={"dense": float(sims[i])})
                                for i in top]
                    else:
                        found = index.search(r["question"], 10)
                        top = np.array([int(i) for i, _ in found])
                        hits = [ScoredChunk(chunks[int(i)], float(sc), "bm25") for i, sc in found]
                    if len(top) == 0:
                        continue
                    s = probe_signals(hits, doc_chars={file: len(text)})
                    hit = None
                    if level == "location" and isinstance(r.get("context_order"), int):
                        lo, hi = r["context_order"] * slice_len, (r["context_order"] + 1) * slice_len
                        c = chunks[int(top[0])]
                        hit = int(c.start < hi and c.end > lo)
                    rows.append({"kind": kind, "file": file, "level": level, "hit": hit, "top": s.top_score,
                                 "margin": s.margin, "entropy": s.entropy, "spread": s.spread,
                                 "sections": s.n_sections_in_top})
            print(f"{kind} {file}: {len(spans)} passages", file=sys.stderr)
    loc = [r for r in rows if r["level"] == "location" and r["hit"] is not None]
    y = np.array([r["hit"] for r in loc])
    report: dict = {"probe": args.probe, "n_location": len(loc), "top1_hit_rate": float(y.mean()), "n_hallu": sum(r["level"] == "hallu" for r in rows)}
    for key, sign in (("margin", 1), ("entropy", -1), ("top", 1), ("spread", -1)):
        x = np.array([r[key] for r in loc]) * sign
        report[f"auc_hit_{key}"] = float(roc_auc_score(y, x)) if 0 < y.mean() < 1 else None
    bins = [0, 0.02, 0.05, 0.10, 0.15, 0.2, 0.3, 0.5, 1.01]
    report["hit_rate_by_margin"] = []
    for lo, hi in zip(bins, bins[1:]):
        sel = [r["hit"] for r in loc if lo <= r["margin"] < hi]
        report["hit_rate_by_margin"].append({"margin": f"[{lo}, {hi})", "n": len(sel),
                                             "hit_rate": float(np.mean(sel)) if sel else None})
    lh = [r for r in rows if r["level"] in ("location", "hallu")]
    yh = np.array([r["level"] == "location" for r in lh], dtype=int)
    report["auc_answerable_top"] = float(roc_auc_score(yh, [r["top"] for r in lh]))
    for t in sorted({round(float(np.quantile([r["top"] for r in lh], q)), 3) for q in (0.1, 0.2, 0.3, 0.4, 0.5)}):
        report.setdefault("below_top", []).append({
            "top": t,
            "hallu_below": float(np.mean([r["top"] < t for r in lh if r["level"] == "hallu"])),
            "location_below": float(np.mean([r["top"] < t for r in lh if r["level"] == "location"])),
        })
    for q in (0.1, 0.25, 0.5):
        report[f"top_q{int(q * 100)}_location"] = float(np.quantile([r["top"] for r in lh if r["level"] == "location"], q))
        report[f"top_q{int(q * 100)}_hallu"] = float(np.quantile([r["top"] for r in lh if r["level"] == "hallu"], q))
    print(json.dumps(report, indent=1))
    if args.out:
        args.out.write_text(json.dumps({"report": report, "rows": rows}, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
