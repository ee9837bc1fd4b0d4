"""LaRA recorded outcomes: per-model RAG vs LC accuracy (rule judge) and fixed/rules/self-route/
oracle replay, written to eval_results/lara_outcomes_by_model.md.

    .venv/bin/python benchmarks/lara_replay.py [--data-root ../shared/data] [--outcomes /tmp/lara_outcomes.jsonl]

Builds the outcomes (about 20 s) unless --outcomes names an existing file. No LLM calls.
"""
from __future__ import annotations

import argparse
import sys
from collections import defaultdict
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.eval.lara import build_outcomes, handcheck_agreement, read_outcomes, write_outcomes  # noqa: E402
from ctxroute.eval.replay import replay  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--data-root", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--outcomes", type=Path, default=None, help="reuse (or write) the outcomes JSONL here")
    ap.add_argument("--out", type=Path, default=Path(__file__).resolve().parents[1] / "eval_results" / "lara_outcomes_by_model.md")
    args = ap.parse_args()
    root = args.data_root / "LaRA"
    if args.outcomes is not None and args.outcomes.is_file():
        outcomes = read_outcomes(args.outcomes)
    else:
        outcomes, skipped = build_outcomes(root)
        print(f"{len(outcomes)} outcomes; skipped {skipped}")
        if args.outcomes is not None:
            write_outcomes(outcomes, args.outcomes)
    by: dict[tuple[str, str], list] = defaultdict(list)
    for o in outcomes:
        by[(o.model, o.length)].append(o)
    lines = [
        "# LaRA recorded outcomes by model (rule judge, no LLM)",
        "",
        "Accuracy % of each policy replayed over LaRA's recorded predictions, with prompt tokens as % of always-LC. "
        "`rules`: the ctxroute rules router without a retrieval probe (HYBRID/MR choices replayed as LC); "
        "`self-route`: RAG, escalated to LC when the recorded RAG answer refuses. Bootstrap 95% CIs are about +-2.5 points "
        "at 32k (887 questions) and +-2 at 128k (1,439). Reproduce: `.venv/bin/python benchmarks/lara_replay.py`.",
        "",
    ]
    agree = {s: handcheck_agreement(root, split=s) for s in (None, "heldout")}
    lines += [f"Rule-judge agreement with the hand check: {100 * agree[None].accuracy:.1f}% (kappa {agree[None].kappa:.2f}, n={agree[None].n}); "
              f"held-out part {100 * agree['heldout'].accuracy:.1f}% (kappa {agree['heldout'].kappa:.2f}, n={agree['heldout'].n}).", ""]
    policies = ("rag", "lc", "rules", "self-route", "oracle")
    for length in ("32k", "128k"):
        lines += [f"## {length}", "", "| model | n | " + " | ".join(policies) + " |", "|---|---|" + "---|" * len(policies)]
        for (model, ln), rows in sorted(by.items()):
            if ln != length:
                continue
            summaries, _ = replay(rows, policies, n_boot=200)
            lines.append(f"| {model} | {len(rows)} | " + " | ".join(f"{100 * s.accuracy.mean:.1f} / {100 * s.token_ratio:.0f}%" for s in summaries) + " |")
        lines.append("")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines), encoding="utf-8")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
