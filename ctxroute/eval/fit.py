"""Fitting the learned router from recorded outcomes or live runner results.

Training data: one row per (model, question) with the router's feature vector, whether RAG
and LC were right, and their prompt tokens. :func:`fit_from_outcomes` calls the router's
``fit_learned``; :func:`tune_lam` picks the cost weight on the fit set only;
:func:`cross_length_evidence` fits on one LaRA length and reports on the other, so no
reported number comes from the fit set.
"""
from __future__ import annotations

import json
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np

from ctxroute.errors import InputError
from ctxroute.eval.lara import Outcome
from ctxroute.eval.replay import FeatureBuilder, ReplaySummary, replay, replay_choices
from ctxroute.router import FEATURE_NAMES, LearnedParams, RouteFeatures, fit_learned
from ctxroute.router.policies import LearnedRouter
from ctxroute.types import Route

EVIDENCE_POLICIES = ("rag", "lc", "rules", "learned", "self-route", "learned+esc", "oracle")
DEFAULT_LAM_GRID = (0.0, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 1.5, 2.0, 3.0)


def outcome_labels(outcomes: Sequence[Outcome]) -> tuple[dict[Route, np.ndarray], dict[Route, np.ndarray]]:
    """Per-route correctness (0/1) and prompt tokens of recorded outcomes (RAG and LC)."""
    correct = {
        Route.RAG: np.array([o.rag_correct for o in outcomes], dtype=int),
        Route.LC: np.array([o.lc_correct for o in outcomes], dtype=int),
    }
    cost = {
        Route.RAG: np.array([o.rag_prompt_tokens for o in outcomes], dtype=float),
        Route.LC: np.array([o.lc_prompt_tokens for o in outcomes], dtype=float),
    }
    return correct, cost


def training_arrays(outcomes: Sequence[Outcome], features: FeatureBuilder | None = None) -> tuple[np.ndarray, dict[Route, np.ndarray], dict[Route, np.ndarray]]:
    """X (n, len(FEATURE_NAMES)), per-route correctness and prompt tokens."""
    if not outcomes:
        raise InputError("no outcomes to fit on; check the model/length filters")
    fb = features or FeatureBuilder()
    X = np.vstack([fb(o).vector() for o in outcomes])
    correct, cost = outcome_labels(outcomes)
    return X, correct, cost


def fit_from_outcomes(
    outcomes: Sequence[Outcome],
    *,
    lam: float = 0.1,
    C: float = 1.0,
    features: FeatureBuilder | None = None,
    meta: Mapping[str, object] | None = None,
) -> LearnedParams:
    """Fit the learned policy (RAG vs LC) on recorded outcomes."""
    X, correct, cost = training_arrays(outcomes, features)
    params = fit_learned(X, correct, cost, FEATURE_NAMES, lam=lam, C=C)
    if meta:
        from dataclasses import replace

        params = replace(params, meta={**dict(params.meta), **dict(meta)})
    return params


def with_lam(params: LearnedParams, lam: float) -> LearnedParams:
    from dataclasses import replace

    return replace(params, lam=float(lam))


@dataclass(frozen=True)
class LamChoice:
    lam: float
    accuracy: float
    token_ratio: float


def tune_lam(
    outcomes: Sequence[Outcome],
    params: LearnedParams,
    *,
    max_token_ratio: float = 0.35,
    grid: Iterable[float] = DEFAULT_LAM_GRID,
    features: FeatureBuilder | None = None,
) -> tuple[LamChoice, list[LamChoice]]:
    """The cost weight with the best fit-set accuracy among those within ``max_token_ratio``
    of always-LC tokens (the cheapest one when none is); evaluated on the fit set only."""
    fb = features or FeatureBuilder()
    tried: list[LamChoice] = []
    for lam in grid:
        p = with_lam(params, lam)
        ch = replay_choices(outcomes, "learned", router=LearnedRouter(p), features=fb)
        acc = float(np.mean([c.correct for c in ch]))
        ratio = float(sum(c.prompt_tokens for c in ch) / max(1, sum(c.lc_prompt_tokens for c in ch)))
        tried.append(LamChoice(float(lam), acc, ratio))
    ok = [t for t in tried if t.token_ratio <= max_token_ratio]
    best = max(ok, key=lambda t: (t.accuracy, -t.token_ratio)) if ok else min(tried, key=lambda t: t.token_ratio)
    return best, tried


