"""Fitting the cascade policy from recorded outcomes.

Training rows: one per (model, question) with the cascade's features (scale-free pre-answer
features + the answer-side signals of the *recorded* RAG answer), whether RAG and LC were
right, and their prompt tokens. :func:`fit_cascade` fits one calibrated logistic regression per
route (``ctxroute.router.learned.fit_learned``) and then picks the cost weight ``lam`` on the fit
rows only: the best fit-set accuracy among the ``lam`` values whose replayed prompt tokens stay
within ``max_token_ratio`` of always-LC (accuracy minus lam x tokens, with lam the setting that
meets the token budget). Nothing here sees a test fold: the protocols in
``ctxroute.eval.protocols`` call it on the fit part only.
"""
from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

import numpy as np

from ctxroute.errors import InputError
from ctxroute.eval.fit import outcome_labels
from ctxroute.eval.lara import Outcome
from ctxroute.eval.replay import FeatureBuilder
from ctxroute.router.cascade import CASCADE_FEATURE_NAMES, CascadeRouter, cascade_vector
from ctxroute.router.learned import LearnedParams, fit_learned
from ctxroute.types import Route

CASCADE_LAM_GRID = (0.0, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.125, 0.15, 0.2, 0.25, 0.3, 0.4, 0.5, 0.75, 1.0, 2.0)


# Expected share of questions the documents cannot answer, in use. LaRA has 26% by design (its
# "hallu" questions); FinanceBench, LooGLE, L-Eval and the SEC 10-Q questions have none. The
# shipped parameters assume 5%: a refusal is then usually "retrieval missed", not "the documents
# do not say", unless the question's own signals say otherwise.
DEFAULT_UNANSWERABLE_RATE = 0.05


def prior_weights(outcomes: Sequence[Outcome], target: float | None) -> tuple[np.ndarray | None, float]:
    """Importance weights moving the share of unanswerable rows to ``target`` (None: no change),
    and the data's own share."""
    unans = np.array([not o.answerable for o in outcomes], dtype=bool)
    rate = float(unans.mean()) if len(outcomes) else 0.0
    if target is None or rate in (0.0, 1.0):
        return None, rate
    if not 0.0 <= target < 1.0:
        raise InputError(f"unanswerable_rate must be in [0, 1), got {target}")
    w = np.where(unans, target / rate, (1.0 - target) / (1.0 - rate))
    return w, rate


def cascade_arrays(outcomes: Sequence[Outcome], fb: FeatureBuilder) -> tuple[np.ndarray, dict[Route, np.ndarray], dict[Route, np.ndarray]]:
    if not outcomes:
        raise InputError("no outcomes to fit the cascade on; check the filters")
    X = np.vstack([cascade_vector(fb(o), fb.signals(o)) for o in outcomes])
    correct, cost = outcome_labels(outcomes)
    return X, correct, cost


@dataclass(frozen=True)
class CascadeLam:
    lam: float
    accuracy: float
    token_ratio: float
    escalated: float


@dataclass(frozen=True)
class CascadePlan:
    """Per outcome, what the cascade would see: its first route, the two probabilities and
    the escalation's cost as a share of the full context (``inf`` when there is no target). Sweeping ``lam``
    over a plan costs no model evaluation."""

    first_lc: np.ndarray
    p_cur: np.ndarray
    p_target: np.ndarray
    cost: np.ndarray

    def escalate(self, lam: float) -> np.ndarray:
        return (~self.first_lc) & np.isfinite(self.cost) & (self.p_target - self.p_cur - lam * np.where(np.isfinite(self.cost), self.cost, 0.0) > 0)


def cascade_plan(outcomes: Sequence[Outcome], params: LearnedParams, fb: FeatureBuilder) -> CascadePlan:
    from ctxroute.router.cascade import lc_share_cost

    cas = CascadeRouter(params)
    first_lc, p_cur, p_tgt, cost = [], [], [], []
    for o in outcomes:
        f = fb(o)
        d = cas.route(f, fb.profile(o.model))
        first_lc.append(d.route != Route.RAG)
        by = {e.route: e for e in d.estimates}
        target, _ = cas.target(d)
        proba = cas.probabilities(f, fb.signals(o))
        p_cur.append(proba[Route.RAG])
        p_tgt.append(proba[Route.LC])
        cost.append(lc_share_cost(by[target].prompt_tokens, f) if target is not None else float("inf"))
    return CascadePlan(np.array(first_lc, dtype=bool), np.array(p_cur), np.array(p_tgt), np.array(cost))


