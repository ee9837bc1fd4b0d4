"""The cascade policy: answer-side signals, the escalation rule, the shipped parameters."""
from __future__ import annotations

import numpy as np
import pytest

from ctxroute.errors import InputError
from ctxroute.router import (
    AUTO_POLICY,
    CASCADE_FEATURE_NAMES,
    CascadeRouter,
    QuestionTyper,
    answer_signals,
    build_features,
    make_router,
)
from ctxroute.router.answer import content_terms, is_refusal, question_wants
from ctxroute.router.cascade import cascade_vector, lc_share_cost, packaged_params
from ctxroute.router.features import stats_from_counts
from ctxroute.router.learned import LearnedParams
from ctxroute.types import Budget, ModelProfile, Route

PROFILE = ModelProfile("test-large", 128_000, 64_000, 0.0025, 0.01, size_class="large")
Q_NUM = "What was Apple's total net sales in the third quarter of 2023?"
CONTEXT = ["Total net sales were $81,797 million in the third quarter of 2023, compared with $82,959 million a year earlier."]


def feats(question: str = Q_NUM, tokens: int = 40_000):  # type: ignore[no-untyped-def]
    return build_features(question, stats_from_counts([tokens]), PROFILE, question_profile=QuestionTyper().classify(question))


def hand_params(refusal_gain: float = 3.0, lam: float = 0.2) -> LearnedParams:
    """p(rag right) falls and p(lc right) rises with a refusal; nothing else matters."""
    n = len(CASCADE_FEATURE_NAMES)
    i = CASCADE_FEATURE_NAMES.index("ans_refused")
    rag = [0.0] * n
    lc = [0.0] * n
    rag[i] = -refusal_gain
    lc[i] = refusal_gain / 3
    return LearnedParams(
        feature_names=CASCADE_FEATURE_NAMES, routes=(Route.RAG, Route.LC), mean=(0.0,) * n, scale=(1.0,) * n,
        coef={Route.RAG: tuple(rag), Route.LC: tuple(lc)}, intercept={Route.RAG: 1.0, Route.LC: 0.0},
        calibration={Route.RAG: (1.0, 0.0), Route.LC: (1.0, 0.0)}, lam=lam,
    )


# --- answer signals ------------------------------------------------------------------
def test_refusal_detector_and_asked_for_types() -> None:
    assert is_refusal("The provided chunks do not mention the revenue.")
    assert is_refusal("NOT_FOUND: the passages do not say")
    assert not is_refusal("Tom did not mention it to Becky.")
    assert not is_refusal("")
    assert question_wants("How much cash did the company hold?") == (True, False, False)
    assert question_wants("When did the merger close?")[1]
    assert question_wants("List all divisions whose revenue grew")[2]


def test_answer_signals_refusal_and_missing_number() -> None:
    s = answer_signals(Q_NUM, "The retrieved text does not provide the net sales figure.", context=CONTEXT)
    assert s.refused and s.hedged and s.wants_number and not s.type_missing  # a refusal is not "missing a type"
    assert 0.5 < s.question_coverage <= 1.0
    ok = answer_signals(Q_NUM, "Total net sales were $81,797 million [1].", context=CONTEXT, n_citations=1, n_markers=1, supports=[0.9])
    assert not ok.refused and ok.has_number and not ok.type_missing
    assert ok.context_overlap == 1.0 and ok.verified_share == 1.0 and ok.support == 0.9
    vague = answer_signals(Q_NUM, "Sales were strong, driven by services.", context=CONTEXT)
    assert vague.type_missing and not vague.refused
    assert answer_signals(Q_NUM, "", context=None).empty == 1
    assert answer_signals(Q_NUM, "x", context=None).question_coverage == -1.0


def test_content_terms_normalise_numbers_and_stems() -> None:
    assert {"81797", "sale"} <= content_terms("Net sales: 81,797")
    assert "the" not in content_terms("the sales")


