"""Predicted prompt tokens, completion tokens and cost of every candidate route.

The shapes follow the pipelines: RAG sends ``rag_context_tokens`` of retrieved passages;
LC sends the whole collection (only when it fits the usable window); COMPRESSED (compressed-lc)
sends ``compress_ratio`` x the collection (whole sentences chosen by the compressor, ids and
omission markers included), feasible when that fits the usable window; HYBRID packs retrieved
passages up to the usable window; MR splits the collection into groups that fit the usable
window, one map call each, then (collapse calls when the notes do not fit one prompt and) one
reduce call over the map notes; EXTRACTIVE calls no LLM.

The map-reduce grouping arithmetic lives here, as pure functions, so that the strategy
(``ctxroute.pipelines.map_reduce``) and the estimate use the same numbers: the strategy groups
its real passages with :func:`greedy_groups` under :func:`map_group_tokens`; the estimate runs
the same two functions over passages of the collection's mean size.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Iterable, Sequence

from ctxroute.router.features import RouteFeatures
from ctxroute.types import ModelProfile, Route, RouteEstimate


def fmt_tokens(n: float) -> str:
    """41200 -> '41.2k', 950 -> '950'."""
    if n >= 1000:
        return f"{n / 1000:.1f}k".replace(".0k", "k")
    return f"{int(n)}"


# a packed map prompt is longer than its passages' own tokens: every sentence gets an id line
# ("\n[S12] ", about 4 tokens with cl100k_base/o200k_base) and every document in a group a header
ID_TOKENS_PER_SENTENCE = 4
COMPRESS_RATIO = 0.35  # compressed-lc's default share of the scope's tokens (CompressConfig.ratio)
DOC_HEADER_TOKENS = 20
# the estimate knows neither sentence counts nor the whitespace between sentences (counted in a
# collection's tokens, dropped by packing): it assumes one id per this many collection tokens,
# i.e. packed = 1.2 x collection tokens (measured 1.16 on SEC 10-Q filings extracted from PDF,
# 1.26 on the synthetic reports, whose sentences are shorter)
MEAN_SENTENCE_TOKENS = 20
PACK_SLACK = 1.01  # the strategy sizes groups this much below the room (tokens counted piecewise)
# the map prompt's fixed part (system prompt, question frame, labels) besides the question,
# which the frame repeats twice: 147 + 19 tokens with ctxroute's MAP_SYSTEM prompt (cl100k_base)
MAP_PROMPT_TOKENS = 170
REDUCE_PROMPT_TOKENS = 175  # the reduce prompt's fixed part, question excluded
# an informative map note as the reduce prompt renders it (facts with ids, partial answer,
# rationale, the cited sentences' quotes), as a share of the map answer's token cap: ~130 tokens
# for 300-token answers in the scripted measurement (an assumption about real models' notes)
NOTE_SHARE = 0.5
GROUP_SLACK_TOKENS = 120  # room the strategy keeps per map call for labels and rounding


def map_group_tokens(usable_window: int, overhead_tokens: int, map_max_tokens: int, notes_tokens: int = 0) -> int:
    """Packed tokens (passages plus sentence ids) per map group: what is left of the usable window
    after the prompt's fixed part (``overhead_tokens``), the answer and (chain mode) the previous
    worker's notes, less :data:`PACK_SLACK`; at least 200."""
    room = usable_window - overhead_tokens - map_max_tokens - notes_tokens
    return max(200, int(room / PACK_SLACK))


def greedy_groups(unit_tokens: Iterable[int], group_tokens: int) -> list[int]:
    """Sizes (number of units) of the groups that units of ``unit_tokens`` tokens, in order, fall
    into when a group is closed as soon as the next unit would take it over ``group_tokens`` (a
    unit larger than that gets a group of its own)."""
    sizes: list[int] = []
    used = 0
    for n in unit_tokens:
        if sizes and sizes[-1] and used + n > group_tokens:
            sizes.append(0)
            used = 0
        if not sizes:
            sizes.append(0)
        sizes[-1] += 1
        used += n
    return [k for k in sizes if k]


def packed_tokens(text_tokens: int, n_sentences: int) -> int:
    """Tokens a passage takes in a map prompt: its text plus one id per sentence."""
    return int(text_tokens) + ID_TOKENS_PER_SENTENCE * int(n_sentences)