def plan_result(outcomes: Sequence[Outcome], plan: CascadePlan, lam: float, weights: np.ndarray | None = None) -> CascadeLam:
    esc = plan.escalate(lam)
    rag_ok = np.array([o.rag_correct for o in outcomes], dtype=bool)
    lc_ok = np.array([o.lc_correct for o in outcomes], dtype=bool)
    rag_t = np.array([o.rag_prompt_tokens for o in outcomes], dtype=float)
    lc_t = np.array([o.lc_prompt_tokens for o in outcomes], dtype=float)
    correct = np.where(plan.first_lc | esc, lc_ok, rag_ok)
    tokens = np.where(plan.first_lc, lc_t, rag_t + np.where(esc, lc_t, 0.0))
    w = np.ones(len(outcomes)) if weights is None else weights
    return CascadeLam(float(lam), float(np.average(correct, weights=w)),
                      float((w * tokens).sum() / max(1.0, (w * lc_t).sum())), float(np.average(esc, weights=w)))


def fit_cascade(
    outcomes: Sequence[Outcome],
    fb: FeatureBuilder,
    *,
    lam: float | None = None,
    max_token_ratio: float = 0.30,
    C: float = 0.5,
    grid: Iterable[float] = CASCADE_LAM_GRID,
    meta: Mapping[str, object] | None = None,
    unanswerable_rate: float | None = DEFAULT_UNANSWERABLE_RATE,
) -> tuple[LearnedParams, list[CascadeLam]]:
    """Fit the cascade's two calibrated regressions on ``outcomes`` and choose ``lam`` there
    (unless given). Returns the parameters and every ``lam`` tried with its fit-set result.

    ``unanswerable_rate``: the share of questions the documents cannot answer that the policy
    should expect in use. Rows are reweighted (label-shift importance weights) from the fit
    data's own share to this one, and ``lam`` is chosen on the reweighted rows. ``None`` keeps
    the fit data's share (right when the test data comes from the same benchmark)."""
    X, correct, cost = cascade_arrays(outcomes, fb)
    weights, fit_rate = prior_weights(outcomes, unanswerable_rate)
    params = fit_learned(X, correct, cost, CASCADE_FEATURE_NAMES, lam=0.0 if lam is None else lam, C=C,
                         sample_weight=weights)
    tried: list[CascadeLam] = []
    if lam is None:
        plan = cascade_plan(outcomes, params, fb)
        tried = [plan_result(outcomes, plan, float(g), weights) for g in grid]
        ok = [t for t in tried if t.token_ratio <= max_token_ratio]
        best = max(ok, key=lambda t: (round(t.accuracy, 4), -t.token_ratio)) if ok else min(tried, key=lambda t: t.token_ratio)
        params = replace(params, lam=best.lam)
    m = {
        **dict(params.meta),
        "policy": "cascade",
        "cost_unit_note": "lam multiplies the escalation's prompt tokens / the full-context prompt tokens",
        "max_token_ratio": max_token_ratio,
        "fit_models": sorted({o.model for o in outcomes}),
        "fit_rows": len(outcomes),
        "fit_unanswerable_rate": fit_rate,
        "unanswerable_rate": fit_rate if unanswerable_rate is None else unanswerable_rate,
        "lam_tried": [t.__dict__ for t in tried],
        **dict(meta or {}),
    }
    return replace(params, meta=m), tried


__all__ = ["CASCADE_LAM_GRID", "DEFAULT_UNANSWERABLE_RATE", "prior_weights", "CascadeLam", "CascadePlan", "cascade_arrays", "cascade_plan", "fit_cascade", "plan_result"]
