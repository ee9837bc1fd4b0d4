"""Learned router: fitting on synthetic data, JSON round trip, errors."""
from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxroute.errors import InputError
from ctxroute.router import FEATURE_NAMES, LearnedParams, LearnedRouter, fit_learned
from ctxroute.types import Route

from tests.router.helpers import UNSURE, features

ROUTES = (Route.RAG, Route.LC, Route.HYBRID, Route.MR)


def _synthetic(n: int = 200, seed: int = 1):
    """LC is right on collections that fit the window, RAG on big ones (LaRA's pattern)."""
    rng = np.random.default_rng(seed)
    rows, correct, cost = [], {r: [] for r in ROUTES}, {r: [] for r in ROUTES}
    for _ in range(n):
        tokens = int(rng.integers(8_000, 200_000))
        f, _ = features("Who signed the lease?", tokens, "large", probe=UNSURE)
        rows.append(f.vector())
        fits = tokens <= 32_768
        noise = rng.random(len(ROUTES))
        correct[Route.LC].append(int(noise[0] < (0.9 if fits else 0.1)))
        correct[Route.RAG].append(int(noise[1] < (0.4 if fits else 0.8)))
        correct[Route.HYBRID].append(int(noise[2] < 0.5))
        correct[Route.MR].append(int(noise[3] < 0.3))
        for r in ROUTES:
            cost[r].append(float(tokens if r in (Route.LC, Route.MR) else 3_000))
    return np.vstack(rows), {r: np.array(v) for r, v in correct.items()}, {r: np.array(v) for r, v in cost.items()}


@pytest.fixture(scope="module")
def params() -> LearnedParams:
    X, correct, cost = _synthetic()
    return fit_learned(X, correct, cost, FEATURE_NAMES, lam=0.0)


def test_prefers_the_route_that_is_more_accurate_in_each_region(params):
    router = LearnedRouter(params)
    small, profile = features("Who signed the lease?", 20_000, "large", probe=UNSURE)
    big, _ = features("Who signed the lease?", 150_000, "large", probe=UNSURE)
    assert router.route(small, profile).route is Route.LC
    d = router.route(big, profile)
    assert d.route is Route.RAG
    assert d.reasons[0].startswith("learned: rag has the best utility")
    p_small = params.predict_proba(small.vector())
    assert p_small[Route.LC] > 0.7 > p_small[Route.RAG]


def test_cost_weight_moves_the_choice_to_the_cheaper_route(params):
    small, profile = features("Who signed the lease?", 20_000, "large", probe=UNSURE)
    assert LearnedRouter(params, lam=5.0).route(small, profile).route is Route.RAG


def test_calibration_tracks_observed_rates(params):
    X, correct, _ = _synthetic(n=400, seed=7)
    for r in ROUTES:
        p = np.array([params.predict_proba(x)[r] for x in X])
        assert abs(p.mean() - correct[r].mean()) < 0.1, r


def test_single_class_route_gets_a_constant_probability():
    X, correct, cost = _synthetic(n=40)
    correct[Route.MR] = np.zeros(40, dtype=int)
    p = fit_learned(X, correct, cost, FEATURE_NAMES)
    probs = {p.predict_proba(x)[Route.MR] for x in X}
    assert len(probs) == 1 and 0 < probs.pop() < 0.05


def test_fit_rejects_bad_shapes():
    X, correct, cost = _synthetic(n=20)
    with pytest.raises(InputError, match="must be"):
        fit_learned(X[:, :3], correct, cost, FEATURE_NAMES)
    with pytest.raises(InputError, match="cost lacks routes"):
        fit_learned(X, correct, {Route.RAG: cost[Route.RAG]}, FEATURE_NAMES)


def test_vector_length_mismatch_names_the_fix(params):
    with pytest.raises(InputError, match="refit the router"):
        params.predict_proba(np.zeros(3))


def test_load_errors(tmp_path):
    with pytest.raises(InputError, match="not found"):
        LearnedParams.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text('{"format_version": 1, "routes": ["rag"]}')
    with pytest.raises(InputError, match="malformed"):
        LearnedParams.load(bad)
    with pytest.raises(InputError, match="not JSON"):
        LearnedParams.from_json("{")


finite = st.floats(-1e6, 1e6, allow_nan=False)


@settings(max_examples=60, deadline=None)
@given(
    n=st.integers(1, 6),
    routes=st.lists(st.sampled_from(ROUTES), min_size=1, max_size=4, unique=True),
    data=st.data(),
    lam=st.floats(0, 10),
    unit=st.sampled_from(["tokens", "usd"]),
)
def test_json_round_trip_property(n, routes, data, lam, unit):
    names = tuple(f"f{i}" for i in range(n))
    vec = st.tuples(*([finite] * n))
    p = LearnedParams(
        feature_names=names,
        routes=tuple(routes),
        mean=data.draw(vec),
        scale=data.draw(st.tuples(*([st.floats(1e-3, 1e3)] * n))),
        coef={r: data.draw(vec) for r in routes},
        intercept={r: data.draw(finite) for r in routes},
        calibration={r: (data.draw(finite), data.draw(finite)) for r in routes},
        lam=lam,
        cost_unit=unit,
        cost_scale=data.draw(st.floats(1e-6, 1e6)),
        meta={"n": n},
    )
    assert LearnedParams.from_json(p.to_json()) == p