def passage_units(doc_tokens: Sequence[int], passage_tokens: int) -> list[int]:
    """Each document's tokens cut into passages of ``passage_tokens`` (the last one shorter),
    as packed tokens with sentences of :data:`MEAN_SENTENCE_TOKENS`: the stand-in for real
    passages when only sizes are known."""
    size = max(1, int(passage_tokens))
    out: list[int] = []
    for t in doc_tokens:
        whole, rest = divmod(int(t), size)
        for n in [size] * whole + ([rest] if rest else []):
            out.append(int(n + ID_TOKENS_PER_SENTENCE * n / MEAN_SENTENCE_TOKENS))
    return out


@dataclass(frozen=True)
class MapReducePlan:
    """Calls and prompt tokens a map-reduce run is expected to make."""

    groups: int
    map_prompt_tokens: int
    collapse_calls: int
    collapse_prompt_tokens: int
    reduce_prompt_tokens: int

    @property
    def calls(self) -> int:
        return self.groups + self.collapse_calls + 1

    @property
    def prompt_tokens(self) -> int:
        return self.map_prompt_tokens + self.collapse_prompt_tokens + self.reduce_prompt_tokens


def plan_map_reduce(
    doc_tokens: Sequence[int],
    question_tokens: int,
    usable_window: int,
    *,
    passage_tokens: int = 256,
    map_max_tokens: int = 300,
    note_tokens: int = 300,
    map_prompt_tokens: int = MAP_PROMPT_TOKENS,
) -> MapReducePlan:
    """The strategy's grouping replayed on sizes: groups of :func:`map_group_tokens` over
    passages of ``passage_tokens`` (:func:`passage_units`), one map call per group, collapse
    calls while the notes (``note_tokens`` each) exceed what one reduce prompt holds, one reduce."""
    fixed = map_prompt_tokens + 2 * question_tokens
    gtok = map_group_tokens(usable_window, fixed + GROUP_SLACK_TOKENS, map_max_tokens)
    units = passage_units(doc_tokens, passage_tokens)
    groups = max(1, len(greedy_groups(units, gtok)))
    map_prompt = sum(units) + groups * fixed + DOC_HEADER_TOKENS * (groups + len(doc_tokens) - 1)
    reduce_fixed = REDUCE_PROMPT_TOKENS + 2 * question_tokens
    budget = max(note_tokens, usable_window - reduce_fixed - map_max_tokens - 100)
    notes, collapse_calls, collapse_prompt = groups, 0, 0
    for _ in range(3):  # the strategy's max_collapse_rounds
        if notes * note_tokens <= budget or notes == 1:
            break
        per_call = max(2, budget // max(1, note_tokens))
        calls = math.ceil(notes / per_call)
        collapse_calls += calls
        collapse_prompt += notes * note_tokens + calls * reduce_fixed
        notes = calls
    reduce_prompt = min(notes * note_tokens, budget) + reduce_fixed
    return MapReducePlan(groups, map_prompt, collapse_calls, collapse_prompt, reduce_prompt)


@dataclass(frozen=True)
class EstimateSettings:
    """Prompt shapes assumed by the estimates (match the pipelines' defaults)."""

    rag_context_tokens: int = 3000
    answer_tokens: int = 300
    map_overhead_tokens: int = MAP_PROMPT_TOKENS  # fixed part of a map prompt besides the question
    prompt_overhead_tokens: int = 200  # instructions and formatting per call
    compress_ratio: float | None = COMPRESS_RATIO  # compressed-lc keeps this share of the collection's tokens ...
    compress_max_tokens: int | None = None  # ... or at most this many (the smaller wins; CompressConfig's budget)
    hybrid_fill: str = "passages"  # HybridConfig.fill: "passages" or "compressed" (the room filled by the compressor)


def compress_budget(total: int, ratio: float | None, max_tokens: int | None) -> int:
    """The compressor's token budget over ``total`` tokens (``CompressConfig.budget`` calls it):
    ``ratio`` x ``total`` or ``max_tokens``, the smaller when both are set (neither: the default
    ratio), at least 1."""
    if ratio is None and max_tokens is None:
        ratio = COMPRESS_RATIO
    caps = [int(float(ratio) * total)] if ratio is not None else []
    if max_tokens is not None:
        caps.append(int(max_tokens))
    return max(1, min(caps))


def compress_label(ratio: float | None, max_tokens: int | None) -> str:
    """The compressor's budget in words, for reasons: "ratio 0.35", "at most 8k tokens", or both."""
    parts = ([f"ratio {ratio:g}"] if ratio is not None else []) + (
        [f"at most {fmt_tokens(max_tokens)} tokens"] if max_tokens is not None else [])
    return ", ".join(parts) or f"ratio {COMPRESS_RATIO:g}"


def estimate_routes(
    features: RouteFeatures,
    profile: ModelProfile,
    *,
    rag_context_tokens: int = 3000,
    answer_tokens: int = 300,
    map_overhead_tokens: int = MAP_PROMPT_TOKENS,
    prompt_overhead_tokens: int = 200,
    compress_ratio: float | None = COMPRESS_RATIO,
    hybrid_fill: str = "passages",
    compress_max_tokens: int | None = None,
) -> tuple[RouteEstimate, ...]:
    """Estimates for rag, lc, hybrid, mr, extractive and compressed-lc, in that order."""
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

    # HYBRID: retrieved passages packed up to the usable window, or (hybrid_fill="compressed") the
    # compressor's sentences of every document up to the same room (ids and markers inside it)
    room = usable - q - answer_tokens
    hyb_context = min(total, max(rag_context_tokens, room) if hybrid_fill == "passages" else max(1, room))
    hyb_prompt = hyb_context + q
    why = ""
    if hyb_prompt + answer_tokens > window:
        why = f"hybrid prompt {fmt_tokens(hyb_prompt)} tokens > context window {fmt_tokens(window)}"
    out.append(est(Route.HYBRID, hyb_prompt, answer_tokens, 1, why))

    # MR: the strategy's grouping (plan_map_reduce), one map call per group, collapse, reduce
    mean_passage = round(total / f.n_passages) if f.n_passages else f.passage_tokens
    plan = plan_map_reduce((total,), f.question_tokens, usable, passage_tokens=mean_passage or 256,
                           map_max_tokens=answer_tokens, note_tokens=max(1, int(answer_tokens * NOTE_SHARE)),
                           map_prompt_tokens=map_overhead_tokens)
    why = ""
    if usable - map_overhead_tokens - 2 * f.question_tokens - answer_tokens < 200:
        why = f"usable window {fmt_tokens(usable)} leaves no room for a map chunk"
    elif plan.reduce_prompt_tokens + answer_tokens > window:
        why = (f"reduce over {plan.groups} map answers ({fmt_tokens(plan.reduce_prompt_tokens)} tokens) > "
               f"context window {fmt_tokens(window)}")
    out.append(est(Route.MR, plan.prompt_tokens, plan.calls * answer_tokens, plan.calls, why))

    # EXTRACTIVE: sentences from the retrieved passages, no LLM call
    out.append(RouteEstimate(route=Route.EXTRACTIVE, prompt_tokens=0, cost=0.0, completion_tokens=0, calls=0))

    # COMPRESSED: the compressor's budget, ratio x the collection and/or an absolute cap (ids and markers inside it)
    comp_prompt = compress_budget(total, compress_ratio, compress_max_tokens) + q
    why = ""
    if comp_prompt + answer_tokens > usable:
        why = (f"compressed ({compress_label(compress_ratio, compress_max_tokens)}) {fmt_tokens(comp_prompt)} tokens "
               f"+ answer > usable window {fmt_tokens(usable)}")
    out.append(est(Route.COMPRESSED, comp_prompt, answer_tokens, 1, why))
    return tuple(out)


def estimates_for(features: RouteFeatures, profile: ModelProfile, settings: EstimateSettings) -> tuple[RouteEstimate, ...]:
    return estimate_routes(
        features,
        profile,
        rag_context_tokens=settings.rag_context_tokens,
        answer_tokens=settings.answer_tokens,
        map_overhead_tokens=settings.map_overhead_tokens,
        prompt_overhead_tokens=settings.prompt_overhead_tokens,
        compress_ratio=settings.compress_ratio,
        hybrid_fill=settings.hybrid_fill,
        compress_max_tokens=settings.compress_max_tokens,
    )
