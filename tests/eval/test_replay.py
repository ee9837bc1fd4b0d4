"""Replay math on a tiny hand-made outcomes table."""
from __future__ import annotations

import pytest

from ctxroute.eval.lara import Outcome
from ctxroute.eval.replay import replay, replay_choices, summarize


def _o(i: int, rag: bool, lc: bool, refused: bool = False, model: str = "gpt-4o") -> Outcome:
    return Outcome(key=f"q{i}", model=model, length="32k", domain="book", level="location", question=f"Who is person {i}?",
                   rag_correct=rag, lc_correct=lc, rag_prompt_tokens=100, lc_prompt_tokens=1000, doc_tokens=990, rag_refused=refused)


TABLE = [
    _o(1, True, True),
    _o(2, True, False),
    _o(3, False, True, refused=True),
    _o(4, False, False, refused=True),
]


def test_oracle_prefers_correct_then_cheaper() -> None:
    ch = replay_choices(TABLE, "oracle")
    assert [c.route for c in ch] == ["rag", "rag", "lc", "rag"]
    assert [c.correct for c in ch] == [True, True, True, False]


def test_summary_numbers_by_hand() -> None:
    summaries, _ = replay(TABLE, ["rag", "lc", "self-route", "oracle"], n_boot=200)
    by = {s.policy: s for s in summaries}
    assert by["rag"].accuracy.mean == pytest.approx(0.5)
    assert by["lc"].accuracy.mean == pytest.approx(0.5)
    assert by["oracle"].accuracy.mean == pytest.approx(0.75)
    # tokens relative to always-LC: rag 400/4000; oracle 100+100+1000+100 = 1300/4000
    assert by["rag"].token_ratio == pytest.approx(0.1)
    assert by["lc"].token_ratio == pytest.approx(1.0)
    assert by["oracle"].token_ratio == pytest.approx(0.325)
    # regret = oracle - policy, paired
    assert by["rag"].regret.mean == pytest.approx(0.25)
    assert by["oracle"].regret.mean == 0.0
    # self-route escalates q3 and q4 (refused): correct q1, q2 (rag), q3 (lc) -> 0.75;
    # tokens 100 + 100 + 1100 + 1100 = 2400 / 4000
    sr = by["self-route"]
    assert sr.accuracy.mean == pytest.approx(0.75)
    assert sr.token_ratio == pytest.approx(0.6)
    assert sr.escalated == pytest.approx(0.5)
    assert sr.route_mix == {"rag": 0.5, "rag>lc": 0.5}


def test_rules_policy_runs_on_outcomes() -> None:
    ch = replay_choices(TABLE, "rules")
    assert len(ch) == 4 and all(c.route in ("rag", "lc") for c in ch)
    s = summarize("rules", ch, replay_choices(TABLE, "oracle"), n_boot=100)
    assert 0.0 <= s.accuracy.mean <= 0.75


def test_summarize_rejects_mismatch() -> None:
    from ctxroute.errors import InputError

    with pytest.raises(InputError):
        summarize("rag", replay_choices(TABLE, "rag"), replay_choices(TABLE[:2], "oracle"))
    with pytest.raises(InputError, match="unknown replay policy"):
        replay_choices(TABLE, "nope")
