"""Router evidence on LaRA's answerable questions only: an SEC-like setting (every question has
an answer), on the same held-out folds as `ctxroute eval evidence`.

    python benchmarks/router_answerable_view.py --outcomes /tmp/lara_outcomes.jsonl [--out eval_results/router_evidence_answerable_only.json]

`cascade` and `auto` are fitted on the fit folds (all questions, as in the protocols): `cascade`
for the fit folds' own unanswerable share, `auto` for the shipped default (5%); they and the fixed
routes are then replayed on the held-out fold's answerable questions. Accuracy and prompt tokens
as a share of always-LC on those questions.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ctxroute.eval.cascade import DEFAULT_UNANSWERABLE_RATE, cascade_plan, fit_cascade, plan_result
from ctxroute.eval.lara import read_outcomes
from ctxroute.eval.protocols import PROTOCOLS, protocol_folds
from ctxroute.eval.probes import lara_retrieval
from ctxroute.eval.replay import FeatureBuilder, replay_choices


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--outcomes", type=Path, required=True, help="from `ctxroute eval judge-lara`")
    ap.add_argument("--data-root", type=Path, default=Path("../shared/data"), help="folder holding LaRA/")
    ap.add_argument("--out", type=Path, default=Path("eval_results/router_evidence_answerable_only.json"))
    args = ap.parse_args()
    outs = read_outcomes(args.outcomes)
    probes, contexts = lara_retrieval(args.data_root / "LaRA")
    fb = FeatureBuilder(probes=probes, contexts=contexts)
    rows = []
    for proto in PROTOCOLS:
        for name, fit, test in protocol_folds(outs, proto):
            ta = [o for o in test if o.answerable]
            res: dict[str, tuple[float, float]] = {}
            for pol in ("rag", "lc", "self-route", "oracle"):
                ch = replay_choices(ta, pol, features=fb)
                res[pol] = (float(np.mean([c.correct for c in ch])),
                            sum(c.prompt_tokens for c in ch) / sum(c.lc_prompt_tokens for c in ch))
            for pol, rate in (("cascade", None), ("auto", DEFAULT_UNANSWERABLE_RATE)):
                params, _ = fit_cascade(fit, fb, unanswerable_rate=rate)
                r = plan_result(ta, cascade_plan(ta, params, fb), params.lam)
                res[pol] = (r.accuracy, r.token_ratio)
            rows.append({"protocol": proto, "fold": name, "n": len(ta), "policies": res})
            print(proto, name, len(ta), {k: (round(100 * a, 1), round(100 * t)) for k, (a, t) in res.items()}, flush=True)
    args.out.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