@dataclass(frozen=True)
class EvidenceRow:
    fit_length: str
    eval_length: str
    model: str
    fit_scope: str  # "pooled" (all models of the fit length) or "per-model"
    lam: float
    summaries: tuple[ReplaySummary, ...]

    def as_dict(self) -> dict[str, object]:
        return {
            "fit_length": self.fit_length,
            "eval_length": self.eval_length,
            "model": self.model,
            "fit_scope": self.fit_scope,
            "lam": self.lam,
            "policies": {s.policy: s.as_dict() for s in self.summaries},
        }


def cross_length_evidence(
    outcomes: Sequence[Outcome],
    models: Sequence[str],
    *,
    per_model: bool = True,
    max_token_ratio: float = 0.35,
    C: float = 1.0,
    features: FeatureBuilder | None = None,
    lengths: tuple[str, str] = ("32k", "128k"),
    n_boot: int = 1000,
) -> list[EvidenceRow]:
    """Fit on one LaRA length (lam tuned there), report every policy on the other length.

    ``per_model``: one fit per model on its own fit-length outcomes; else one pooled fit on
    every model's fit-length outcomes (model size class is a feature).
    """
    fb = features or FeatureBuilder()
    by: dict[tuple[str, str], list[Outcome]] = defaultdict(list)
    for o in outcomes:
        by[(o.model, o.length)].append(o)
    rows: list[EvidenceRow] = []
    for fit_len, eval_len in (lengths, lengths[::-1]):
        pooled_params: LearnedParams | None = None
        pooled_lam = 0.0
        if not per_model:
            fit_set = [o for (m, ln), os in by.items() if ln == fit_len for o in os]
            pooled_params = fit_from_outcomes(fit_set, C=C, features=fb, meta={"fit_length": fit_len, "scope": "pooled"})
            choice, _ = tune_lam(fit_set, pooled_params, max_token_ratio=max_token_ratio, features=fb)
            pooled_lam = choice.lam
            pooled_params = with_lam(pooled_params, pooled_lam)
        for model in models:
            test = by.get((model, eval_len), [])
            if not test:
                continue
            if per_model:
                fit_set = by.get((model, fit_len), [])
                params = fit_from_outcomes(fit_set, C=C, features=fb, meta={"fit_length": fit_len, "scope": model})
                choice, _ = tune_lam(fit_set, params, max_token_ratio=max_token_ratio, features=fb)
                params = with_lam(params, choice.lam)
                lam = choice.lam
            else:
                assert pooled_params is not None
                params, lam = pooled_params, pooled_lam
            summaries, _ = replay(test, EVIDENCE_POLICIES, params=params, features=fb, n_boot=n_boot)
            rows.append(EvidenceRow(fit_len, eval_len, model, "per-model" if per_model else "pooled", lam, tuple(summaries)))
    return rows


