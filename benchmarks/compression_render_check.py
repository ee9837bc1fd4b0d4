"""Do the compressor's and RAG's token estimates match the prompts they render? On the prepared
(cached) documents of ``compression_retention.py --cache DIR``, for every ``--every``-th
question: the compressor's selection rendered (``render_compressed``) and RAG's pick packed by
``pack_evidence`` at the same budget, both counted with cl100k; printed as rendered tokens /
budget (mean and max) next to each method's own estimate. Reads no gold.

Run: ``python benchmarks/compression_render_check.py --cache DIR [--ratios 0.1,0.35] [--every 3]``.
"""
from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path

import numpy as np

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its scripts load each other
from _siblings import sibling as _sibling  # noqa: E402


def check(prepared: Sequence[object], ratios: Sequence[float], every: int = 3) -> list[str]:
    from ctxroute.pipelines.compress import CompressConfig, DocSentences, render_compressed
    from ctxroute.pipelines.packing import pack_evidence

    bench = _sibling("compression_retention")
    count = bench.count_tokens
    lines = []
    for r in ratios:
        acc: dict[str, list[tuple[float, float, float, float]]] = {}
        c = replace(CompressConfig(), ratio=r)
        for p in prepared:
            docs = [DocSentences(p.doc, p.sentences)]  # type: ignore[attr-defined]
            for it in p.items[::every]:  # type: ignore[attr-defined]
                sel = bench.select_prepared(p, it, c)
                comp = render_compressed(sel, docs, count_tokens=count)
                rag = pack_evidence([h.chunk for h in it.ranking], documents={p.doc.id: p.doc},  # type: ignore[attr-defined]
                                    sentences_by_doc={p.doc.id: p.sentences}, count_tokens=count, token_budget=sel.budget)  # type: ignore[attr-defined]
                acc.setdefault(p.dataset, []).append((comp.n_tokens / sel.budget, count(rag.text) / sel.budget,  # type: ignore[attr-defined]
                                                      sel.kept_tokens / sel.budget, rag.n_tokens / sel.budget))
        for ds, a in acc.items():
            m, mx = np.mean(a, axis=0), np.max(a, axis=0)
            lines.append(f"ratio {r:g} {ds}: {len(a)} questions; rendered / budget: compressor {m[0]:.3f} (max {mx[0]:.3f}), "
                         f"rag {m[1]:.3f} (max {mx[1]:.3f}); own estimate / budget: compressor {m[2]:.3f}, rag {m[3]:.3f}")
    return lines


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--cache", type=Path, required=True)
    ap.add_argument("--name", default="prepared-minilm-truncate-hybrid.pkl", help="the prepared file in --cache")
    ap.add_argument("--ratios", default="0.1,0.35")
    ap.add_argument("--every", type=int, default=3)
    a = ap.parse_args(argv)
    prepared = list(_sibling("compression_cache")._load(a.cache / a.name).values())
    if not prepared:
        raise SystemExit(f"nothing prepared in {a.cache / a.name}; build it with compression_retention.py --cache")
    for line in check(prepared, [float(x) for x in a.ratios.split(",")], a.every):
        print(line)


if __name__ == "__main__":
    main()