# --- the escalation rule -------------------------------------------------------------
def test_cascade_starts_with_rag_and_names_its_escalation_target() -> None:
    router = CascadeRouter(hand_params())
    d = router.route(feats(), PROFILE)
    assert d.route == Route.RAG and d.policy == "cascade"
    assert d.fallbacks[0] == Route.LC  # 40k fits the 64k usable window
    assert "rag first" in d.reasons[0] and "lc" in d.reasons[0]
    big = router.route(feats(tokens=400_000), PROFILE)
    assert big.route == Route.RAG and big.fallbacks[0] == Route.HYBRID  # beyond the window: hybrid packed to it


def test_cascade_small_collection_goes_straight_to_lc() -> None:
    d = CascadeRouter(hand_params()).route(feats(tokens=3_000), PROFILE)
    assert d.route == Route.LC and "send it all" in d.reasons[0]


def test_refusal_escalates_and_a_good_answer_stops_with_reasons() -> None:
    router = CascadeRouter(hand_params())
    f = feats()
    d = router.route(f, PROFILE)
    refused = answer_signals(Q_NUM, "The context does not mention net sales.", context=CONTEXT)
    esc = router.after_answer(f, refused, d)
    assert esc.escalate and esc.to == Route.LC and esc.utility > 0
    assert "escalate rag -> lc" in esc.reason and "refusal" in esc.reason and "p(rag answer right)" in esc.reason
    good = answer_signals(Q_NUM, "Total net sales were $81,797 million.", context=CONTEXT)
    stop = router.after_answer(f, good, d)
    assert not stop.escalate and stop.to is None and "stop after rag" in stop.reason and "<= cost" in stop.reason


def test_cost_weight_and_budget_stop_an_escalation() -> None:
    f = feats()
    refused = answer_signals(Q_NUM, "The context does not mention net sales.", context=CONTEXT)
    costly = CascadeRouter(hand_params(lam=50.0))
    assert not costly.after_answer(f, refused, costly.route(f, PROFILE)).escalate
    router = CascadeRouter(hand_params())
    d = router.route(f, PROFILE)
    esc = router.after_answer(f, refused, d, spent_tokens=3_500, budget=Budget(max_tokens=10_000))
    assert not esc.escalate and "left in the budget" in esc.reason


def test_cost_is_a_share_of_the_full_context() -> None:
    f = feats(tokens=40_000)
    assert lc_share_cost(f.total_tokens + f.question_tokens, f) == pytest.approx(1.0)
    assert lc_share_cost(4_000, f) == pytest.approx(0.1, rel=0.01)


def test_wrong_feature_set_is_refused_clearly() -> None:
    p = hand_params()
    from dataclasses import replace

    bad = replace(p, feature_names=("a",) * len(p.feature_names))
    with pytest.raises(InputError, match="refit"):
        CascadeRouter(bad)


# --- shipped parameters ----------------------------------------------------------------
def test_shipped_cascade_and_learned_need_no_file() -> None:
    cas = make_router("cascade")
    assert isinstance(cas, CascadeRouter) and cas.params.feature_names == CASCADE_FEATURE_NAMES
    assert cas.params.meta.get("fit_rows", 0) > 1000  # fitted on LaRA's recorded answers
    assert make_router("learned").name == "learned"
    assert make_router("auto").name == AUTO_POLICY
    assert packaged_params("cascade.json") is packaged_params("cascade.json")  # loaded once


def test_shipped_cascade_escalates_a_refused_figure_but_not_a_supported_answer() -> None:
    router = make_router("cascade")
    f = feats()
    d = router.route(f, PROFILE)
    refused = answer_signals(Q_NUM, "The provided chunks do not provide the total net sales for the quarter.", context=CONTEXT)
    good = answer_signals(Q_NUM, "Total net sales were $81,797 million in the third quarter of 2023.", context=CONTEXT)
    p_ref = router.probabilities(f, refused)
    p_good = router.probabilities(f, good)
    assert p_ref[Route.RAG] < p_good[Route.RAG]  # a refusal is less likely right than a supported figure
    assert not router.after_answer(f, good, d).escalate


def test_cascade_vector_is_finite_and_complete() -> None:
    f = feats()
    for ans in ("The context does not mention net sales.", "", "Total net sales were $81,797 million."):
        v = cascade_vector(f, answer_signals(Q_NUM, ans, context=CONTEXT))
        assert v.shape == (len(CASCADE_FEATURE_NAMES),) and np.isfinite(v).all()
