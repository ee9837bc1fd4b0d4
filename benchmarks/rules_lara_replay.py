"""Replay the rules policy on LaRA's recorded answers (no LLM calls): accuracy and token ratio
against always-RAG, always-LC, self-route and the oracle, overall and per length.

Uses the eval layer's LaRA outcomes (each of 11 LLMs' RAG and full-context answers, judged)
and its BM25 probe; HYBRID/MR choices count as LC there (the replay has only those two).
Run: ``python benchmarks/rules_lara_replay.py [--data ../shared/data] [--boot 200]``
(about 3 minutes on two cores: judging 30k answers, then BM25 probes for 2,326 questions).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.eval.lara import build_outcomes  # noqa: E402
from ctxroute.eval.probes import lara_probes  # noqa: E402
from ctxroute.eval.replay import FeatureBuilder, replay_choices, summarize  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--boot", type=int, default=200)
    args = ap.parse_args()
    root = args.data / "LaRA"
    outcomes, skipped = build_outcomes(root)
    fb = FeatureBuilder(probes=lara_probes(root))
    print(f"{len(outcomes)} (model, question) pairs; skipped {dict(skipped)}")
    for length in (None, "32k", "128k"):
        sub = [o for o in outcomes if length is None or o.length == length]
        oracle = replay_choices(sub, "oracle")
        for policy in ("rag", "lc", "self-route", "rules", "oracle"):
            choices = oracle if policy == "oracle" else replay_choices(sub, policy, features=fb)
            s = summarize(policy, choices, oracle, n_boot=args.boot)
            mix = ", ".join(f"{k} {v:.2f}" for k, v in s.route_mix.items())
            print(f"{length or 'all':<5} {policy:<10} accuracy {s.accuracy.mean:.3f} "
                  f"[{s.accuracy.low:.3f}, {s.accuracy.high:.3f}]  tokens vs LC {s.token_ratio:.3f}  ({mix})")


if __name__ == "__main__":
    main()
