"""Routing overhead: question typing + probe signals (from given hits) + features + policy,
the retrieval probe itself excluded; p50/p95 over many calls, with a ratio against one BM25
query (bm25s) over the same passages, measured in the same run. Aim: p50 < 2 ms.

With ../shared/data present, questions are LaRA's (all four levels, 32k and 128k) and the
passages come from one LaRA 128k document (split into ~1,000-character pieces); otherwise
built-in questions and a synthetic corpus (the same as ``ctxroute bench router``).

Run: ``python benchmarks/bench_router.py [--n 3000] [--data ../shared/data] [--out bench.json]``.
No timed assertions anywhere: numbers are reported, with ratios against the reference.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.cli.bench_router import print_bench, run_router_bench  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def lara_inputs(data: Path, max_questions: int = 400) -> tuple[list[str], list[str]] | None:
    qdir = data / "LaRA" / "datasets" / "query"
    if not qdir.is_dir():
        return None
    questions: list[str] = []
    for f in sorted(qdir.glob("*.jsonl")):
        for i, line in enumerate(f.read_text(encoding="utf-8").splitlines()):
            if i >= max_questions // 24 + 1:
                break
            questions.append(json.loads(line)["question"])
    doc = next(iter(sorted((data / "LaRA" / "datasets" / "128k" / "book").glob("*"))), None)
    if doc is None:
        return None
    text = doc.read_text(encoding="utf-8")
    passages = [text[i : i + 1000] for i in range(0, len(text), 1000)]
    return questions, passages


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=3000, help="routing calls per policy")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    inputs = lara_inputs(args.data)
    questions, passages = inputs if inputs else (None, None)
    result = run_router_bench(n=args.n, questions=questions, passages=passages)
    result["inputs"] = "LaRA questions + one LaRA 128k book" if inputs else "built-in questions + synthetic corpus"
    print(f"inputs: {result['inputs']}")
    print_bench(result)
    if args.out:
        args.out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
