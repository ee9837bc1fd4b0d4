"""The runner against the real Engine (scripted LLM, hashing embedder): records, citations
scored against gold spans, resume."""
from __future__ import annotations

import json
import re
from pathlib import Path

from ctxroute.eval.datasets import load_generic
from ctxroute.eval.runner import build_eval_collection, engine_answer_fn, read_results, run_eval
from ctxroute.pipelines.engine import Engine
from ctxroute.pipelines.llm.base import LLMRequest
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.retrievers.collection import CollectionStore
from ctxroute.retrievers.embedders import HashingEmbedder

FILLER = " ".join(f"Paragraph {i} talks about the weather in town number {i}, which was mild." for i in range(40))
DOC = (
    "# Annual report\n\n" + FILLER + "\n\n## Results\n\nThe Northern division reported an operating margin of 12.4% in 2031. "
    "The Southern division grew revenue by 8% that year.\n\n" + FILLER + "\n"
)
FACTS = {"operating margin": "operating margin of 12.4%", "revenue": "grew revenue by 8%"}


def reply(request: LLMRequest) -> str:
    user = request.messages[-1].content
    for key, needle in FACTS.items():
        if key in request.messages[-1].content.split("\n")[-1] or key in user[-400:]:
            m = re.search(r"\[(S\d+)\] [^\n]*" + re.escape(needle), user)
            if m:
                return f"It was {needle.split(' of ')[-1] if ' of ' in needle else '8%'} [{m.group(1)}]."
    return "NOT_FOUND: the context does not say."


async def test_runner_with_engine(tmp_path: Path) -> None:
    (tmp_path / "report.md").write_text(DOC, encoding="utf-8")
    rows = [
        {"id": "m", "question": "What was the operating margin of the Northern division?", "answers": ["12.4%"], "docs": ["report.md"],
         "evidence": [{"doc": "report.md", "quote": "operating margin of 12.4% in 2031"}]},
        {"id": "r", "question": "By how much did the Southern division grow revenue?", "answers": ["8%"], "docs": ["report.md"],
         "evidence": [{"doc": "report.md", "quote": "grew revenue by 8% that year"}]},
    ]
    (tmp_path / "qa.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    ds = load_generic(tmp_path / "qa.jsonl")
    store = CollectionStore(tmp_path / "collections")
    coll = build_eval_collection(ds, store, "eval-test", embedder=HashingEmbedder())
    assert "report.md" in coll
    engine = Engine({"eval-test": coll}, ScriptedLLM(default="", rules=[(".", reply)]))
    out = tmp_path / "run"
    stats = await run_eval(ds.items, engine_answer_fn(engine, "eval-test"), out, routes=["auto", "rag", "lc"], concurrency=2, dataset=ds.name)
    assert stats.done == 6 and stats.errors == 0
    recs = {r["key"]: r for r in read_results(out)}
    for key in ("m|rag", "m|lc", "r|rag"):
        r = recs[key]
        assert r["error"] is None and r["prompt_tokens"] > 0
        assert r["correct"]["judge"] == 1.0, r["answer"]
        assert r["citation_precision"] == 1.0 and r["citation_recall"] == 1.0
    assert recs["m|lc"]["route_taken"] == "lc" and recs["m|auto"]["features"]["total_tokens"] > 0
    # resume: a second run over the same folder does nothing
    again = await run_eval(ds.items, engine_answer_fn(engine, "eval-test"), out, routes=["auto", "rag", "lc"])
    assert again.done == 0 and again.skipped == 6


async def test_engine_answer_fn_scopes_each_question_to_its_documents() -> None:
    from types import SimpleNamespace

    from ctxroute.eval.datasets import EvalItem

    class FakeEngine:
        def __init__(self) -> None:
            self.calls: list[dict] = []
            self.coll = SimpleNamespace(documents=lambda: [SimpleNamespace(id="a.md"), SimpleNamespace(id="b.md")])

        def collection(self, name: str):  # type: ignore[no-untyped-def]
            assert name == "eval-test"
            return self.coll

        async def answer(self, question, collection, route=None, budget=None, docs=None):  # type: ignore[no-untyped-def]
            self.calls.append({"question": question, "route": route, "docs": docs})
            return "answer"

    engine = FakeEngine()
    fn = engine_answer_fn(engine, "eval-test")
    await fn(EvalItem(id="1", question="q1", answers=("x",), docs=("b.md",)), "auto")
    await fn(EvalItem(id="2", question="q2", answers=("x",), docs=("a.md", "gone.md")), "rag")  # unknown ids left out
    await fn(EvalItem(id="3", question="q3", answers=("x",), docs=("gone.md",)), "auto")  # none known: whole collection
    await fn(EvalItem(id="4", question="q4", answers=("x",), docs=()), "auto")
    assert [c["docs"] for c in engine.calls] == [["b.md"], ["a.md"], None, None]
    assert engine.calls[1]["route"] == "rag" and engine.calls[0]["route"] is None
