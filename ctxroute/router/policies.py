"""Routing policies: rules, self-route, learned and fixed, behind one ``Router`` protocol.

Budget handling (every policy): a route whose predicted tokens (prompt + completion, all
calls) or cost exceeds the request's budget is never chosen and the reasons say so. When no
LLM route fits, ``route`` raises ``BudgetExceeded`` naming the cheapest estimate (the API maps
it to 429); the extractive route (no LLM) is chosen only when asked for explicitly.
"""
from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Callable, Mapping, Protocol, Sequence, runtime_checkable

from ctxroute.errors import BudgetExceeded, InputError
from ctxroute.router.estimates import EstimateSettings, estimates_for
from ctxroute.router.features import RouteFeatures
from ctxroute.router.learned import LearnedParams
from ctxroute.router.rules import DEFAULT_RULES, Ctx, RuleTable
from ctxroute.types import Budget, ModelProfile, Route, RouteEstimate, RoutingDecision

if TYPE_CHECKING:
    import numpy as np

    from ctxroute.router.features import CollectionStats, ProbeSignals
    from ctxroute.router.questions import QuestionTyper

LLM_ROUTES: tuple[Route, ...] = (Route.RAG, Route.LC, Route.HYBRID, Route.MR, Route.COMPRESSED)
POLICIES: tuple[str, ...] = ("auto", "cascade", "rules", "self-route", "learned", "rag", "lc", "mr", "hybrid", "extractive", "compressed-lc")
# What ``auto`` means: the policy that won out of sample in this version's evidence
# (README "Router on recorded answers"; ``ctxroute eval evidence``).
AUTO_POLICY = "cascade"


@runtime_checkable
class Router(Protocol):
    name: str

    def route(self, features: RouteFeatures, profile: ModelProfile, budget: Budget = Budget()) -> RoutingDecision: ...


def over_budget(e: RouteEstimate, budget: Budget) -> str:
    """Why ``e`` does not fit ``budget`` ('' when it does)."""
    if budget.max_tokens is not None and e.total_tokens > budget.max_tokens:
        return (f"budget {budget.max_tokens:,} tokens < {e.route.value} estimate {e.total_tokens:,}: "
                f"{e.route.value} excluded")
    if budget.max_cost is not None and e.cost > budget.max_cost:
        return f"budget ${budget.max_cost:.4g} < {e.route.value} estimate ${e.cost:.4g}: {e.route.value} excluded"
    return ""


def choose(
    order: Sequence[Route],
    estimates: Mapping[Route, RouteEstimate],
    budget: Budget,
    *,
    with_fallbacks: bool = True,
) -> tuple[Route, tuple[Route, ...], list[str]]:
    """First feasible in-budget route of ``order`` (then any other LLM route), the rest as
    fallbacks, and the reasons for every route skipped before the chosen one."""
    seen: list[Route] = []
    for r in list(order) + [r for r in LLM_ROUTES if r not in order]:
        if r not in seen:
            seen.append(r)
    notes: list[str] = []
    ok: list[Route] = []
    for r in seen:
        e = estimates[r]
        why = f"{r.value} infeasible: {e.why_not}" if not e.feasible else over_budget(e, budget)
        if why:
            if not ok:
                notes.append(why)
        else:
            ok.append(r)
    if not ok:
        llm = [estimates[r] for r in LLM_ROUTES if estimates[r].feasible] or [estimates[r] for r in LLM_ROUTES]
        cheapest = min(llm, key=lambda e: (e.total_tokens, e.cost))
        raise BudgetExceeded(
            f"no route fits the budget (tokens {budget.max_tokens}, cost {budget.max_cost}); the cheapest is "
            f"{cheapest.route.value} at {cheapest.total_tokens:,} tokens / ${cheapest.cost:.4g}: raise the budget "
            "or use the extractive policy (no LLM)",
            budget_tokens=budget.max_tokens,
            budget_cost=budget.max_cost,
            cheapest_route=cheapest.route.value,
            cheapest_tokens=cheapest.total_tokens,
            cheapest_cost=cheapest.cost,
        )
    return ok[0], tuple(ok[1:]) if with_fallbacks else (), notes


