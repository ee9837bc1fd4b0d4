"""Predicted prompt tokens, completion tokens and cost of every candidate route.

The shapes follow the pipelines: RAG sends ``rag_context_tokens`` of retrieved passages;
LC sends the whole collection (only when it fits the usable window); HYBRID packs retrieved
passages up to the usable window; MR splits the collection into groups that fit the usable
window, one map call each, then one reduce call over the map answers; EXTRACTIVE calls no LLM.
"""
from __future__ import annotations

import math
from dataclasses import dataclass

from ctxroute.router.features import RouteFeatures
from ctxroute.types import ModelProfile, Route, RouteEstimate


def fmt_tokens(n: float) -> str:
    """41200 -> '41.2k', 950 -> '950'."""
    if n >= 1000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{int(n)}"


@dataclass(frozen=True)
class EstimateSettings:
    """Prompt shapes assumed by the estimates (match the pipelines' defaults)."""

    rag_context_tokens: int = 3000
    answer_tokens: int = 300
    map_overhead_tokens: int = 400
    prompt_overhead_tokens: int = 200  # instructions and formatting per call


def estimate_routes(
    features: RouteFeatures,
    profile: ModelProfile,
    *,
    rag_context_tokens: int = 3000,
    answer_tokens: int = 300,
    map_overhead_tokens: int = 400,
    prompt_overhead_tokens: int = 200,
) -> tuple[RouteEstimate, ...]:
    """Estimates for rag, lc, hybrid, mr and extractive, in that order."""
    f = features
    q = f.question_tokens + prompt_overhead_tokens
    usable, window = profile.usable_window, profile.context_window
    total = f.total_tokens
    out: list[RouteEstimate] = []

    def est(route: Route, prompt: int, completion: int, calls: int, why_not: str = "") -> RouteEstimate:
        return RouteEstimate(
            route=route,
            prompt_tokens=int(prompt),
            cost=round(profile.cost(prompt, completion), 8),
            feasible=not why_not,
            why_not=why_not,
            completion_tokens=int(completion),
            calls=calls,
        )

    # RAG: a fixed slice of retrieved text
    rag_prompt = min(total, rag_context_tokens) + q
    why = ""
    if rag_prompt + answer_tokens > window:
        why = f"rag prompt {fmt_tokens(rag_prompt)} tokens + answer > context window {fmt_tokens(window)}"
    out.append(est(Route.RAG, rag_prompt, answer_tokens, 1, why))

    # LC: the whole collection
    lc_prompt = total + q
    why = ""
    if total > usable:
        what = "doc" if f.n_docs <= 1 else f"collection ({f.n_docs} docs)"
        why = f"{what} {fmt_tokens(total)} tokens > usable window {fmt_tokens(usable)}"
    elif lc_prompt + answer_tokens > window:
        why = f"lc prompt {fmt_tokens(lc_prompt)} tokens + answer > context window {fmt_tokens(window)}"
    out.append(est(Route.LC, lc_prompt, answer_tokens, 1, why))

    # HYBRID: retrieved passages packed up to the usable window
    room = usable - q - answer_tokens
    hyb_context = min(total, max(rag_context_tokens, room))
    hyb_prompt = hyb_context + q
    why = ""
    if hyb_prompt + answer_tokens > window:
        why = f"hybrid prompt {fmt_tokens(hyb_prompt)} tokens > context window {fmt_tokens(window)}"
    out.append(est(Route.HYBRID, hyb_prompt, answer_tokens, 1, why))

    # MR: groups of the usable window, one map call each, then a reduce call
    capacity = usable - q - map_overhead_tokens - answer_tokens
    why = ""
    if capacity <= 0:
        why = f"usable window {fmt_tokens(usable)} leaves no room for a map chunk"
        groups = 1
    else:
        groups = max(1, math.ceil(total / capacity))
    map_prompt = total + groups * (q + map_overhead_tokens)
    reduce_prompt = groups * answer_tokens + q
    if not why and reduce_prompt + answer_tokens > window:
        why = f"reduce over {groups} map answers ({fmt_tokens(reduce_prompt)} tokens) > context window {fmt_tokens(window)}"
    calls = groups + 1
    out.append(est(Route.MR, map_prompt + reduce_prompt, calls * answer_tokens, calls, why))

    # EXTRACTIVE: sentences from the retrieved passages, no LLM call
    out.append(RouteEstimate(route=Route.EXTRACTIVE, prompt_tokens=0, cost=0.0, completion_tokens=0, calls=0))
    return tuple(out)


def estimates_for(features: RouteFeatures, profile: ModelProfile, settings: EstimateSettings) -> tuple[RouteEstimate, ...]:
    return estimate_routes(
        features,
        profile,
        rag_context_tokens=settings.rag_context_tokens,
        answer_tokens=settings.answer_tokens,
        map_overhead_tokens=settings.map_overhead_tokens,
        prompt_overhead_tokens=settings.prompt_overhead_tokens,
    )
