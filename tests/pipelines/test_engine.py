from __future__ import annotations

import re

import pytest

from ctxroute.errors import CollectionNotFound, InputError, InputTooLarge, LLMServerError
from ctxroute.pipelines.engine import Engine, EngineConfig
from ctxroute.pipelines.escalation import escalation_target
from ctxroute.pipelines.langchain import CtxrouteRetriever
from ctxroute.pipelines.llm.base import LLMRequest
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.types import Answer, Budget, ModelProfile, Route
from tests.pipelines.test_strategies import INJECTION, cite, collection, sid_of, store  # noqa: F401  (fixtures)

MARGIN_Q = "What was the operating margin of the Northern division?"
MARGIN_SENT = "The Northern division reported an operating margin of 12.4% in 2031."


def check_answer(answer: Answer, coll) -> None:  # type: ignore[no-untyped-def]
    """Invariants every answer must satisfy."""
    for c in answer.citations:
        assert c.quote == coll.document(c.doc_id).text[c.start:c.end]
        assert c.title
    assert set(answer.latency_ms) >= {"route", "retrieve", "llm", "verify", "total"}
    assert answer.decision.reasons
    markers = {int(n) for n in re.findall(r"\[(\d+)\]", answer.text)}
    assert markers <= set(range(1, len(answer.citations) + 1))
    assert "[S" not in answer.text


async def test_auto_route_answer_with_citation(store) -> None:  # noqa: F811
    llm = ScriptedLLM(default="NOT_FOUND: no", rules=[("margin", cite("operating margin of 12.4%", "The margin was 12.4% in 2031"))])
    engine = Engine(store, llm)
    answer = await engine.answer(MARGIN_Q, collection="demo")
    check_answer(answer, engine.collection("demo"))
    assert answer.text == "The margin was 12.4% in 2031 [1]."
    assert [c.quote for c in answer.citations] == [MARGIN_SENT]
    assert answer.route_taken == answer.decision.route and answer.decision.policy == "cascade"
    assert answer.usage[0].stage == f"{answer.route_taken.value}.answer" and answer.prompt_tokens > 0
    assert not answer.abstained and answer.warnings == ()


@pytest.mark.parametrize("route", ["rag", "lc", "hybrid", Route.MR, "extractive"])
async def test_every_route_keeps_quotes_exact(store, route) -> None:  # noqa: F811
    def reply(request: LLMRequest) -> str:
        user = request.messages[-1].content
        if "JSON" in request.messages[0].content:  # map worker
            if "operating margin of 12.4%" not in user:
                return "NO_INFORMATION"
            return '{"facts": [{"text": "margin 12.4%%", "sentences": ["%s"]}], "answer": "12.4%%", "confidence": 4}' % sid_of(user, "operating margin of 12.4%")
        ids = re.findall(r"\[(S\d+)\]", user)
        return f"The Northern operating margin was 12.4% in 2031 [{ids[0]}, {sid_of(user, 'operating margin of 12.4%') if 'operating margin of 12.4%' in user else ids[-1]}]."

    engine = Engine(store, ScriptedLLM(default="", rules=[(".", reply)]))
    answer = await engine.answer(MARGIN_Q, collection="demo", route=route)
    check_answer(answer, engine.collection("demo"))
    assert answer.route_taken == Route(route) and answer.decision.policy == "forced"
    assert MARGIN_SENT in [c.quote for c in answer.citations]


async def test_unsupported_and_hallucinated_citations_removed_with_warnings(store) -> None:  # noqa: F811
    def reply(request: LLMRequest) -> str:
        user = request.messages[-1].content
        return (f"The margin was 12.4% in 2031 [{sid_of(user, 'operating margin of 12.4%')}, S999]. "
                f"Maria Keller was appointed chief executive [{sid_of(user, 'operating margin of 12.4%')}].")

    engine = Engine(store, ScriptedLLM(rules=[(".", reply)]))
    answer = await engine.answer(MARGIN_Q + " Who became chief executive?", "demo", route="lc")
    assert [c.claim for c in answer.citations] == ["The margin was 12.4% in 2031."]
    assert any("S999" in w and "hallucinated" in w for w in answer.warnings)
    assert any("min_support" in w and "Maria Keller" in w for w in answer.warnings)
    assert answer.text == "The margin was 12.4% in 2031 [1]. Maria Keller was appointed chief executive."