def _decision(
    route: Route, reasons: list[str], features: RouteFeatures, estimates: tuple[RouteEstimate, ...],
    fallbacks: tuple[Route, ...], policy: str,
) -> RoutingDecision:
    return RoutingDecision(
        route=route,
        reasons=tuple(reasons),
        features=features.as_dict(),
        estimates=estimates,
        fallbacks=fallbacks,
        policy=policy,
    )


class _Base:
    name = "base"

    def __init__(self, settings: EstimateSettings = EstimateSettings()) -> None:
        self.settings = settings

    def _estimates(self, features: RouteFeatures, profile: ModelProfile) -> tuple[tuple[RouteEstimate, ...], dict[Route, RouteEstimate]]:
        est = estimates_for(features, profile, self.settings)
        return est, {e.route: e for e in est}


class RulesRouter(_Base):
    """Thresholds and rules in one readable table (``ctxroute.router.rules``), then the budget cut."""

    name = "rules"

    def __init__(self, table: RuleTable = DEFAULT_RULES, settings: EstimateSettings = EstimateSettings()) -> None:
        super().__init__(settings)
        self.table = table

    def route(self, features: RouteFeatures, profile: ModelProfile, budget: Budget = Budget()) -> RoutingDecision:
        est, by = self._estimates(features, profile)
        ctx = Ctx(features, by, self.table.thresholds, self.settings)
        rule = self.table.first_match(ctx)
        order = rule.pick(ctx)
        route, fallbacks, notes = choose(order, by, budget)
        reasons = [f"{rule.name}: {rule.reason(ctx)}", *notes]
        if route != order[0]:
            reasons.append(f"chose {route.value}, the next route in the rule's order that fits")
        return _decision(route, reasons, features, est, fallbacks, self.name)


class SelfRouteRouter(_Base):
    """Self-Route (Li et al. 2024): RAG first; the engine escalates on abstention or failed
    citation verification, to LC when the collection fits the window, else MR or HYBRID."""

    name = "self-route"

    def route(self, features: RouteFeatures, profile: ModelProfile, budget: Budget = Budget()) -> RoutingDecision:
        est, by = self._estimates(features, profile)
        if by[Route.LC].feasible:
            then: tuple[Route, ...] = (Route.LC, Route.HYBRID, Route.MR)
        elif features.qtype in ("aggregation", "counting"):
            then = (Route.MR, Route.HYBRID)
        else:
            then = (Route.HYBRID, Route.MR)
        route, fallbacks, notes = choose((Route.RAG, *then), by, budget)
        reasons = [
            "self-route: try rag first; the engine escalates on abstention or failed citation verification"
            + (f" to {fallbacks[0].value}" if fallbacks else ""),
            *notes,
        ]
        return _decision(route, reasons, features, est, fallbacks, self.name)


class LearnedRouter(_Base):
    """Picks the feasible in-budget route maximising p(correct) - lam * cost / cost_scale, where
    cost is the estimate's prompt tokens (``cost_unit`` tokens, as the eval layer fits them) or
    its USD cost. Routes the params do not model follow as fallbacks."""

    name = "learned"

    def __init__(self, params: LearnedParams, lam: float | None = None, settings: EstimateSettings = EstimateSettings()) -> None:
        super().__init__(settings)
        self.params = params
        self.lam = params.lam if lam is None else float(lam)

    def utilities(self, features: RouteFeatures, estimates: Mapping[Route, RouteEstimate]) -> dict[Route, tuple[float, float]]:
        """route -> (p(correct), utility)."""
        proba = self.params.predict_proba(features.vector())
        out: dict[Route, tuple[float, float]] = {}
        for r, p in proba.items():
            e = estimates[r]
            c = e.cost if self.params.cost_unit == "usd" else float(e.prompt_tokens)
            out[r] = (p, p - self.lam * c / self.params.cost_scale)
        return out

    def route(self, features: RouteFeatures, profile: ModelProfile, budget: Budget = Budget()) -> RoutingDecision:
        est, by = self._estimates(features, profile)
        util = self.utilities(features, by)
        order = sorted(util, key=lambda r: (-util[r][1], LLM_ROUTES.index(r) if r in LLM_ROUTES else 9))
        order = [r for r in order if r in LLM_ROUTES] or list(LLM_ROUTES)
        route, fallbacks, notes = choose(order, by, budget)
        p, u = util.get(route, (float("nan"), float("nan")))
        unit = "usd" if self.params.cost_unit == "usd" else "tokens"
        reasons = [
            f"learned: {route.value} has the best utility {u:.3f} = p(correct) {p:.2f} - "
            f"{self.lam:g} x cost in {unit} / {self.params.cost_scale:.4g}",
            "others: " + ", ".join(f"{r.value} p={util[r][0]:.2f} u={util[r][1]:.3f}" for r in order if r != route),
            *notes,
        ]
        return _decision(route, reasons, features, est, fallbacks, self.name)


