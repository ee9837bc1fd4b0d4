"""LaRA rule judge on hand-made cases, and its agreement with the committed hand check."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxroute.eval.lara import HANDCHECK_PATH, JudgeConfig, handcheck_agreement, judge_prediction


def test_judge_answerable() -> None:
    assert judge_prediction("The pig's name was Mefisto.", "Mefisto.", "location")
    assert judge_prediction("79.2%", "The reported accuracy of the model is 79.2%.", "location")  # short prediction inside the gold
    assert not judge_prediction("A new book.", "'Pickwick' by Mr. Quinn.", "location")
    assert not judge_prediction(False, "Mefisto.", "location")  # failed upstream call
    assert not judge_prediction("The text does not mention the pig's name.", "Mefisto.", "location")


def test_judge_overlap_threshold() -> None:
    gold = "Scrooge views Christmas with disdain while Fred sees it as a joyful generous time"
    close = "Scrooge sees Christmas with disdain; Fred sees a joyful and generous time."
    assert judge_prediction(close, gold, "comp")
    assert not judge_prediction(close, gold, "comp", JudgeConfig(recall_threshold=0.99, f1_threshold=0.99))


def test_judge_hallu_needs_refusal() -> None:
    assert judge_prediction("The chunks do not mention his favourite book.", "The text does not mention it.", "hallu")
    assert judge_prediction("Finch did not specify a particular brand.", "The text does not say.", "hallu")
    assert not judge_prediction("The Angel Hotel.", "The text does not provide the name of the inn.", "hallu")


def test_handcheck_file_is_well_formed() -> None:
    rows = [json.loads(line) for line in HANDCHECK_PATH.read_text(encoding="utf-8").splitlines() if line.strip()]
    assert len(rows) >= 50
    assert len({r["key"] for r in rows}) == len(rows)
    assert {r["level"] for r in rows} == {"location", "reasoning", "comp", "hallu"}
    assert len({r["model"] for r in rows}) >= 10
    assert {r["split"] for r in rows} == {"tune", "heldout"}
    assert all(isinstance(r["label"], bool) and r["note"] for r in rows)


@pytest.mark.data
def test_handcheck_agreement(shared_data: Path) -> None:
    a = handcheck_agreement(shared_data / "LaRA")
    assert a.n >= 50
    assert a.accuracy >= 0.85 and a.kappa >= 0.6
    held = handcheck_agreement(shared_data / "LaRA", split="heldout")
    assert held.n >= 30 and held.accuracy >= 0.8
