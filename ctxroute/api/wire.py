"""Library types -> the service's wire models (``api/models.py``): documents, routing
decisions, citations and answers, with JSON-safe numbers."""
from __future__ import annotations

import math
from typing import Any

from ctxroute.api import models as M
from ctxroute.types import Answer, Document, RoutingDecision


def _f(x: float) -> float:
    """A JSON-safe float: NaN and infinities (not valid JSON) become 0.0."""
    x = float(x)
    return x if math.isfinite(x) else 0.0


def _feature(v: object) -> float | str | None:
    if isinstance(v, str):
        return v
    x = float(v)  # type: ignore[arg-type]
    return x if math.isfinite(x) else None


def document_out(d: Document) -> M.DocumentOut:
    return M.DocumentOut(id=d.id, title=d.title, source=d.source, format=d.format, chars=len(d.text),
                         pages=len(d.page_starts) or None)


def decision_out(d: RoutingDecision) -> M.DecisionOut:
    return M.DecisionOut(
        route=d.route.value, reasons=list(d.reasons),
        features={k: _feature(v) for k, v in d.features.items()},
        estimates=[M.EstimateOut(route=e.route.value, prompt_tokens=e.prompt_tokens, cost=_f(e.cost),
                                 feasible=e.feasible, why_not=e.why_not) for e in d.estimates],
        fallbacks=[r.value for r in d.fallbacks], policy=d.policy,
    )


def citation_out(c: Any) -> M.CitationOut:
    return M.CitationOut(doc_id=c.doc_id, title=c.title, page=c.page, start=c.start, end=c.end, quote=c.quote,
                         supports=_f(c.supports), claim=c.claim, sentence_id=c.sentence_id)


def answer_out(a: Answer, version: str) -> M.QueryOut:
    return M.QueryOut(
        answer=a.text,
        citations=[citation_out(c) for c in a.citations],
        decision=decision_out(a.decision),
        route_taken=a.route_taken.value,
        usage=M.UsageOut(
            prompt_tokens=a.prompt_tokens, completion_tokens=a.completion_tokens, cost=_f(a.cost),
            calls=[M.CallOut(stage=u.stage, model=u.model, prompt_tokens=u.prompt_tokens,
                             completion_tokens=u.completion_tokens, latency_ms=_f(u.latency_ms), cost=_f(u.cost),
                             cached=u.cached) for u in a.usage],
        ),
        latency_ms={k: _f(v) for k, v in a.latency_ms.items()},
        warnings=list(a.warnings), abstained=a.abstained, abstain_reason=a.abstain_reason,
        fallbacks_taken=list(a.fallbacks_taken), collection_version=version,
    )


__all__ = ["answer_out", "citation_out", "decision_out", "document_out"]
