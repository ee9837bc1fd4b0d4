"""Per-question document scope: ``Engine.answer(..., docs=[...])``."""
from __future__ import annotations

import re

import pytest

from ctxroute.errors import DocumentNotFound, InputError
from ctxroute.pipelines.engine import Engine, EngineConfig
from ctxroute.pipelines.llm.base import LLMRequest
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.pipelines.rag import RAGConfig
from ctxroute.pipelines.result import ScopedCollection
from ctxroute.types import Route
from tests.pipelines.test_strategies import collection, small_profile, store  # noqa: F401  (fixtures)

SMALL = EngineConfig.with_answer_tokens(100, rag=RAGConfig(context_tokens=500))
RAIN_Q = "How much rainfall reached the coastal station, and what was the Northern operating margin?"


def ids(coll) -> tuple[str, str]:  # type: ignore[no-untyped-def]
    """(report id, field-notes id)."""
    by_title = {d.title: d.id for d in coll.documents()}
    return by_title["Lumen Works annual report"], by_title["Field notes"]


def test_collection_search_filters_to_doc_ids(collection) -> None:  # noqa: F811
    report, notes = ids(collection)
    unscoped = collection.search(RAIN_Q, k=5)
    assert {h.chunk.doc_id for h in unscoped} == {report, notes}
    for scope in (report, notes):
        for retriever in ("bm25", "dense", "graph", "hybrid"):
            hits = collection.search(RAIN_Q, k=5, retriever=retriever, doc_ids=[scope])
            assert hits and {h.chunk.doc_id for h in hits} == {scope}
    assert len(collection.search(RAIN_Q, k=6, retriever="dense", doc_ids=[report])) == 6  # over-fetches to fill k
    with pytest.raises(DocumentNotFound, match="nope"):
        collection.search(RAIN_Q, k=5, doc_ids=["nope"])


async def test_extractive_hits_and_citations_only_from_scoped_doc(store) -> None:  # noqa: F811
    engine = Engine(store, None)
    report, notes = ids(engine.collection("demo"))
    whole = await engine.answer(RAIN_Q, "demo")
    assert len({c.doc_id for c in whole.citations}) == 1  # unscoped: one document wins...
    for scope in (report, notes):
        answer = await engine.answer(RAIN_Q, "demo", docs=[scope])
        assert answer.citations and {c.doc_id for c in answer.citations} == {scope}  # ...scoped: each answers


@pytest.mark.parametrize("route", ["rag", "lc", "hybrid", "mr"])
async def test_llm_routes_see_only_scoped_doc(store, route) -> None:  # noqa: F811
    prompts: list[str] = []

    def reply(request: LLMRequest) -> str:
        user = request.messages[-1].content
        prompts.append(user)
        if "JSON" in request.messages[0].content:  # map worker
            m = re.search(r"\[(S\d+)\] [^\n]*812 millimetres", user)
            if not m:
                return "NO_INFORMATION"
            return '{"facts": [{"text": "812 mm", "sentences": ["%s"]}], "answer": "812 mm", "confidence": 4}' % m.group(1)
        m = re.search(r"\[(S\d+)\] [^\n]*812 millimetres", user)
        return f"Rainfall reached 812 millimetres at the coastal station [{m.group(1) if m else 'S1'}]."

    engine = Engine(store, ScriptedLLM(rules=[(".", reply)]))
    report, notes = ids(engine.collection("demo"))
    answer = await engine.answer(RAIN_Q, "demo", route=route, docs=[notes])
    assert answer.route_taken == Route(route)
    assert prompts and not any("12.4%" in p or "office" in p for p in prompts)
    assert answer.citations and {c.doc_id for c in answer.citations} == {notes}


async def test_router_stats_shrink_to_scope_and_lc_becomes_feasible(store) -> None:  # noqa: F811
    engine = Engine(store, ScriptedLLM(default="NOT_FOUND: x", profile=small_profile(1500)), config=SMALL)
    coll = engine.collection("demo")
    report, notes = ids(coll)
    whole = await engine.decide(RAIN_Q, "demo")
    scoped = await engine.decide(RAIN_Q, "demo", docs=[notes])
    assert whole.features["n_docs"] == 2 and scoped.features["n_docs"] == 1
    assert scoped.features["total_tokens"] < 200 < whole.features["total_tokens"]
    lc = {d: next(e for e in dec.estimates if e.route == Route.LC) for d, dec in (("whole", whole), ("scoped", scoped))}
    assert not lc["whole"].feasible and lc["scoped"].feasible
    assert whole.route != Route.LC and scoped.route == Route.LC
    s = ScopedCollection(coll, [notes]).stats()
    assert s.n_docs == 1 and s.doc_ids == (notes,) and s.total_tokens == coll.stats().doc_tokens[1]


async def test_unknown_doc_ids_raise_document_not_found_naming_them(store) -> None:  # noqa: F811
    engine = Engine(store, None)
    report, _ = ids(engine.collection("demo"))
    with pytest.raises(DocumentNotFound, match="'missing-1', 'missing-2'") as exc:
        await engine.answer(RAIN_Q, "demo", docs=[report, "missing-1", "missing-2"])
    assert exc.value.fields["doc_ids"] == ("missing-1", "missing-2")
    with pytest.raises(DocumentNotFound, match="ghost"):
        await engine.decide(RAIN_Q, "demo", docs=["ghost"])
    with pytest.raises(InputError, match="docs is empty"):
        await engine.answer(RAIN_Q, "demo", docs=[])


async def test_docs_none_is_unchanged(store) -> None:  # noqa: F811
    engine = Engine(store, ScriptedLLM(default="NOT_FOUND: x", profile=small_profile(1500)), config=SMALL)
    a = await engine.decide(RAIN_Q, "demo")
    b = await engine.decide(RAIN_Q, "demo", docs=None)
    assert (a.route, a.reasons, dict(a.features), a.estimates) == (b.route, b.reasons, dict(b.features), b.estimates)
    ex = Engine(store, None)
    x, y = await ex.answer(RAIN_Q, "demo"), await ex.answer(RAIN_Q, "demo", docs=None)
    assert (x.text, x.citations) == (y.text, y.citations)
    report, notes = ids(ex.collection("demo"))
    z = await ex.answer(RAIN_Q, "demo", docs=[report, notes])  # scoping to every document: same answer
    assert (z.text, z.citations) == (x.text, x.citations)
