"""Metrics on hand-made cases."""
from __future__ import annotations

import numpy as np
import pytest

from ctxroute.eval.metrics import (
    bootstrap_ci,
    choice_accuracy,
    citation_scores,
    contains_answer,
    exact_match,
    extract_choice,
    is_refusal,
    normalize_answer,
    recall_at_k,
    refusal_correct,
    rouge_l,
    span_coverage,
    token_f1,
)


def test_normalize_answer_squad_rules() -> None:
    assert normalize_answer("The  Cat, sat!") == "cat sat"
    assert normalize_answer("An apple a day") == "apple day"


def test_exact_match_and_f1() -> None:
    assert exact_match("The Eiffel Tower.", ["eiffel tower"]) == 1.0
    assert exact_match("Eiffel", ["eiffel tower"]) == 0.0
    # pred tokens {eiffel, tower, paris}; gold {eiffel, tower}: P=2/3, R=1 -> F1=0.8
    assert token_f1("Eiffel tower Paris", "the Eiffel Tower") == pytest.approx(0.8)
    assert token_f1("nothing shared", "eiffel tower") == 0.0
    assert token_f1("x", ["nope", "x"]) == 1.0  # best over golds


def test_rouge_l() -> None:
    # LCS of [w x y z] and [w y z q] is [w y z] = 3: P=3/4, R=3/4
    assert rouge_l("w x y z", "w y z q") == pytest.approx(0.75)
    # articles are dropped by the normalisation: [b c d] vs [c d e] -> LCS 2, F=2/3
    assert rouge_l("a b c d", "a c d e") == pytest.approx(2 / 3)
    assert rouge_l("", "x") == 0.0
    assert rouge_l("same words here", "same words here") == pytest.approx(1.0)


def test_contains_answer_whole_tokens() -> None:
    assert contains_answer("It was $171.0 million in total", "$171.0 million") == 1.0
    assert contains_answer("catalogue", "cat") == 0.0


@pytest.mark.parametrize(
    ("text", "letter"),
    [
        ("(B)", "B"),
        ("Answer: B", "B"),
        ("B. Paris is the capital", "B"),
        ("the answer is b", "B"),
        ("I think the correct option is (C) because ...", "C"),
        ("D", "D"),
        ("A", "A"),
        ("A detailed argument with no option", None),
    ],
)
def test_extract_choice(text: str, letter: str | None) -> None:
    assert extract_choice(text, 4) == letter


def test_choice_accuracy_by_letter_or_text() -> None:
    choices = ["London", "Paris", "Rome", "Berlin"]
    assert choice_accuracy("Answer: B", "B", choices) == 1.0
    assert choice_accuracy("Answer: B", "Paris", choices) == 1.0
    assert choice_accuracy("It is Rome.", "Rome", choices) == 1.0
    assert choice_accuracy("(A)", "Paris", choices) == 0.0


@pytest.mark.parametrize(
    "text",
    [
        "The text does not provide the name of the tavern.",
        "The chunks provided do not mention a horse.",
        "There is no information about this in the document.",
        "This cannot be determined from the context.",
        "The name is not mentioned in the provided chunks.",
    ],
)
def test_refusals(text: str) -> None:
    assert is_refusal(text)


@pytest.mark.parametrize(
    "text",
    [
        "Tom did not mention it to Becky, so she left.",
        "The net loss was $7,014,000.",
        "",
    ],
)
def test_not_refusals(text: str) -> None:
    assert not is_refusal(text)


def test_lenient_refusal_and_refusal_correct() -> None:
    premise = "Finch did not specify a particular brand of wine."
    assert not is_refusal(premise)
    assert is_refusal(premise, lenient=True)
    assert refusal_correct(premise, answerable=False) == 1.0
    assert refusal_correct("The answer is 42.", answerable=False) == 0.0
    assert refusal_correct("The answer is 42.", answerable=True) == 1.0


def test_citation_precision_recall() -> None:
    gold = {"d1": [(100, 200)], "d2": [(0, 50)]}
    cited = {"d1": [(150, 160), (300, 310)], "d3": [(0, 10)]}
    s = citation_scores(cited, gold)
    assert s.precision == pytest.approx(1 / 3)  # one of three citations overlaps gold
    assert s.recall == pytest.approx(1 / 2)  # d1's span covered, d2's not
    assert citation_scores({}, gold).precision is None
    assert citation_scores(cited, {}).recall is None


def test_span_coverage_and_recall_at_k() -> None:
    assert span_coverage([(0, 5), (3, 10)], [(0, 20)]) == pytest.approx(0.5)
    retrieved = [("d1", (0, 10)), ("d1", (100, 150)), ("d2", (0, 10))]
    gold = {"d1": [(120, 130)], "d2": [(5, 6)]}
    assert recall_at_k(retrieved, gold, 1) == 0.0
    assert recall_at_k(retrieved, gold, 2) == 0.5
    assert recall_at_k(retrieved, gold, 3) == 1.0


def test_bootstrap_ci_contains_mean_and_is_deterministic() -> None:
    rng = np.random.default_rng(1)
    vals = rng.integers(0, 2, size=200).astype(float)
    a = bootstrap_ci(vals, n=500, seed=3)
    b = bootstrap_ci(vals, n=500, seed=3)
    c = bootstrap_ci(vals, n=500, seed=4)
    assert a == b
    assert a.low <= a.mean <= a.high
    assert a.mean == pytest.approx(vals.mean())
    assert 0.0 < a.high - a.low < 0.2
    assert (c.low, c.high) != (a.low, a.high)
    assert bootstrap_ci([]).n == 0
    assert bootstrap_ci([1.0, None, float("nan")]).n == 1
