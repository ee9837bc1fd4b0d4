"""Learned routing: one calibrated logistic regression per route predicting "this route answers
correctly", traded off against cost: utility = p(correct) - lam * cost / cost_scale.

``fit_learned`` is pure (arrays in, parameters out); the eval layer calls it and writes the
JSON. ``LearnedParams.load`` reads a JSON file and is meant for the edges (CLI, API startup).
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping, Sequence

import numpy as np

from ctxroute.errors import InputError
from ctxroute.types import Route

FORMAT_VERSION = 1


def _sigmoid(z: float) -> float:
    if z >= 0:
        return 1.0 / (1.0 + math.exp(-z))
    e = math.exp(z)
    return e / (1.0 + e)


@dataclass(frozen=True)
class LearnedParams:
    """Everything the learned router needs, JSON-serialisable.

    ``calibration[route] = (a, b)``: Platt scaling, p = sigmoid(a * z + b) where z is the
    logistic regression's decision value. ``cost_scale`` turns a cost (tokens or USD, per
    ``cost_unit``) into the unit that ``lam`` multiplies (the mean training cost).
    """

    feature_names: tuple[str, ...]
    routes: tuple[Route, ...]
    mean: tuple[float, ...]
    scale: tuple[float, ...]
    coef: Mapping[Route, tuple[float, ...]]
    intercept: Mapping[Route, float]
    calibration: Mapping[Route, tuple[float, float]]
    lam: float = 0.1
    cost_unit: str = "tokens"  # tokens | usd
    cost_scale: float = 1.0
    meta: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = len(self.feature_names)
        if len(self.mean) != n or len(self.scale) != n:
            raise InputError(f"LearnedParams: mean/scale length must equal {n} feature names")
        for r in self.routes:
            if r not in self.coef or len(self.coef[r]) != n or r not in self.intercept or r not in self.calibration:
                raise InputError(f"LearnedParams: route {r.value!r} lacks coef/intercept/calibration of length {n}")
        if self.cost_unit not in ("tokens", "usd"):
            raise InputError(f"LearnedParams: cost_unit {self.cost_unit!r} must be 'tokens' or 'usd'")
        if not self.cost_scale > 0:
            raise InputError(f"LearnedParams: cost_scale must be > 0, got {self.cost_scale}")

    # --- prediction -------------------------------------------------------------
    def predict_proba(self, x: np.ndarray) -> dict[Route, float]:
        """Calibrated probability that each route answers correctly, for one feature vector."""
        x = np.asarray(x, dtype=np.float64).ravel()
        if x.shape[0] != len(self.feature_names):
            raise InputError(
                f"feature vector has {x.shape[0]} values, params expect {len(self.feature_names)}; "
                "refit the router with this version (`ctxroute eval ... --fit-router`)"
            )
        xs = (x - np.asarray(self.mean)) / np.asarray(self.scale)
        out: dict[Route, float] = {}
        for r in self.routes:
            z = float(np.dot(xs, np.asarray(self.coef[r])) + self.intercept[r])
            a, b = self.calibration[r]
            out[r] = _sigmoid(a * z + b)
        return out

    # --- JSON -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        return {
            "format_version": FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "routes": [r.value for r in self.routes],
            "mean": list(self.mean),
            "scale": list(self.scale),
            "coef": {r.value: list(self.coef[r]) for r in self.routes},
            "intercept": {r.value: self.intercept[r] for r in self.routes},
            "calibration": {r.value: list(self.calibration[r]) for r in self.routes},
            "lam": self.lam,
            "cost_unit": self.cost_unit,
            "cost_scale": self.cost_scale,
            "meta": dict(self.meta),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=1, sort_keys=True)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any]) -> "LearnedParams":
        try:
            if d.get("format_version") != FORMAT_VERSION:
                raise InputError(
                    f"router params format_version {d.get('format_version')!r} != {FORMAT_VERSION}; refit the router"
                )
            routes = tuple(Route(r) for r in d["routes"])
            return cls(
                feature_names=tuple(d["feature_names"]),
                routes=routes,
                mean=tuple(float(v) for v in d["mean"]),
                scale=tuple(float(v) for v in d["scale"]),
                coef={r: tuple(float(v) for v in d["coef"][r.value]) for r in routes},
                intercept={r: float(d["intercept"][r.value]) for r in routes},
                calibration={r: (float(d["calibration"][r.value][0]), float(d["calibration"][r.value][1])) for r in routes},
                lam=float(d["lam"]),
                cost_unit=str(d["cost_unit"]),
                cost_scale=float(d["cost_scale"]),
                meta=dict(d.get("meta", {})),
            )
        except (KeyError, TypeError, ValueError, IndexError) as exc:
            raise InputError(f"router params are malformed ({type(exc).__name__}: {exc}); refit the router") from exc

    @classmethod
    def from_json(cls, s: str) -> "LearnedParams":
        try:
            data = json.loads(s)
        except json.JSONDecodeError as exc:
            raise InputError(f"router params are not JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise InputError("router params JSON must be an object")
        return cls.from_dict(data)

    def save(self, path: Path | str) -> None:
        Path(path).write_text(self.to_json() + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path | str) -> "LearnedParams":
        p = Path(path)
        if not p.is_file():
            raise InputError(
                f"router params file {str(p)!r} not found; fit one with the eval command or pass --policy rules"
            )
        return cls.from_json(p.read_text(encoding="utf-8"))


def _platt(z: np.ndarray, y: np.ndarray, w: np.ndarray | None = None) -> tuple[float, float]:
    """Fit p = sigmoid(a z + b) on out-of-fold decision values."""
    from sklearn.linear_model import LogisticRegression

    lr = LogisticRegression(C=1e4)
    lr.fit(z.reshape(-1, 1), y, sample_weight=w)
    return float(lr.coef_[0, 0]), float(lr.intercept_[0])


def fit_learned(
    X: np.ndarray,
    correct: Mapping[Route, np.ndarray],
    cost: Mapping[Route, np.ndarray],
    feature_names: Sequence[str],
    *,
    lam: float = 0.1,
    C: float = 1.0,
    cost_unit: str = "tokens",
    seed: int = 0,
    sample_weight: np.ndarray | None = None,
) -> LearnedParams:
    """Fit one logistic regression per route (standardised features, Platt-calibrated with
    out-of-fold decision values). ``correct[route][i]`` is 1 when route answered question i
    correctly; ``cost[route][i]`` is what it spent (tokens or USD). ``sample_weight`` reweights
    rows (e.g. to move the share of unanswerable questions to the one expected in use)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict

    X = np.asarray(X, dtype=np.float64)
    if X.ndim != 2 or X.shape[1] != len(feature_names):
        raise InputError(f"X must be (n, {len(feature_names)}), got shape {X.shape}")
    n = X.shape[0]
    if n < 2:
        raise InputError(f"need at least 2 training questions, got {n}")
    if not correct:
        raise InputError("correct is empty: give per-route correctness arrays")
    routes = tuple(sorted(correct, key=lambda r: list(Route).index(r)))
    mean = X.mean(axis=0)
    scale = X.std(axis=0)
    scale[scale < 1e-9] = 1.0
    Xs = (X - mean) / scale
    coef: dict[Route, tuple[float, ...]] = {}
    intercept: dict[Route, float] = {}
    calibration: dict[Route, tuple[float, float]] = {}
    rates: dict[str, float] = {}
    for r in routes:
        y = np.asarray(correct[r]).astype(int).ravel()
        if y.shape[0] != n:
            raise InputError(f"correct[{r.value!r}] has {y.shape[0]} values, X has {n} rows")
        rate = float(y.mean())
        rates[r.value] = rate
        n_pos, n_neg = int(y.sum()), int(n - y.sum())
        if min(n_pos, n_neg) == 0:
            # one class only: a constant probability, shrunk away from 0/1
            p = (n_pos + 0.5) / (n + 1.0)
            coef[r] = tuple(0.0 for _ in feature_names)
            intercept[r] = math.log(p / (1 - p))
            calibration[r] = (1.0, 0.0)
            continue
        w = None if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).ravel()
        model = LogisticRegression(C=C, max_iter=2000)
        model.fit(Xs, y, sample_weight=w)
        coef[r] = tuple(float(v) for v in model.coef_[0])
        intercept[r] = float(model.intercept_[0])
        folds = min(5, n_pos, n_neg)
        if folds >= 2:
            cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
            z = cross_val_predict(LogisticRegression(C=C, max_iter=2000), Xs, y, cv=cv, method="decision_function",
                                  params={"sample_weight": w} if w is not None else None)
            calibration[r] = _platt(np.asarray(z), y, w)
        else:
            calibration[r] = (1.0, 0.0)
    all_costs = np.concatenate([np.asarray(cost[r], dtype=np.float64).ravel() for r in routes if r in cost])
    missing = [r.value for r in routes if r not in cost]
    if missing:
        raise InputError(f"cost lacks routes {missing}; give a cost array for every route in correct")
    cost_scale = float(all_costs.mean()) if all_costs.size and all_costs.mean() > 0 else 1.0
    return LearnedParams(
        feature_names=tuple(feature_names),
        routes=routes,
        mean=tuple(float(v) for v in mean),
        scale=tuple(float(v) for v in scale),
        coef=coef,
        intercept=intercept,
        calibration=calibration,
        lam=float(lam),
        cost_unit=cost_unit,
        cost_scale=cost_scale,
        meta={"n": n, "C": C, "accuracy": rates, "mean_cost": {r.value: float(np.mean(cost[r])) for r in routes}},
    )