async def test_rag_abstention_escalates_to_lc(store) -> None:  # noqa: F811
    llm = ScriptedLLM(replies=["NOT_FOUND: the retrieved passages do not say",
                               cite("operating margin of 12.4%", "The margin was 12.4% in 2031")])
    answer = await Engine(store, llm).answer(MARGIN_Q, "demo", route="rag")
    assert answer.route_taken == Route.LC and answer.fallbacks_taken == ("rag->lc: RAG abstained",)
    assert [u.stage for u in answer.usage] == ["rag.answer", "lc.answer"]
    assert not answer.abstained and answer.citations


async def test_rag_failed_citations_escalate_and_final_abstention_is_recorded(store) -> None:  # noqa: F811
    llm = ScriptedLLM(replies=["Bananas are yellow [S1].", "NOT_FOUND: the report has no such figure"])
    answer = await Engine(store, llm).answer("What colour are bananas?", "demo", route="rag")
    assert answer.fallbacks_taken == ("rag->lc: all 1 RAG citations failed verification",)
    assert answer.abstained and answer.abstain_reason == "the report has no such figure"
    assert answer.citations == () and "do not contain" in answer.text


async def test_no_escalation_when_disabled(store) -> None:  # noqa: F811
    llm = ScriptedLLM(replies=["NOT_FOUND: nothing"])
    answer = await Engine(store, llm, config=EngineConfig(escalate=False)).answer(MARGIN_Q, "demo", route="rag")
    assert answer.abstained and answer.route_taken == Route.RAG and len(llm.requests) == 1


async def test_window_overflow_falls_back_to_map_reduce(store) -> None:  # noqa: F811
    small = ModelProfile(name="small", context_window=3000, usable_window=900, size_class="small")
    llm = ScriptedLLM(default="NO_INFORMATION", profile=small)
    answer = await Engine(store, llm, config=EngineConfig.with_answer_tokens(100)).answer(MARGIN_Q, "demo", route="lc")
    assert answer.route_taken == Route.MR and answer.fallbacks_taken == ("lc->mr: context window exceeded",)
    assert any("usable window" in w for w in answer.warnings)
    assert all(u.stage.startswith("mr.") for u in answer.usage)  # the LC prompt never reached the model
    assert answer.abstained


async def test_llm_failure_falls_back_to_extractive(store) -> None:  # noqa: F811
    llm = ScriptedLLM(replies=[LLMServerError("upstream 503", status=503)])
    answer = await Engine(store, llm).answer(MARGIN_Q, "demo", route="rag")
    assert answer.route_taken == Route.EXTRACTIVE
    assert answer.fallbacks_taken == ("rag->extractive: llm_server_error",)
    assert any("LLM call failed" in w for w in answer.warnings)
    assert MARGIN_SENT in [c.quote for c in answer.citations]
    check_answer(answer, Engine(store, None).collection("demo"))


async def test_no_llm_answers_extractively(store) -> None:  # noqa: F811
    answer = await Engine(store, None).answer(MARGIN_Q, "demo")
    assert answer.route_taken == Route.EXTRACTIVE and answer.usage == ()
    assert answer.citations[0].quote == MARGIN_SENT


async def test_input_validation(store, collection) -> None:  # noqa: F811
    engine = Engine(store, None)
    with pytest.raises(InputError, match="empty"):
        await engine.answer("   ", "demo")
    with pytest.raises(InputTooLarge):
        await Engine(store, None, config=EngineConfig(max_question_chars=10)).answer("x" * 11, "demo")
    with pytest.raises(CollectionNotFound, match="nope"):
        await engine.answer("q?", "nope")
    with pytest.raises(CollectionNotFound):
        await Engine({"demo": collection}, None).answer("q?", "other")
    with pytest.raises(InputError, match="unknown route"):
        await engine.answer("q?", "demo", route="telepathy")