class FixedRouter(_Base):
    """Always the same route (a baseline): no fallbacks, so the engine does not escalate.
    Still refuses a route over budget; an infeasible LC is kept but flagged in the reasons."""

    def __init__(self, route: Route, settings: EstimateSettings = EstimateSettings()) -> None:
        super().__init__(settings)
        self.fixed = Route(route)
        self.name = self.fixed.value

    def route(self, features: RouteFeatures, profile: ModelProfile, budget: Budget = Budget()) -> RoutingDecision:
        est, by = self._estimates(features, profile)
        e = by[self.fixed]
        why = over_budget(e, budget)
        if why:
            raise BudgetExceeded(
                f"fixed policy {self.fixed.value}: {why}; raise the budget or use --policy rules",
                route=self.fixed.value, estimate_tokens=e.total_tokens, estimate_cost=e.cost,
            )
        reasons = [f"fixed policy: always {self.fixed.value}"]
        if not e.feasible:
            reasons.append(f"warning: {self.fixed.value} infeasible: {e.why_not}; the pipeline may truncate or fail")
        return _decision(self.fixed, reasons, features, est, (), self.name)


def make_router(
    policy: str,
    *,
    params_path: Path | str | None = None,
    params: LearnedParams | None = None,
    settings: EstimateSettings = EstimateSettings(),
    load: Callable[[Path | str], LearnedParams] = LearnedParams.load,
) -> Router:
    """Router for a policy name: auto | cascade | rules | self-route | learned | rag | lc | mr | hybrid |
    extractive. ``learned`` and ``cascade`` use the parameters shipped in the package unless
    ``params``/``params_path`` are given."""
    key = policy.strip().lower().replace("_", "-")
    if key == "auto":
        key = AUTO_POLICY
    if key == "cascade":
        from ctxroute.router.cascade import CascadeRouter

        if params is None and params_path is not None:
            params = load(params_path)
        return CascadeRouter(params, settings=settings)
    if key == "rules":
        return RulesRouter(settings=settings)
    if key in ("self-route", "selfroute"):
        return SelfRouteRouter(settings=settings)
    if key == "learned":
        if params is None:
            if params_path is None:
                from ctxroute.router.cascade import packaged_params

                params = packaged_params("learned.json")
            else:
                params = load(params_path)
        return LearnedRouter(params, settings=settings)
    if key in {r.value for r in Route}:
        return FixedRouter(Route(key), settings=settings)
    raise InputError(f"unknown routing policy {policy!r}; choose one of: {', '.join(POLICIES)}", policy=policy)


def decide(
    question: str,
    *,
    stats: "CollectionStats",
    profile: ModelProfile,
    router: Router,
    typer: "QuestionTyper",
    probe: "ProbeSignals | None" = None,
    budget: Budget = Budget(),
    count_tokens: Callable[[str], int] | None = None,
    question_embedding: "np.ndarray | None" = None,
) -> RoutingDecision:
    """Type the question, build the features, route: the one call the engine and API need.
    ``question_embedding`` (from the typer's embedder) saves embedding the question twice."""
    from ctxroute.router.features import approx_tokens, build_features

    features = build_features(
        question, stats, profile, question_profile=typer.classify(question, embedding=question_embedding), probe=probe, budget=budget,
        count_tokens=count_tokens or approx_tokens,
    )
    return router.route(features, profile, budget)
