"""After a RAG answer: stop, or escalate to a richer route (the engine's step 5).

- All citations of the answer failed verification: always escalate (nothing in it is verified).
- A ``CascadeRouter`` (policy ``cascade``, what ``auto`` means): its fitted rule decides from the
  answer-side signals (refusal, citations, asked-for type, overlap with the retrieved text) and
  the pre-answer features; its reasons are added to the decision either way.
- Any other policy: escalate when the answer abstains (Self-Route).

The target is LC when the collection fits the usable window, else hybrid or map-reduce, never a
route the router marked infeasible or one already tried, and never past the token budget.
"""
from __future__ import annotations

from typing import Any

from ctxroute.pipelines.citations import VerifiedText
from ctxroute.pipelines.result import Corpus, StrategyResult
from ctxroute.router import CascadeRouter, RouteFeatures, answer_signals
from ctxroute.types import Budget, Route, RoutingDecision


def escalation_target(decision: RoutingDecision, corpus: Corpus, tried: list[Route], usable_window: int | None) -> Route | None:
    lc = next((e for e in decision.estimates if e.route == Route.LC), None)
    if lc is not None:
        fits = lc.feasible
    elif usable_window is not None:
        stats = getattr(corpus.collection, "stats", None)
        total = stats().total_tokens if callable(stats) else sum(s.n_tokens for d in corpus.doc_ids() for s in corpus.sentences(d))
        fits = total <= usable_window
    else:
        fits = False
    infeasible = {e.route for e in decision.estimates if not e.feasible}  # e.g. MR whose reduce cannot fit
    for r in ((Route.LC, Route.MR) if fits else (Route.MR, Route.HYBRID)):
        if r not in tried and r not in infeasible:
            return r
    return None


def over_budget(route: Route, decision: RoutingDecision, budget: Budget, spent: int) -> str:
    est = next((e for e in decision.estimates if e.route == route), None)
    if est is None:
        return ""
    if budget.max_tokens is not None and spent + est.total_tokens > budget.max_tokens:
        return (f"{route.value} needs ~{est.total_tokens:,} more tokens, {spent:,} already spent, "
                f"budget {budget.max_tokens:,}")
    return ""


def after_rag(
    router: Any,
    question: str,
    corpus: Corpus,
    decision: RoutingDecision,
    feats: RouteFeatures | None,
    result: StrategyResult,
    verified: VerifiedText,
    *,
    abstained: bool,
    all_failed: bool,
    tried: list[Route],
    budget: Budget,
    spent: int,
    usable_window: int | None,
) -> tuple[Route | None, str, tuple[str, ...]]:
    """(target or None, why / why not, reasons to add to the decision)."""
    extra: tuple[str, ...] = ()
    if isinstance(router, CascadeRouter) and feats is not None and not all_failed:
        context = [corpus.collection.text(h.chunk) for h in result.hits] if result.hits else None
        text = verified.text if not abstained else (result.abstain_reason or result.text or "NOT_FOUND")
        signals = answer_signals(
            question, text, context=context, n_citations=len(verified.citations), n_markers=verified.n_cited,
            supports=[c.supports for c in verified.citations], known_refusal=abstained,
        )
        esc = router.after_answer(feats, signals, decision, spent_tokens=spent, budget=budget)
        extra = esc.reasons
        target = esc.to if esc.escalate and esc.to not in tried else None
        if target is not None:
            return target, "cascade: " + esc.reasons[0].split(": ", 1)[-1], extra
        return None, ("RAG abstained; not escalated: " + esc.reasons[0]) if abstained else "", extra
    if not (abstained or all_failed):
        return None, "", extra
    nxt = escalation_target(decision, corpus, tried, usable_window)
    why = "RAG abstained" if abstained else f"all {verified.n_cited} RAG citations failed verification"
    over = over_budget(nxt, decision, budget, spent) if nxt else ""
    if nxt is not None and not over:
        return nxt, why, extra
    return None, f"{why}; not escalated: " + (over or "no other route left to try"), extra


__all__ = ["after_rag", "escalation_target", "over_budget"]
