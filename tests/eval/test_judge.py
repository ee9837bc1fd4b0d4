"""LLM judge: verdict parsing, caching, and use from the runner (scripted LLM)."""
from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from ctxroute.errors import LLMMalformedResponse
from ctxroute.eval.datasets import EvalItem
from ctxroute.eval.judge import LLMJudge, parse_verdict
from ctxroute.eval.runner import read_results, run_eval
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from tests.eval.test_runner import fake_answer


@pytest.mark.parametrize(
    ("reply", "ok"),
    [("True\nIt names the same person.", True), ("False. The figure differs.", False), ("**Incorrect** - wrong year", False),
     ("Verdict: correct", True), ("yes", True)],
)
def test_parse_verdict(reply: str, ok: bool) -> None:
    v = parse_verdict(reply)
    assert v.correct is ok


def test_parse_verdict_rejects_noise() -> None:
    with pytest.raises(LLMMalformedResponse, match="no True/False"):
        parse_verdict("I would rather not say.")


async def test_judge_caches() -> None:
    llm = ScriptedLLM(["True\nsame answer", "False\nshould not be asked"])
    judge = LLMJudge(llm)
    a = await judge.judge("Who?", ["Ada"], "It was Ada.")
    b = await judge.judge("Who?", ["Ada"], "It was Ada.")
    assert a.correct and b.correct and b.cached and not a.cached
    assert len(llm.requests) == 1
    assert "Gold answer: Ada" in llm.requests[0].messages[-1].content


def test_runner_records_llm_verdict(tmp_path: Path) -> None:
    items = [EvalItem("q0", "What is item 0?", ("answer 0",), ("d",))]

    async def ok(item: EvalItem, route: str):  # type: ignore[no-untyped-def]
        return fake_answer(item, route)

    judge = LLMJudge(ScriptedLLM(default="False\nthe candidate misses the point"))
    asyncio.run(run_eval(items, ok, tmp_path, routes=["rag"], llm_judge=judge))
    rec = read_results(tmp_path)[0]
    assert rec["correct"]["llm_judge"] == 0.0 and rec["correct"]["judge"] == 1.0
    assert rec["llm_judge_rationale"].startswith("the candidate")