def grouped_cv_evidence(
    outcomes: Sequence[Outcome],
    models: Sequence[str],
    *,
    folds: int = 5,
    max_token_ratio: float = 0.35,
    C: float = 1.0,
    features: FeatureBuilder | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> list[EvidenceRow]:
    """Per model and length: document-grouped K-fold (no document in both fit and test),
    lam tuned on each fit fold; the held-out choices of all folds are pooled and summarised."""
    from sklearn.model_selection import GroupKFold

    from ctxroute.eval.replay import ReplayChoice, summarize

    fb = features or FeatureBuilder()
    rows: list[EvidenceRow] = []
    for length in sorted({o.length for o in outcomes}):
        for model in models:
            data = [o for o in outcomes if o.model == model and o.length == length]
            if len(data) < folds * 2:
                continue
            groups = [o.file or o.key.rsplit("/", 1)[0] for o in data]
            held: dict[str, list[ReplayChoice]] = defaultdict(list)
            lams = []
            for fit_idx, test_idx in GroupKFold(n_splits=folds).split(data, groups=groups):
                fit_set = [data[i] for i in fit_idx]
                test = [data[i] for i in test_idx]
                params = fit_from_outcomes(fit_set, C=C, features=fb)
                choice, _ = tune_lam(fit_set, params, max_token_ratio=max_token_ratio, features=fb)
                params = with_lam(params, choice.lam)
                lams.append(choice.lam)
                for pol in EVIDENCE_POLICIES:
                    held[pol].extend(replay_choices(test, pol, params=params, features=fb))
            summaries = tuple(summarize(p, held[p], held["oracle"], n_boot=n_boot, seed=seed) for p in EVIDENCE_POLICIES)
            rows.append(EvidenceRow(length, length, model, f"per-model, {folds}-fold grouped by document", float(np.median(lams)), summaries))
    return rows


# --- live runner results --------------------------------------------------------------
def features_from_dict(d: Mapping[str, object]) -> RouteFeatures:
    """Rebuild RouteFeatures from ``RoutingDecision.features`` (``RouteFeatures.as_dict``)."""
    q_scores = {k[2:]: float(v) for k, v in d.items() if k.startswith("q_")}  # type: ignore[arg-type]
    ints = ("question_tokens", "total_tokens", "max_doc_tokens", "n_docs", "n_passages", "passage_tokens", "usable_window",
            "context_window", "fits_window", "has_probe", "n_docs_in_top", "n_sections_in_top", "n_hits")
    floats = ("top_score", "margin", "entropy", "spread", "budget_tokens", "budget_cost")
    kw: dict[str, object] = {k: int(float(d[k])) for k in ints if k in d}  # type: ignore[arg-type]
    kw.update({k: float(d[k]) for k in floats if k in d})  # type: ignore[arg-type]
    missing = [k for k in ("question_tokens", "total_tokens", "max_doc_tokens", "n_docs", "n_passages", "passage_tokens", "usable_window", "context_window", "fits_window") if k not in kw]
    if missing:
        raise InputError(f"result record's features lack {missing}; rerun `ctxroute eval run` with a router-producing engine")
    return RouteFeatures(
        size_class=str(d.get("size_class", "small")),
        qtype=str(d.get("qtype", "lookup")),
        qtype_scores=q_scores,
        cues=tuple(c.strip() for c in str(d.get("cues", "")).split(",") if c.strip()),
        probe_source=str(d.get("probe_source", "none")),
        **kw,  # type: ignore[arg-type]
    )


def training_from_results(records: Iterable[Mapping[str, object]], metric: str = "judge") -> tuple[np.ndarray, dict[Route, np.ndarray], dict[Route, np.ndarray]]:
    """Training arrays from runner records: questions answered by at least two fixed routes
    (``route_requested`` among rag/lc/mr/hybrid) without error. Features come from the first
    record of the question; correctness from ``correct[metric]``."""
    by_q: dict[str, dict[str, Mapping[str, object]]] = defaultdict(dict)
    for r in records:
        route = str(r.get("route_requested", ""))
        if r.get("error") or route not in ("rag", "lc", "mr", "hybrid") or not r.get("features"):
            continue
        by_q[str(r["id"])][route] = r
    routes = sorted({rt for rs in by_q.values() for rt in rs}, key=lambda x: [r.value for r in Route].index(x))
    qs = [q for q, rs in by_q.items() if all(rt in rs for rt in routes)]
    if len(routes) < 2 or len(qs) < 2:
        raise InputError(
            f"need >= 2 questions answered by every one of >= 2 fixed routes; found routes {routes} over {len(qs)} complete questions. "
            "Run `ctxroute eval run DATASET --routes rag,lc ...` first"
        )
    X = np.vstack([features_from_dict(by_q[q][routes[0]]["features"]).vector() for q in qs])  # type: ignore[arg-type]
    correct: dict[Route, np.ndarray] = {}
    cost: dict[Route, np.ndarray] = {}
    for rt in routes:
        c = []
        for q in qs:
            cm = by_q[q][rt].get("correct") or {}
            if metric not in cm:  # type: ignore[operator]
                raise InputError(f"record {q}/{rt} has no correct[{metric!r}]; pick --metric from {sorted(cm)}")  # type: ignore[arg-type]
            c.append(float(cm[metric]) >= 0.5)  # type: ignore[index]
        correct[Route(rt)] = np.array(c, dtype=int)
        cost[Route(rt)] = np.array([float(by_q[q][rt].get("prompt_tokens", 0)) for q in qs])  # type: ignore[arg-type]
    return X, correct, cost


def read_records(paths: Iterable[str | Path]) -> list[dict]:
    """Records from runner JSONL files (or folders holding ``results.jsonl``)."""
    out: list[dict] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            p = p / "results.jsonl"
        if not p.is_file():
            raise InputError(f"results file {str(p)!r} does not exist; pass a runner output folder or its results.jsonl", path=str(p))
        out.extend(json.loads(line) for line in p.read_text(encoding="utf-8").splitlines() if line.strip())
    return out


__all__ = [
    "DEFAULT_LAM_GRID",
    "EvidenceRow",
    "LamChoice",
    "cross_length_evidence",
    "features_from_dict",
    "fit_from_outcomes",
    "outcome_labels",
    "grouped_cv_evidence",
    "read_records",
    "training_arrays",
    "training_from_results",
    "tune_lam",
    "with_lam",
]

