"""Routing features: collection size against the model's window, question type, probe signals.

Everything here is pure: the caller computes collection statistics and runs the retrieval
probe, then passes the results in.
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from ctxroute.errors import InputError
from ctxroute.router.questions import QTYPES, QuestionProfile, QuestionType
from ctxroute.types import Budget, ModelProfile, ScoredChunk

SIZE_CLASSES: tuple[str, ...] = ("tiny", "small", "medium", "large", "frontier")


@dataclass(frozen=True)
class CollectionStats:
    """Size of a collection in tokens (counted with the model's tokenizer or an approximation)."""

    n_docs: int
    total_tokens: int
    doc_tokens: tuple[int, ...]
    n_passages: int = 0
    n_sections: int = 0
    passage_tokens: int = 256  # mean/target passage size

    def __post_init__(self) -> None:
        if self.n_docs < 0 or self.total_tokens < 0 or any(t < 0 for t in self.doc_tokens):
            raise InputError(f"CollectionStats counts must be >= 0, got {self}")


@dataclass(frozen=True)
class ProbeSignals:
    """How confident a cheap retrieval probe is about the question.

    ``margin``: relative gap between the 1st and 2nd score; ``entropy``: normalised entropy of
    the top-n scores (1 = flat, 0 = one hit dominates); ``spread``: fraction of the documents'
    span that the top hits cover. ``source`` says which score was used: ``dense`` cosine when
    at least two top hits carry one, else ``bm25``, else the hits' final score.
    """

    top_score: float
    margin: float
    entropy: float
    n_docs_in_top: int
    n_sections_in_top: int
    spread: float
    n_hits: int
    source: str = "score"


def probe_signals(
    hits: Sequence[ScoredChunk], top_n: int = 10, *, doc_chars: Mapping[str, int] | None = None
) -> ProbeSignals:
    """Signals from retrieval hits (best first). ``doc_chars`` gives each document's length in
    characters for ``spread``; without it the farthest hit end stands in (an overestimate)."""
    if top_n < 1:
        raise InputError(f"top_n must be >= 1, got {top_n}")
    top = list(hits[:top_n])
    if not top:
        return ProbeSignals(0.0, 0.0, 1.0, 0, 0, 0.0, 0, "none")
    # one score scale per probe: the dense cosines of the hits that have one (fused RRF gaps
    # say little about confidence), else BM25, else the hits' final scores
    raw, source = [float(h.score) for h in top], (top[0].retriever or "score")
    for component in ("dense", "bm25"):
        vals = [float(h.scores[component]) for h in top if component in h.scores]
        if len(vals) >= 2 or (len(vals) == len(top) == 1):
            raw, source = vals, component
            break
    scores = sorted(raw, reverse=True)
    s1 = scores[0]
    s2 = scores[1] if len(scores) > 1 else 0.0
    margin = (s1 - s2) / abs(s1) if s1 != 0 else 0.0
    # entropy of the scores shifted to the lowest of the top n: scale-free, so BM25, cosine
    # and fused scores all give 1 when flat and 0 when one hit stands out alone
    if len(scores) > 1:
        x = np.asarray(scores) - scores[-1]
        if x.sum() > 0:
            p = x / x.sum()
            nz = p[p > 0]
            entropy = float(-(nz * np.log(nz)).sum() / math.log(len(scores) - 1)) if len(scores) > 2 else 0.0
        else:
            entropy = 1.0
    else:
        entropy = 0.0
    docs = {h.chunk.doc_id for h in top}
    sections = {(h.chunk.doc_id, h.chunk.parent_id or h.chunk.id) for h in top}
    spans = []
    for d in sorted(docs):
        mine = [h.chunk for h in top if h.chunk.doc_id == d]
        lo, hi = min(c.start for c in mine), max(c.end for c in mine)
        length = (doc_chars or {}).get(d) or hi
        spans.append((hi - lo) / length if length > 0 else 0.0)
    spread = float(sum(spans) / len(spans))
    return ProbeSignals(
        top_score=round(s1, 6),
        margin=round(max(0.0, margin), 6),
        entropy=round(min(1.0, max(0.0, entropy)), 6),
        n_docs_in_top=len(docs),
        n_sections_in_top=len(sections),
        spread=round(min(1.0, spread), 6),
        n_hits=len(top),
        source=source,
    )


def approx_tokens(text: str) -> int:
    """About four characters a token: the default when no tokenizer is given."""
    return (len(text) + 3) // 4


@dataclass(frozen=True)
class RouteFeatures:
    """Everything a policy looks at. ``budget_*`` are -1 when unlimited; probe fields are 0 with
    ``has_probe`` 0 when no probe ran."""

    question_tokens: int
    total_tokens: int
    max_doc_tokens: int
    n_docs: int
    n_passages: int
    passage_tokens: int
    usable_window: int
    context_window: int
    fits_window: int  # 1 when the whole collection fits the usable window
    size_class: str
    qtype: str
    qtype_scores: Mapping[str, float]
    cues: tuple[str, ...] = ()
    has_probe: int = 0
    top_score: float = 0.0
    margin: float = 0.0
    entropy: float = 1.0
    n_docs_in_top: int = 0
    n_sections_in_top: int = 0
    spread: float = 0.0
    n_hits: int = 0
    probe_source: str = "none"
    budget_tokens: float = -1.0
    budget_cost: float = -1.0
    extra: Mapping[str, float] = field(default_factory=dict)

    def as_dict(self) -> dict[str, float | str]:
        """Flat mapping for RoutingDecision.features (JSON-safe: no NaN, no nested values)."""
        out: dict[str, float | str] = {}
        for k, v in asdict(self).items():
            if k == "qtype_scores":
                out.update({f"q_{t}": float(s) for t, s in sorted(v.items())})
            elif k == "cues":
                out["cues"] = ", ".join(v)
            elif k == "extra":
                out.update({str(a): float(b) for a, b in sorted(v.items())})
            elif isinstance(v, str):
                out[k] = v
            else:
                out[k] = float(v)
        return out

    def vector(self) -> np.ndarray:
        """Numeric vector in FEATURE_NAMES order (one-hot categoricals, log-scaled sizes)."""
        window = max(1, self.usable_window)
        base = [
            math.log1p(self.question_tokens),
            math.log1p(self.total_tokens),
            math.log1p(self.max_doc_tokens),
            math.log1p(self.n_docs),
            math.log2(max(1, self.total_tokens) / window),
            math.log1p(self.usable_window),
            float(self.fits_window),
            float(self.has_probe),
            float(self.top_score),
            float(self.margin),
            float(self.entropy),
            float(self.n_docs_in_top) / max(1, self.n_hits),
            float(self.n_sections_in_top) / max(1, self.n_hits),
            float(self.spread),
        ]
        size = [1.0 if self.size_class == s else 0.0 for s in SIZE_CLASSES]
        qt = [1.0 if self.qtype == t.value else 0.0 for t in QTYPES]
        qs = [float(self.qtype_scores.get(t.value, 0.0)) for t in QTYPES]
        return np.asarray(base + size + qt + qs, dtype=np.float64)


FEATURE_NAMES: tuple[str, ...] = (
    "log_question_tokens",
    "log_total_tokens",
    "log_max_doc_tokens",
    "log_n_docs",
    "log2_total_over_usable",
    "log_usable_window",
    "fits_window",
    "has_probe",
    "top_score",
    "margin",
    "entropy",
    "docs_in_top_frac",
    "sections_in_top_frac",
    "spread",
    *(f"size_{s}" for s in SIZE_CLASSES),
    *(f"qtype_{t.value}" for t in QTYPES),
    *(f"qscore_{t.value}" for t in QTYPES),
)


def build_features(
    question: str,
    stats: CollectionStats,
    profile: ModelProfile,
    *,
    question_profile: QuestionProfile,
    probe: ProbeSignals | None = None,
    budget: Budget = Budget(),
    count_tokens: Callable[[str], int] = approx_tokens,
) -> RouteFeatures:
    """Combine the pieces into one RouteFeatures record."""
    if not question.strip():
        raise InputError("question is empty; pass the question text to route")
    if profile.size_class not in SIZE_CLASSES:
        raise InputError(
            f"model profile {profile.name!r} has size_class {profile.size_class!r}; use one of {', '.join(SIZE_CLASSES)}"
        )
    if stats.total_tokens <= 0:
        raise InputError("the collection is empty (0 tokens); ingest documents before asking, e.g. `ctxroute ingest PATH`")
    max_doc = max(stats.doc_tokens) if stats.doc_tokens else stats.total_tokens
    p = probe
    return RouteFeatures(
        question_tokens=int(count_tokens(question)),
        total_tokens=stats.total_tokens,
        max_doc_tokens=max_doc,
        n_docs=stats.n_docs,
        n_passages=stats.n_passages,
        passage_tokens=stats.passage_tokens,
        usable_window=profile.usable_window,
        context_window=profile.context_window,
        fits_window=int(stats.total_tokens <= profile.usable_window),
        size_class=profile.size_class,
        qtype=question_profile.qtype.value,
        qtype_scores=dict(question_profile.scores),
        cues=question_profile.cues,
        has_probe=int(p is not None and p.n_hits > 0),
        top_score=p.top_score if p else 0.0,
        margin=p.margin if p else 0.0,
        entropy=p.entropy if p else 1.0,
        n_docs_in_top=p.n_docs_in_top if p else 0,
        n_sections_in_top=p.n_sections_in_top if p else 0,
        spread=p.spread if p else 0.0,
        n_hits=p.n_hits if p else 0,
        probe_source=p.source if p else "none",
        budget_tokens=float(budget.max_tokens) if budget.max_tokens is not None else -1.0,
        budget_cost=float(budget.max_cost) if budget.max_cost is not None else -1.0,
    )


def qtype_of(features: RouteFeatures) -> QuestionType:
    return QuestionType(features.qtype)


def stats_from_counts(doc_tokens: Sequence[int], **kw: Any) -> CollectionStats:
    """CollectionStats from per-document token counts."""
    docs = tuple(int(t) for t in doc_tokens)
    return CollectionStats(n_docs=len(docs), total_tokens=sum(docs), doc_tokens=docs, **kw)


def collection_signals(
    collection: Any, question: str, *, k: int = 10, retriever: str = "hybrid"
) -> tuple[CollectionStats, list[ScoredChunk], ProbeSignals]:
    """Stats, probe hits and probe signals from an already-loaded collection (anything with
    ``stats()`` returning the size fields and ``search(query, k, retriever)``). In-memory only."""
    s = collection.stats()
    stats = CollectionStats(
        n_docs=int(s.n_docs),
        total_tokens=int(s.total_tokens),
        doc_tokens=tuple(int(t) for t in s.doc_tokens),
        n_passages=int(getattr(s, "n_passages", 0)),
        n_sections=int(getattr(s, "n_sections", 0)),
        passage_tokens=int(getattr(s, "passage_tokens", 256)),
    )
    hits = list(collection.search(question, k=k, retriever=retriever)) if stats.n_passages or stats.n_docs else []
    return stats, hits, probe_signals(hits, top_n=k, doc_chars=getattr(s, "doc_chars", None))
