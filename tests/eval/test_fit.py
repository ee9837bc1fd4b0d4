"""Router fitting from outcomes and from runner records; features survive the as_dict round trip."""
from __future__ import annotations

import numpy as np
import pytest

from ctxroute.eval.fit import features_from_dict, fit_from_outcomes, training_from_results, tune_lam
from ctxroute.eval.lara import Outcome
from ctxroute.eval.replay import FeatureBuilder, replay_choices
from ctxroute.router import LearnedParams
from ctxroute.types import Route


def _outcomes(n: int = 60) -> list[Outcome]:
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        compare = i % 2 == 0  # comparison questions: only LC gets them right
        q = f"How does chapter {i} compare with chapter {i + 1}?" if compare else f"What is the name of person {i}?"
        out.append(Outcome(key=f"q{i}", model="gpt-4o", length="32k", domain="book", level="comp" if compare else "location", question=q,
                           rag_correct=not compare or bool(rng.random() < 0.1), lc_correct=True, rag_prompt_tokens=3020,
                           lc_prompt_tokens=30000, doc_tokens=29990))
    return out


def test_fit_learns_question_type_and_tunes_lam() -> None:
    outs = _outcomes()
    fb = FeatureBuilder()
    params = fit_from_outcomes(outs, lam=0.0, features=fb)
    assert set(params.routes) == {Route.RAG, Route.LC}
    choice, tried = tune_lam(outs, params, max_token_ratio=0.7, features=fb)
    assert choice.token_ratio <= 0.7 and len(tried) > 3
    from dataclasses import replace

    ch = replay_choices(outs, "learned", params=replace(params, lam=choice.lam), features=fb)
    by_q = {c.key: c.route for c in ch}
    # lookups go to RAG, comparisons to LC
    assert sum(by_q[f"q{i}"] == "rag" for i in range(1, 60, 2)) >= 25
    assert sum(by_q[f"q{i}"] == "lc" for i in range(0, 60, 2)) >= 20


def test_params_round_trip(tmp_path) -> None:  # type: ignore[no-untyped-def]
    params = fit_from_outcomes(_outcomes(20), meta={"fit_length": "32k"})
    p = tmp_path / "router.json"
    params.save(p)
    again = LearnedParams.load(p)
    assert again.meta["fit_length"] == "32k" and again.routes == params.routes


def test_features_from_dict_round_trip() -> None:
    f = FeatureBuilder()(_outcomes(1)[0])
    g = features_from_dict(f.as_dict())
    assert np.allclose(f.vector(), g.vector())


def test_training_from_runner_records() -> None:
    fb = FeatureBuilder()
    recs = []
    for o in _outcomes(10):
        feats = fb(o).as_dict()
        for route, ok, tok in (("rag", o.rag_correct, o.rag_prompt_tokens), ("lc", o.lc_correct, o.lc_prompt_tokens)):
            recs.append({"id": o.key, "route_requested": route, "features": feats, "correct": {"judge": float(ok)}, "prompt_tokens": tok, "error": None})
    recs.append({"id": "broken", "route_requested": "rag", "error": "llm_timeout: x"})
    X, correct, cost = training_from_results(recs)
    assert X.shape[0] == 10 and set(correct) == {Route.RAG, Route.LC}
    assert cost[Route.LC].mean() == pytest.approx(30000)
    from ctxroute.errors import InputError

    with pytest.raises(InputError, match="no correct"):
        training_from_results(recs, metric="f1")


def test_grouped_cv_evidence_keeps_documents_apart() -> None:
    from dataclasses import replace

    from ctxroute.eval.fit import grouped_cv_evidence

    outs = [replace(o, file=f"doc{i % 5}.txt") for i, o in enumerate(_outcomes(60))]
    rows = grouped_cv_evidence(outs, ["gpt-4o"], folds=5, max_token_ratio=0.7, n_boot=100)
    assert len(rows) == 1
    by = {s.policy: s for s in rows[0].summaries}
    assert all(s.n == 60 for s in by.values())
    assert by["oracle"].accuracy.mean == pytest.approx(1.0)
    assert by["lc"].accuracy.mean == pytest.approx(1.0)
    assert by["learned"].accuracy.mean >= by["rag"].accuracy.mean


def test_cli_replay_and_fit(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    from typer.testing import CliRunner

    from ctxroute.cli import app

    path = tmp_path / "outcomes.jsonl"
    path.write_text("".join(json.dumps(o.as_dict()) + "\n" for o in _outcomes(40)), encoding="utf-8")
    runner = CliRunner()
    res = runner.invoke(app, ["router", "fit", str(path), "--out", str(tmp_path / "router.json"), "--max-token-ratio", "0.7"])
    assert res.exit_code == 0, res.output
    assert LearnedParams.load(tmp_path / "router.json").routes == (Route.RAG, Route.LC)
    res = runner.invoke(app, ["eval", "replay", str(path), "--policy", "rag,lc,learned", "--router-params", str(tmp_path / "router.json"),
                              "--out", str(tmp_path / "rep")])
    assert res.exit_code == 0, res.output
    assert "oracle" in res.output and (tmp_path / "rep" / "results.jsonl").is_file()
    res = runner.invoke(app, ["eval", "replay", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 2 and "judge-lara" in res.output
