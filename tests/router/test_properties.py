"""Hypothesis properties of every policy: deterministic, within budget, fallbacks present."""
from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxroute.errors import BudgetExceeded
from ctxroute.router import (
    FEATURE_NAMES,
    LearnedParams,
    LearnedRouter,
    ProbeSignals,
    RulesRouter,
    SelfRouteRouter,
    fit_learned,
)
from ctxroute.router.policies import LLM_ROUTES, over_budget
from ctxroute.types import Budget, Route

from tests.router.helpers import features

QUESTIONS = [
    "Who signed the lease?",
    "Compare the two methods in paper 0.",
    "Summarize the main themes of the book.",
    "How many times does the ghost appear?",
    "What is the projected revenue growth rate for next year?",
    "Why does the narrator leave, and what causes it?",
    "In paper 1, what dataset was used?",
]


def _toy_params() -> LearnedParams:
    rng = np.random.default_rng(0)
    rows, correct, cost = [], {r: [] for r in LLM_ROUTES}, {r: [] for r in LLM_ROUTES}
    for i in range(80):
        q = QUESTIONS[i % len(QUESTIONS)]
        tokens = int(rng.integers(1_000, 200_000))
        f, profile = features(q, tokens, ["tiny", "small", "large", "frontier"][i % 4])
        rows.append(f.vector())
        for r in LLM_ROUTES:
            correct[r].append(int(rng.random() < 0.5))
            cost[r].append(float(tokens if r in (Route.LC, Route.MR) else 3_000))
    return fit_learned(np.vstack(rows), {r: np.array(v) for r, v in correct.items()},
                       {r: np.array(v) for r, v in cost.items()}, FEATURE_NAMES)


ROUTERS = [RulesRouter(), SelfRouteRouter(), LearnedRouter(_toy_params())]

probes = st.one_of(
    st.none(),
    st.builds(
        ProbeSignals,
        top_score=st.floats(0, 1), margin=st.floats(0, 1), entropy=st.floats(0, 1),
        n_docs_in_top=st.integers(1, 5), n_sections_in_top=st.integers(1, 10), spread=st.floats(0, 1),
        n_hits=st.integers(1, 10), source=st.sampled_from(["dense", "hybrid", "bm25"]),
    ),
)
budgets = st.builds(
    Budget,
    max_tokens=st.one_of(st.none(), st.integers(100, 300_000)),
    max_cost=st.one_of(st.none(), st.floats(0.0001, 2.0)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    q=st.sampled_from(QUESTIONS),
    docs=st.lists(st.integers(50, 150_000), min_size=1, max_size=4),
    size=st.sampled_from(["tiny", "small", "large", "frontier"]),
    probe=probes,
    budget=budgets,
    which=st.integers(0, len(ROUTERS) - 1),
)
def test_policy_properties(q, docs, size, probe, budget, which):
    router = ROUTERS[which]
    f, profile = features(q, tuple(docs), size, probe=probe, budget=budget)
    try:
        d = router.route(f, profile, budget)
    except BudgetExceeded:
        # only when no LLM route is both feasible and in budget
        est = [e for e in router._estimates(f, profile)[0] if e.route in LLM_ROUTES]
        assert all(not e.feasible or over_budget(e, budget) for e in est)
        return
    # deterministic
    assert router.route(f, profile, budget) == d
    by = {e.route: e for e in d.estimates}
    # chosen route is never over budget and feasible
    assert not over_budget(by[d.route], budget)
    assert by[d.route].feasible
    # fallbacks: every other feasible in-budget LLM route, at least one when one exists
    ok = {r for r in LLM_ROUTES if by[r].feasible and not over_budget(by[r], budget)}
    assert set(d.fallbacks) == ok - {d.route}
    if len(ok) > 1:
        assert d.fallbacks
    assert all(not over_budget(by[r], budget) for r in d.fallbacks)
    assert d.reasons and all(isinstance(r, str) and r for r in d.reasons)


def test_learned_params_round_trip_via_json(tmp_path):
    p = _toy_params()
    assert LearnedParams.from_json(p.to_json()) == p
    path = tmp_path / "router.json"
    p.save(path)
    assert LearnedParams.load(path) == p
