"""make_router: names, errors; self-route and fixed policies."""
from __future__ import annotations

import pytest

from ctxroute.errors import BudgetExceeded, InputError
from ctxroute.router import AUTO_POLICY, FixedRouter, LearnedRouter, RulesRouter, SelfRouteRouter, make_router
from ctxroute.router.policies import POLICIES
from ctxroute.types import Budget, Route

from tests.router.helpers import features


@pytest.mark.parametrize("policy", POLICIES)
def test_every_policy_name_builds(policy, tmp_path):
    """Every policy builds with no file (learned and cascade from the shipped parameters)."""
    router = make_router(policy)
    name = AUTO_POLICY if policy == "auto" else policy
    assert router.name == name
    f, profile = features("Who signed the lease?", 20_000, "frontier")
    assert router.route(f, profile).policy == name


def test_missing_router_params_file_is_a_clear_error(tmp_path):
    with pytest.raises(InputError, match="not found"):
        make_router("learned", params_path=tmp_path / "nope.json")


def test_kinds():
    assert isinstance(make_router("rules"), RulesRouter)
    assert isinstance(make_router("Self_Route"), SelfRouteRouter)
    assert isinstance(make_router("lc"), FixedRouter)


def test_unknown_policy_names_the_options():
    with pytest.raises(InputError, match=r"unknown routing policy 'fast'.*rules, self-route, learned"):
        make_router("fast")


def test_learned_from_path(tmp_path):
    from tests.router.test_learned import _synthetic
    from ctxroute.router import FEATURE_NAMES, fit_learned

    X, correct, cost = _synthetic(n=30)
    path = tmp_path / "router.json"
    fit_learned(X, correct, cost, FEATURE_NAMES).save(path)
    assert isinstance(make_router("learned", params_path=path), LearnedRouter)
    with pytest.raises(InputError, match="not found"):
        make_router("learned", params_path=tmp_path / "nope.json")


def test_self_route_escalation_order():
    r = SelfRouteRouter()
    f, p = features("Who signed the lease?", 20_000, "frontier")
    d = r.route(f, p)
    assert d.route is Route.RAG and d.fallbacks[0] is Route.LC
    assert "escalates on abstention or failed citation verification to lc" in d.reasons[0]
    f, p = features("Summarize the main themes of the book.", 200_000, "frontier")
    assert r.route(f, p).fallbacks[0] is Route.MR
    f, p = features("Who signed the lease?", 200_000, "frontier")
    assert r.route(f, p).fallbacks[0] is Route.HYBRID


def test_fixed_router_flags_infeasible_and_refuses_over_budget():
    f, p = features("Who signed the lease?", 200_000, "frontier")
    d = FixedRouter(Route.LC).route(f, p)
    assert d.route is Route.LC and d.fallbacks == ()
    assert any("infeasible" in r and "usable window 64k" in r for r in d.reasons)
    with pytest.raises(BudgetExceeded, match="fixed policy lc: budget 1,000 tokens < lc estimate"):
        FixedRouter(Route.LC).route(f, p, Budget(max_tokens=1_000))
    assert FixedRouter(Route.EXTRACTIVE).route(f, p, Budget(max_tokens=1)).route is Route.EXTRACTIVE


def test_decide_runs_the_whole_chain():
    from ctxroute.router import CollectionStats, QuestionTyper, decide

    d = decide("Summarize the main themes of the book.", stats=CollectionStats(1, 120_000, (120_000,)),
               profile=features("x", 1, "frontier")[1], router=make_router("rules"), typer=QuestionTyper())
    assert d.route is Route.MR and d.features["qtype"] == "aggregation"