async def test_budget_blocks_escalation(store) -> None:  # noqa: F811
    llm = ScriptedLLM(default="NOT_FOUND: nothing here")
    engine = Engine(store, llm, config=EngineConfig.with_answer_tokens(50))
    free = await engine.answer("What is the colour of the moon?", "demo", route="rag")
    assert free.fallbacks_taken == ("rag->lc: RAG abstained",)
    tight = await engine.answer("What is the colour of the moon?", "demo", route="rag",
                                budget=Budget(max_tokens=free.usage[0].prompt_tokens + 200))
    assert tight.fallbacks_taken == () and tight.abstained and len(tight.usage) == 1
    assert any("not escalated" in w and "budget" in w for w in tight.warnings)


async def test_stream_events(store) -> None:  # noqa: F811
    llm = ScriptedLLM(rules=[(".", cite("operating margin of 12.4%", "The Northern margin was 12.4% in 2031"))])
    engine = Engine(store, llm)
    events = [e async for e in engine.answer_stream(MARGIN_Q, "demo", route="lc")]
    kinds = [e.kind for e in events]
    assert kinds[0] == "decision" and kinds[-2:] == ["citations", "final"] and kinds.count("delta") >= 2
    streamed = "".join(e.data for e in events if e.kind == "delta")
    assert re.search(r"\[S\d+\]", streamed)  # raw markers stream; verified ones come at the end
    final = events[-1].data
    assert events[-2].data == final.citations and final.citations[0].quote == MARGIN_SENT


async def test_injection_stays_data(store) -> None:  # noqa: F811
    llm = ScriptedLLM(default="NOT_FOUND: n")
    await Engine(store, llm).answer("What happened to Southern revenue?", "demo", route="lc")
    user = llm.requests[0].messages[-1].content
    pos = user.index(INJECTION)
    assert user.rfind("<document ", 0, pos) > user.rfind("</document>", 0, pos)


async def test_langchain_retriever_and_runnable(store, collection) -> None:  # noqa: F811
    docs = CtxrouteRetriever(collection=collection, k=3).invoke(MARGIN_Q)
    assert 1 <= len(docs) <= 3
    for d in docs:
        src = collection.document(d.metadata["doc_id"]).text
        assert src[d.metadata["start"]:d.metadata["end"]] == d.page_content
    engine = Engine(store, None)
    runnable = engine.as_runnable("demo")
    answer = await runnable.ainvoke(MARGIN_Q)
    assert isinstance(answer, Answer) and answer.citations
    answer2 = await runnable.ainvoke({"question": MARGIN_Q, "route": "extractive"})
    assert answer2.route_taken == Route.EXTRACTIVE


def test_escalation_skips_routes_the_router_marked_infeasible(store) -> None:  # noqa: F811
    """A RAG abstention over a collection far beyond the window must not start a map-reduce
    whose reduce step cannot fit (hundreds of map calls for nothing): hybrid instead."""
    from ctxroute.types import RouteEstimate, RoutingDecision

    decision = RoutingDecision(
        route=Route.RAG, reasons=("test",), features={},
        estimates=(RouteEstimate(Route.LC, 500_000, 0.0, feasible=False, why_not="too long"),
                   RouteEstimate(Route.MR, 590_000, 0.0, feasible=False, why_not="reduce does not fit"),
                   RouteEstimate(Route.HYBRID, 5_700, 0.0)),
    )
    assert escalation_target(decision, None, [Route.RAG], None) == Route.HYBRID  # type: ignore[arg-type]
    assert escalation_target(decision, None, [Route.RAG, Route.HYBRID], None) is None  # type: ignore[arg-type]


# --- the cascade policy in the engine -------------------------------------------------
def _cascade(refusal_gain: float = 3.0, lam: float = 0.1):  # type: ignore[no-untyped-def]
    from ctxroute.router import CascadeRouter
    from tests.router.test_cascade import hand_params

    return CascadeRouter(hand_params(refusal_gain, lam), just_send_factor=0.0)


