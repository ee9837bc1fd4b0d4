"""Builders shared by the router tests."""
from __future__ import annotations

from ctxroute.router import CollectionStats, ProbeSignals, QuestionTyper, RouteFeatures, build_features
from ctxroute.types import Budget, ModelProfile

TYPER = QuestionTyper()

PROFILES = {
    "frontier": ModelProfile("frontier-x", 128_000, 64_000, 0.0025, 0.01, size_class="frontier"),
    "large": ModelProfile("large-x", 131_072, 32_768, 0.0012, 0.0012, size_class="large"),
    "small": ModelProfile("small-x", 32_768, 16_384, 0.0003, 0.0003, size_class="small"),
    "tiny": ModelProfile("tiny-x", 8_192, 6_000, size_class="tiny"),
}

CONFIDENT = ProbeSignals(top_score=0.71, margin=0.31, entropy=0.4, n_docs_in_top=1, n_sections_in_top=2,
                         spread=0.1, n_hits=10, source="dense")
UNSURE = ProbeSignals(top_score=0.62, margin=0.02, entropy=0.95, n_docs_in_top=1, n_sections_in_top=9,
                      spread=0.8, n_hits=10, source="dense")
EMPTY = ProbeSignals(top_score=0.08, margin=0.01, entropy=0.97, n_docs_in_top=1, n_sections_in_top=8,
                     spread=0.7, n_hits=10, source="dense")


def features(question: str, tokens: int | tuple[int, ...], size: str, *, probe: ProbeSignals | None = None,
             budget: Budget = Budget()) -> tuple[RouteFeatures, ModelProfile]:
    docs = (tokens,) if isinstance(tokens, int) else tokens
    stats = CollectionStats(n_docs=len(docs), total_tokens=sum(docs), doc_tokens=docs)
    profile = PROFILES[size]
    f = build_features(question, stats, profile, question_profile=TYPER.classify(question), probe=probe, budget=budget)
    return f, profile
