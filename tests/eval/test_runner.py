"""Runner: records per (question, route), resume after a kill, errors recorded, torn lines."""
from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from ctxroute.errors import LLMTimeout
from ctxroute.eval.datasets import EvalItem, Evidence
from ctxroute.eval.runner import read_results, rule_judge, run_eval, score_answer
from ctxroute.types import Answer, CallUsage, Citation, Route, RoutingDecision

ITEMS = [
    EvalItem(f"q{i}", f"What is item {i}?", (f"answer {i}",), ("d",), evidence=(Evidence("d", 10 * i, 10 * i + 5),), task="lookup")
    for i in range(6)
]


class Killed(BaseException):
    """Stands in for a kill: not an Exception, so the runner does not record it."""


def fake_answer(item: EvalItem, route: str) -> Answer:
    i = int(item.id[1:])
    taken = Route.RAG if route == "auto" else Route(route)
    return Answer(
        text=f"It is answer {i}." if taken == Route.LC or i % 2 == 0 else "I am not sure.",
        citations=(Citation("d", 10 * i, 10 * i + 3, "xyz", 0.9),),
        decision=RoutingDecision(taken, ("test",), {"total_tokens": 1000.0}),
        route_taken=taken,
        usage=(CallUsage(f"{taken.value}.answer", "fake", 100 if taken == Route.RAG else 1000, 10, 5.0),),
        latency_ms={"retrieve": 1.0, "llm": 5.0},
    )


def test_resume_after_kill_without_duplicates(tmp_path: Path) -> None:
    calls = {"n": 0}

    async def dying(item: EvalItem, route: str) -> Answer:
        calls["n"] += 1
        if calls["n"] > 5:
            raise Killed()
        return fake_answer(item, route)

    with pytest.raises(Killed):
        asyncio.run(run_eval(ITEMS, dying, tmp_path, routes=["rag", "lc"], concurrency=1))
    first = read_results(tmp_path)
    assert len(first) == 5

    seen: list[tuple[str, str]] = []

    async def fine(item: EvalItem, route: str) -> Answer:
        seen.append((item.id, route))
        return fake_answer(item, route)

    stats = asyncio.run(run_eval(ITEMS, fine, tmp_path, routes=["rag", "lc"], concurrency=3))
    assert stats.skipped == 5 and stats.done == 7 and stats.total == 12
    lines = (tmp_path / "results.jsonl").read_text(encoding="utf-8").splitlines()
    keys = [json.loads(line)["key"] for line in lines]
    assert len(keys) == 12 == len(set(keys))
    assert not {f"{i}|{r}" for i, r in seen} & {r["key"] for r in first}
    # a third run has nothing left to do
    again = asyncio.run(run_eval(ITEMS, fine, tmp_path, routes=["rag", "lc"]))
    assert again.done == 0 and again.skipped == 12


def test_errors_recorded_and_retried(tmp_path: Path) -> None:
    async def flaky(item: EvalItem, route: str) -> Answer:
        if item.id == "q1":
            raise LLMTimeout("timed out after 120s")
        return fake_answer(item, route)

    stats = asyncio.run(run_eval(ITEMS[:3], flaky, tmp_path, routes=["rag"]))
    assert stats.errors == 1
    recs = {r["id"]: r for r in read_results(tmp_path)}
    assert recs["q1"]["error"].startswith("llm_timeout: timed out") and recs["q1"]["retryable"] is True

    async def ok(item: EvalItem, route: str) -> Answer:
        return fake_answer(item, route)

    stats = asyncio.run(run_eval(ITEMS[:3], ok, tmp_path, routes=["rag"], retry_errors=True))
    assert stats.done == 1
    recs = read_results(tmp_path)
    assert len(recs) == 3 and not any(r["error"] for r in recs)


def test_torn_last_line_is_dropped(tmp_path: Path) -> None:
    async def ok(item: EvalItem, route: str) -> Answer:
        return fake_answer(item, route)

    asyncio.run(run_eval(ITEMS[:2], ok, tmp_path, routes=["rag"]))
    with (tmp_path / "results.jsonl").open("a", encoding="utf-8") as fh:
        fh.write('{"key": "q2|rag", "id": "q2"')  # killed mid-write
    stats = asyncio.run(run_eval(ITEMS[:3], ok, tmp_path, routes=["rag"]))
    assert stats.done == 1
    lines = (tmp_path / "results.jsonl").read_text(encoding="utf-8").splitlines()
    assert len(lines) == 3 and all(json.loads(line) for line in lines)


def test_record_fields_and_scores(tmp_path: Path) -> None:
    async def ok(item: EvalItem, route: str) -> Answer:
        return fake_answer(item, route)

    asyncio.run(run_eval(ITEMS[:2], ok, tmp_path, routes=["auto", "lc"]))
    recs = {r["key"]: r for r in read_results(tmp_path)}
    r = recs["q0|auto"]
    assert r["route_taken"] == "rag" and r["prompt_tokens"] == 100 and r["completion_tokens"] == 10
    assert r["correct"]["judge"] == 1.0 and r["correct"]["contains"] == 1.0
    assert r["citation_precision"] == 1.0 and r["citation_recall"] == 1.0
    assert r["latency_ms"]["llm"] == 5.0 and "total" in r["latency_ms"]
    assert recs["q1|auto"]["correct"]["judge"] == 0.0


def test_rule_judge_variants() -> None:
    mc = EvalItem("m", "Pick", ("B",), (), choices=("x", "y"))
    assert rule_judge(mc, "Answer: B", False) and not rule_judge(mc, "(A)", False)
    unans = EvalItem("u", "What?", (), (), answerable=False)
    assert rule_judge(unans, "", True) and rule_judge(unans, "The document does not say.", False)
    assert not rule_judge(unans, "It is 42.", False)
    ans = EvalItem("a", "What?", ("42",), ())
    assert not rule_judge(ans, "It is 42.", True)  # abstained answers are wrong on answerable questions
    s = score_answer(unans, fake_answer(ITEMS[0], "rag"))
    assert s["correct"]["refusal_correct"] == 0.0 and s["citation_recall"] is None