async def test_cascade_escalates_a_refusal_and_records_why(store) -> None:  # noqa: F811
    llm = ScriptedLLM(replies=["The provided passages do not mention the operating margin.",
                               cite("operating margin of 12.4%", "The margin was 12.4% in 2031")])
    answer = await Engine(store, llm, router=_cascade()).answer(MARGIN_Q, "demo")
    assert answer.decision.policy == "cascade"
    assert [u.stage for u in answer.usage] == ["rag.answer", "lc.answer"] and answer.route_taken == Route.LC
    assert answer.fallbacks_taken and answer.fallbacks_taken[0].startswith("rag->lc: cascade:")
    assert any(r.startswith("cascade: escalate rag -> lc") and "refusal" in r for r in answer.decision.reasons)
    assert [c.quote for c in answer.citations] == [MARGIN_SENT]


async def test_cascade_stops_on_a_supported_answer_and_says_so(store) -> None:  # noqa: F811
    llm = ScriptedLLM(rules=[("margin", cite("operating margin of 12.4%", "The margin was 12.4% in 2031"))])
    answer = await Engine(store, llm, router=_cascade()).answer(MARGIN_Q, "demo")
    assert answer.route_taken == Route.RAG and answer.fallbacks_taken == ()
    assert any(r.startswith("cascade: stop after rag") and "1 verified citations" in r for r in answer.decision.reasons)


async def test_cascade_keeps_a_refusal_when_escalation_is_not_worth_it(store) -> None:  # noqa: F811
    llm = ScriptedLLM(replies=["NOT_FOUND: the passages do not say", "never used"])
    answer = await Engine(store, llm, router=_cascade(lam=100.0)).answer(MARGIN_Q, "demo")
    assert answer.route_taken == Route.RAG and answer.abstained and len(answer.usage) == 1
    assert any("not escalated: cascade: stop after rag" in w for w in answer.warnings)


# --- map-reduce progress and the map-call cap ----------------------------------------------
async def test_map_reduce_streams_progress_for_every_map_call(store) -> None:  # noqa: F811
    from ctxroute.pipelines.map_reduce import MapReduceConfig

    small = ModelProfile(name="small", context_window=3000, usable_window=1500, size_class="small")

    def reply(request: LLMRequest) -> str:
        if "JSON" in request.messages[0].content:
            return "NO_INFORMATION" if "operating margin of 12.4%" not in request.messages[-1].content else (
                '{"facts": [{"text": "margin 12.4%%", "sentences": ["%s"]}], "answer": "12.4%%", "confidence": 4}'
                % sid_of(request.messages[-1].content, "operating margin of 12.4%"))
        return "The margin was 12.4%."

    cfg = EngineConfig.with_answer_tokens(100, mr=MapReduceConfig(max_concurrency=2))
    engine = Engine(store, ScriptedLLM(rules=[(".", reply)], profile=small), config=cfg)
    events = [e async for e in engine.answer_stream(MARGIN_Q, "demo", route="mr")]
    progress = [e.data for e in events if e.kind == "progress"]
    maps = [p for p in progress if p["stage"] == "map"]
    n_map = sum(1 for u in events[-1].data.usage if u.stage.startswith("mr.map"))
    assert maps[0] == {"stage": "map", "done": 0, "total": n_map} and n_map >= 2
    assert [p["done"] for p in maps[1:]] == list(range(1, n_map + 1))
    assert progress[-1] == {"stage": "reduce", "done": 0, "total": 1}


async def test_map_call_cap_falls_back_to_hybrid(store) -> None:  # noqa: F811
    from ctxroute.pipelines.map_reduce import MapReduceConfig

    small = ModelProfile(name="small", context_window=3000, usable_window=1500, size_class="small")
    cfg = EngineConfig.with_answer_tokens(100, mr=MapReduceConfig(max_map_calls=1))
    llm = ScriptedLLM(rules=[(".", cite("operating margin of 12.4%", "The margin was 12.4% in 2031"))], profile=small)
    answer = await Engine(store, llm, config=cfg).answer(MARGIN_Q, "demo", route="mr")
    assert answer.route_taken == Route.HYBRID and answer.fallbacks_taken == ("mr->hybrid: context window exceeded",)
    assert any("max_map_calls=1" in w for w in answer.warnings)
    assert not any(u.stage.startswith("mr.") for u in answer.usage)  # no map call was made
