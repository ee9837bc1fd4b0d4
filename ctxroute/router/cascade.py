"""The cascade policy: the cheapest feasible route first, then stop or escalate on the answer.

Step 1 (``route``): RAG, unless the whole collection is about as small as RAG's context
(then LC costs the same and sees everything). Fallbacks name where an escalation would go:
LC when the collection fits the usable window, else HYBRID packed to the window, else MR.

Step 2 (``after_answer``): from the pre-answer features and the answer-side signals
(``ctxroute.router.answer``), two calibrated logistic regressions (``LearnedParams`` with routes
RAG and LC) give p(the answer we have is right) and p(the escalation target answers right).
Escalate when

    p(target right) - p(current right) > lam * target prompt tokens / full-context prompt tokens

i.e. accuracy minus lam x prompt tokens (as a share of a full-context read, ``lc_share_cost``), the cost-aware rule the parameters were fitted and
tuned for (``ctxroute.eval.cascade``). A refusal whose question the documents seem to cover is
the typical escalation ("retrieval missed"); a refusal of a question whose terms the retrieved
text lacks is kept ("the documents do not say"). Every decision keeps its reasons.

The fitted parameters ship inside the package (``router/data/cascade.json``), so the policy
needs no file; pass ``params`` to use your own.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from typing import Mapping

import numpy as np

from ctxroute.errors import InputError
from ctxroute.router.answer import ANSWER_FEATURE_NAMES, AnswerSignals
from ctxroute.router.estimates import EstimateSettings, estimates_for, fmt_tokens
from ctxroute.router.features import FEATURE_NAMES, RouteFeatures
from ctxroute.router.learned import LearnedParams
from ctxroute.types import Budget, ModelProfile, Route, RouteEstimate, RoutingDecision

# Pre-answer features the cascade uses: scale-free ones only, so a model fitted on one probe
# (BM25 over LaRA's 600-token windows) transfers to another (ctxroute's hybrid probe). Raw
# probe scores (BM25 vs cosine) and absolute sizes are left out on purpose.
CASCADE_PRE_FEATURES: tuple[str, ...] = (
    "log2_total_over_usable",
    "fits_window",
    "size_tiny",
    "size_small",
    "size_medium",
    "size_large",
    "size_frontier",
    "qtype_lookup",
    "qtype_multi_hop",
    "qtype_comparison",
    "qtype_aggregation",
    "qtype_counting",
    "qtype_unanswerable",
)
CASCADE_FEATURE_NAMES: tuple[str, ...] = CASCADE_PRE_FEATURES + ANSWER_FEATURE_NAMES + ("refused_x_log2_over_usable",)
_PRE_INDEX = tuple(FEATURE_NAMES.index(n) for n in CASCADE_PRE_FEATURES)
_OVER = FEATURE_NAMES.index("log2_total_over_usable")


OVER_RANGE = (-3.0, 4.0)  # log2(collection / usable window), clipped to what LaRA spans (1/8x .. 16x)


def cascade_vector(features: RouteFeatures, signals: AnswerSignals) -> np.ndarray:
    """Feature vector in CASCADE_FEATURE_NAMES order. The size ratio is clipped to the range the
    shipped fit saw, so a 1M-token window does not extrapolate the regression."""
    pre = features.vector()
    pre[_OVER] = min(max(pre[_OVER], OVER_RANGE[0]), OVER_RANGE[1])
    return np.asarray(
        [pre[i] for i in _PRE_INDEX] + signals.vector() + [float(signals.refused) * pre[_OVER]], dtype=np.float64
    )


@dataclass(frozen=True)
class Escalation:
    """What the cascade does after an answer: stop (``to is None``) or escalate to ``to``."""

    escalate: bool
    to: Route | None
    reasons: tuple[str, ...]
    p_current: float
    p_target: float
    utility: float  # p_target - p_current - lam * cost: escalate when > 0

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@lru_cache(maxsize=4)
def packaged_params(name: str) -> LearnedParams:
    """Parameters shipped inside the package: ``cascade.json`` or ``learned.json`` (read once)."""
    try:
        text = resources.files("ctxroute.router").joinpath("data", name).read_text(encoding="utf-8")
    except (FileNotFoundError, ModuleNotFoundError) as exc:  # pragma: no cover - shipped with the package
        raise InputError(f"the packaged router parameters {name!r} are missing; reinstall ctxroute") from exc
    return LearnedParams.from_dict(json.loads(text))


class CascadeRouter:
    """RAG first; after the answer, escalate when the fitted gain beats lam x tokens."""

    name = "cascade"

    def __init__(
        self,
        params: LearnedParams | None = None,
        *,
        lam: float | None = None,
        settings: EstimateSettings = EstimateSettings(),
        just_send_factor: float = 2.0,
        escalate_to_compressed: bool = False,
    ) -> None:
        """``escalate_to_compressed``: when LC does not fit but compressed-lc does, escalate to it
        instead of hybrid. Off by default: the shipped parameters were fitted and evaluated with
        hybrid as that target (no recorded compressed-lc outcomes exist to fit its trade-off)."""
        self.params = params if params is not None else packaged_params("cascade.json")
        if tuple(self.params.feature_names) != CASCADE_FEATURE_NAMES:
            raise InputError(
                "cascade parameters were fitted on other features "
                f"({len(self.params.feature_names)} names, expected {len(CASCADE_FEATURE_NAMES)}); refit with "
                "`ctxroute router fit-cascade`"
            )
        if Route.RAG not in self.params.routes or Route.LC not in self.params.routes:
            raise InputError("cascade parameters must model routes rag and lc")
        self.lam = self.params.lam if lam is None else float(lam)
        self.settings = settings
        self.just_send_factor = just_send_factor
        self.escalate_to_compressed = escalate_to_compressed

    # --- step 1 ---------------------------------------------------------------------
    def escalation_order(self, by: Mapping[Route, RouteEstimate]) -> tuple[Route, ...]:
        if by[Route.LC].feasible:
            return (Route.LC, Route.HYBRID, Route.MR)
        comp = by.get(Route.COMPRESSED)
        if self.escalate_to_compressed and comp is not None and comp.feasible:  # the full text does not fit, its query-relevant share does
            return (Route.COMPRESSED, Route.HYBRID, Route.MR, Route.LC)
        return (Route.HYBRID, Route.MR, Route.LC)

    def route(self, features: RouteFeatures, profile: ModelProfile, budget: Budget = Budget()) -> RoutingDecision:
        from ctxroute.router.policies import _decision, choose

        est = estimates_for(features, profile, self.settings)
        by = {e.route: e for e in est}
        then = self.escalation_order(by)
        small = by[Route.LC].feasible and features.total_tokens <= self.just_send_factor * self.settings.rag_context_tokens
        order = (Route.LC, Route.RAG, Route.HYBRID) if small else (Route.RAG, *then)
        route, fallbacks, notes = choose(order, by, budget)
        if small:
            first = (f"cascade: collection {fmt_tokens(features.total_tokens)} tokens <= "
                     f"{fmt_tokens(self.just_send_factor * self.settings.rag_context_tokens)}: lc costs about what rag does, send it all")
        else:
            target = next((r for r in fallbacks if r != Route.RAG), None)
            first = ("cascade: rag first (the cheapest feasible route); after the answer, escalate"
                     + (f" to {target.value} ({fmt_tokens(by[target].prompt_tokens)} prompt tokens)" if target else "")
                     + f" when p(right) gains more than lam {self.lam:g} x its prompt tokens as a share of the full context")
        return _decision(route, [first, *notes], features, est, fallbacks, self.name)

    # --- step 2 ---------------------------------------------------------------------
    @staticmethod
    def target(decision: RoutingDecision, *, spent_tokens: int = 0, budget: Budget = Budget()) -> tuple[Route | None, list[str]]:
        """Where an escalation from RAG would go: the first feasible fallback that still fits the
        budget after ``spent_tokens``, and why richer ones were skipped."""
        by = {e.route: e for e in decision.estimates}
        left = None if budget.max_tokens is None else budget.max_tokens - spent_tokens
        skipped: list[str] = []
        for r in decision.fallbacks:
            e = by.get(r)
            if e is None or r == Route.RAG or not e.feasible:
                continue
            if left is not None and e.total_tokens > left:
                skipped.append(f"{r.value} needs {fmt_tokens(e.total_tokens)} tokens, {fmt_tokens(max(0, left))} left in the budget")
                continue
            return r, skipped
        return None, skipped

    def probabilities(self, features: RouteFeatures, signals: AnswerSignals) -> dict[Route, float]:
        return self.params.predict_proba(cascade_vector(features, signals))

    def after_answer(
        self,
        features: RouteFeatures,
        signals: AnswerSignals,
        decision: RoutingDecision,
        *,
        current: Route = Route.RAG,
        spent_tokens: int = 0,
        budget: Budget = Budget(),
    ) -> Escalation:
        """Stop or escalate after ``current`` answered. ``spent_tokens`` (prompt + completion so
        far) counts against ``budget``; the target is the first fallback that still fits."""
        if current != Route.RAG:
            return Escalation(False, None, (f"cascade: {current.value} answered; nothing cheaper-to-richer left to try",), 0.0, 0.0, 0.0)
        by = {e.route: e for e in decision.estimates}
        target, skipped = self.target(decision, spent_tokens=spent_tokens, budget=budget)
        proba = self.probabilities(features, signals)
        p_cur, p_lc = proba[Route.RAG], proba[Route.LC]
        what = self._describe(signals)
        if target is None:
            why = "; ".join(skipped) if skipped else "no feasible richer route"
            return Escalation(False, None, (f"cascade: stop after rag ({what}): {why}",), p_cur, p_lc, 0.0)
        cost = lc_share_cost(by[target].prompt_tokens, features)
        utility = p_lc - p_cur - self.lam * cost
        head = (f"p(rag answer right) {p_cur:.2f}, p({target.value} right) {p_lc:.2f}, "
                f"cost lam {self.lam:g} x {fmt_tokens(by[target].prompt_tokens)} tokens / full context "
                f"{fmt_tokens(features.total_tokens + features.question_tokens)} = {self.lam * cost:.3f}")
        if utility > 0:
            reasons = (f"cascade: escalate rag -> {target.value} ({what}): {head}; gain {p_lc - p_cur:+.2f} > cost",)
        else:
            reasons = (f"cascade: stop after rag ({what}): {head}; gain {p_lc - p_cur:+.2f} <= cost",)
        return Escalation(utility > 0, target if utility > 0 else None, reasons + tuple(skipped), p_cur, p_lc, utility)

    @staticmethod
    def _describe(s: AnswerSignals) -> str:
        parts = []
        if s.empty:
            parts.append("empty answer")
        elif s.refused:
            parts.append("the answer is a refusal")
        elif s.hedged:
            parts.append("the answer hedges")
        else:
            parts.append(f"answered in {s.answer_tokens} words")
        if s.type_missing:
            parts.append("lacks the asked-for number/date/list")
        if s.question_coverage >= 0:
            parts.append(f"question terms in retrieved text {s.question_coverage:.0%}")
        if s.n_citations or s.verified_share >= 0:
            parts.append(f"{s.n_citations} verified citations")
        return ", ".join(parts)


def lc_share_cost(prompt_tokens: int, features: RouteFeatures) -> float:
    """The cascade's cost unit: prompt tokens as a share of a full-context read of the scope
    (collection tokens + question): escalating to LC costs 1, to hybrid packed to a 64k window
    over a 640k-token collection 0.1. It is the unit the evaluation's token budget is written in
    (a share of always-LC's prompt tokens), so one ``lam`` means the same at 32k and at 1M
    tokens and for every model window."""
    return float(prompt_tokens) / max(1, int(features.total_tokens) + int(features.question_tokens))


__all__ = [
    "CASCADE_FEATURE_NAMES",
    "CASCADE_PRE_FEATURES",
    "CascadeRouter",
    "Escalation",
    "cascade_vector",
    "packaged_params",
    "lc_share_cost",
]

