"""The rules policy as one readable table: thresholds, then rules tried top to bottom.

Grounding:
- LaRA (Li et al. 2025, arXiv 2502.09977): long context beats RAG at ~32k for strong
  models, RAG wins at 128k; weak/small models gain most from RAG; RAG is best at spotting
  unanswerable questions; LC is best at comparison and reasoning for strong models.
- Self-Route (Li et al. 2024): try RAG first and escalate when it cannot answer.
- LLM×MapReduce / Chain-of-Agents: questions that need the whole text, when the text
  exceeds the window, go to map-reduce.
Replayed on LaRA's recorded answers (11 LLMs x 2,326 questions, 30,229 pairs; RAG vs LC, see
``ctxroute.eval.replay``), LaRA's pattern is per question type: LC wins on comparison and
reasoning at both lengths and every model size, RAG wins on unanswerable questions, and the two
tie on lookups (so RAG, 20x cheaper). A rule "strong model and the collection fits: LC" was
tried and dropped: same accuracy, 26% more tokens.

Each rule names the route it picks, the fallback order after it, and a reason template
filled from the features (``{total}``, ``{usable}``, ``{qtype}``, ``{cue}``, ...).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Mapping

from ctxroute.router.estimates import EstimateSettings, compress_label, fmt_tokens
from ctxroute.router.features import RouteFeatures
from ctxroute.types import Route, RouteEstimate

R = Route


@dataclass(frozen=True)
class Thresholds:
    just_send_factor: float = 2.0  # LC when the collection <= factor x the RAG context
    # Probe thresholds, calibrated with benchmarks/calibrate_probe.py on LaRA 32k documents
    # (~1,000-character passages, top-10 probe; "hit" = top-1 passage in the question's gold slice).
    # Dense MiniLM probe, 30 documents, 128 location + 107 unanswerable (hallu) questions:
    # - margin predicts a hit (ROC AUC 0.62): 19/22 hits at margin >= 0.15, 64/106 below;
    # - the top cosine separates answerable from unanswerable (AUC 0.77): below 0.50 fall
    #   33/107 unanswerable and 7/128 answerable questions;
    # - entropy carried no signal (AUC 0.50), so it is off by default (None).
    # BM25 probe (--probe bm25, all 64 LaRA 32k documents, 276 location questions): margin
    # AUC 0.67; hit rate 87/95 at margin >= 0.20 and 52/53 at >= 0.30, against 126/181 below.
    confident_margin: float = 0.15  # probe: relative gap 1st vs 2nd score (dense cosine, others)
    confident_margin_bm25: float = 0.25  # the same for a BM25-only probe (its gaps are wider)
    confident_entropy: float | None = None  # probe: normalised entropy of the top-n scores
    unanswerable_dense_top: float = 0.50  # probe (dense cosine only): nothing close in the text
    lc_sizes: tuple[str, ...] = ("medium", "large", "frontier")  # LC for complex questions


@dataclass(frozen=True)
class Ctx:
    """What a rule condition sees."""

    f: RouteFeatures
    est: Mapping[Route, RouteEstimate]
    t: Thresholds
    s: EstimateSettings

    @property
    def lc_ok(self) -> bool:
        return self.est[R.LC].feasible

    @property
    def margin_threshold(self) -> float:
        return self.t.confident_margin_bm25 if self.f.probe_source == "bm25" else self.t.confident_margin

    @property
    def confident(self) -> bool:
        f = self.f
        by_entropy = self.t.confident_entropy is not None and f.entropy <= self.t.confident_entropy
        return bool(f.has_probe) and (f.margin >= self.margin_threshold or by_entropy)

    @property
    def unsure(self) -> bool:
        return bool(self.f.has_probe) and not self.confident

    @property
    def weak_probe(self) -> bool:
        """A lookup whose best passage is far from it (calibrated on lookups only: questions
        spanning several parts naturally score lower against any single passage)."""
        f = self.f
        return (bool(f.has_probe) and f.qtype == "lookup" and f.probe_source == "dense"
                and f.top_score < self.t.unanswerable_dense_top)

    def fields(self) -> dict[str, str]:
        f = self.f
        qtype = f.qtype.replace("_", "-")
        return {
            "total": fmt_tokens(f.total_tokens),
            "usable": fmt_tokens(f.usable_window),
            "limit": fmt_tokens(self.t.just_send_factor * self.s.rag_context_tokens),
            "qtype": qtype,
            "a_qtype": ("an " if qtype[0] in "aeiou" else "a ") + qtype,
            "cue": f"cue: '{f.cues[0]}'" if f.cues else "no cue, by prototype similarity",
            "margin": f"{f.margin:.2f}",
            "entropy": f"{f.entropy:.2f}",
            "top": f"{f.top_score:.3f}",
            "size": f.size_class,
            "n_docs": str(f.n_docs),
            "conf_margin": f"{self.margin_threshold:.2f}",
            "weak_top": f"{self.t.unanswerable_dense_top:.2f}",
        }


WHOLE_TEXT = ("aggregation", "counting")
COMPLEX = ("comparison", "multi_hop", "aggregation", "counting")
COMPRESSIBLE = ("comparison", "multi_hop")  # questions that need a few distant parts, not every part


def _over_budget(c: Ctx, route: Route) -> bool:
    b = c.f.budget_tokens
    return b >= 0 and c.est[route].total_tokens > b


def _compressed_fits(c: Ctx) -> bool:
    """The full text does not fit (usable window or token budget) while compressed-lc does."""
    comp = c.est.get(R.COMPRESSED)
    if comp is None or not comp.feasible or _over_budget(c, R.COMPRESSED):
        return False
    return not c.lc_ok or _over_budget(c, R.LC)


def _compressed_reason(c: Ctx) -> str:
    comp = c.est[R.COMPRESSED]
    why = (_tpl("the full text {total} tokens > usable window {usable}")(c) if not c.lc_ok else
           f"lc ({fmt_tokens(c.est[R.LC].total_tokens)} tokens) > budget {fmt_tokens(c.f.budget_tokens)}")
    return (_tpl("question asks for {a_qtype} ({cue}); ")(c) + why
            + f"; compressed {'at' if c.s.compress_ratio is not None else 'to'} "
            f"{compress_label(c.s.compress_ratio, c.s.compress_max_tokens)} it is "
            f"~{fmt_tokens(comp.prompt_tokens)} prompt tokens and fits: "
            f"compressed-lc (the question's sentences of every part, in document order) for a {c.f.size_class} model "
            "(LaRA: LC is best at comparison and reasoning for strong models)")


def _hybrid_fill(c: Ctx) -> str:
    """What hybrid puts in its room, by ``EstimateSettings.hybrid_fill``."""
    if c.s.hybrid_fill == "compressed":
        return (f"hybrid fills the usable window (~{fmt_tokens(c.est[R.HYBRID].prompt_tokens)} prompt tokens) with "
                "compressed text (the question's sentences of every document, in document order)")
    return "hybrid packs retrieved passages up to the usable window"


@dataclass(frozen=True)
class Rule:
    """``when`` decides whether the rule fires; ``pick`` gives the route then the fallback order."""

    name: str
    when: Callable[[Ctx], bool]
    pick: Callable[[Ctx], tuple[Route, ...]]
    reason: Callable[[Ctx], str]


def _tpl(template: str) -> Callable[[Ctx], str]:
    return lambda c: template.format(**c.fields())


DEFAULT_RULE_LIST: tuple[Rule, ...] = (
    Rule(
        "small-collection",
        lambda c: c.lc_ok and c.f.total_tokens <= c.t.just_send_factor * c.s.rag_context_tokens,
        lambda c: (R.LC, R.RAG, R.HYBRID),
        _tpl("collection {total} tokens <= just-send limit {limit}: send it all (lc)"),
    ),
    Rule(
        "whole-text-beyond-window",
        lambda c: c.f.qtype in WHOLE_TEXT and not c.f.fits_window,
        lambda c: (R.MR, R.HYBRID, R.RAG),
        _tpl("question needs the whole text ({qtype}, {cue}) and the collection {total} tokens > "
             "usable window {usable}: map-reduce"),
    ),
    Rule(
        "likely-unanswerable",
        lambda c: c.f.qtype == "unanswerable" or c.weak_probe,
        lambda c: (R.RAG, R.LC, R.HYBRID, R.MR) if c.lc_ok else (R.RAG, R.HYBRID, R.MR),
        lambda c: (
            _tpl("question is likely not answerable from the text ({cue}); rag is best at spotting that (LaRA)")(c)
            if c.f.qtype == "unanswerable"
            else _tpl("retrieval found nothing close (top dense score {top} < {weak_top}): likely unanswerable, "
                      "rag is best at spotting that (LaRA)")(c)
        ),
    ),
    Rule(
        "confident-lookup",
        lambda c: c.f.qtype == "lookup" and c.confident,
        lambda c: (R.RAG, R.LC, R.HYBRID, R.MR) if c.lc_ok else (R.RAG, R.HYBRID, R.MR),
        _tpl("lookup question and retrieval confident: margin {margin} >= {conf_margin}: rag"),
    ),
    Rule(
        "compressed-fits",
        lambda c: c.f.qtype in COMPRESSIBLE and c.f.size_class in c.t.lc_sizes and _compressed_fits(c),
        lambda c: (R.COMPRESSED, R.HYBRID, R.RAG, R.MR),
        _compressed_reason,
    ),
    Rule(
        "complex-fits-window",
        lambda c: c.f.qtype in COMPLEX and c.lc_ok,
        lambda c: (R.LC, R.HYBRID, R.RAG, R.MR) if c.f.size_class in c.t.lc_sizes else (R.HYBRID, R.RAG, R.LC, R.MR),
        lambda c: _tpl("question asks for {a_qtype} ({cue}) and the collection {total} tokens fits the usable "
                       "window {usable}: ")(c)
        + (f"lc for a {c.f.size_class} model (LaRA: LC is best at comparison and reasoning for strong models)"
           if c.f.size_class in c.t.lc_sizes
           else f"hybrid for a {c.f.size_class} model (LaRA: small models gain most from retrieval)"
           + ("; " + _hybrid_fill(c) if c.s.hybrid_fill == "compressed" else "")),
    ),
    Rule(
        "beyond-window",
        lambda c: not c.f.fits_window,
        lambda c: (R.HYBRID, R.RAG, R.MR) if c.f.qtype in COMPLEX else (R.RAG, R.HYBRID, R.MR),
        lambda c: _tpl("collection {total} tokens > usable window {usable}: ")(c)
        + (_tpl("{a_qtype} question ({cue}): ")(c) + _hybrid_fill(c)
           + " (LaRA: LC beats RAG on comparison and reasoning even at 128k)"
           if c.f.qtype in COMPLEX
           else "rag (LaRA: RAG matches or beats LC on lookups beyond the window)"),
    ),
    Rule(
        "default",
        lambda c: True,
        lambda c: (R.RAG, R.HYBRID, R.LC, R.MR),
        _tpl("no stronger signal ({qtype} question, {size} model): rag, the cheapest LLM route"),
    ),
)


@dataclass(frozen=True)
class RuleTable:
    thresholds: Thresholds = Thresholds()
    rules: tuple[Rule, ...] = DEFAULT_RULE_LIST

    def first_match(self, ctx: Ctx) -> Rule:
        for rule in self.rules:
            if rule.when(ctx):
                return rule
        return self.rules[-1]


DEFAULT_RULES = RuleTable()
