from __future__ import annotations

import pytest

from ctxroute.errors import ContextWindowExceeded, LLMServerError
from ctxroute.pipelines.llm.base import LLMClient, LLMRequest, StreamDelta, StreamEnd
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.types import ModelProfile


def req(user: str, **kw: object) -> LLMRequest:
    return LLMRequest.of("You answer questions.", user, **kw)


async def test_rules_then_replies_then_default() -> None:
    llm = ScriptedLLM(["first", lambda r: r.messages[-1].content.upper()], rules=[(r"capital of \w+", "Paris")], default="dunno")
    assert isinstance(llm, LLMClient)
    assert (await llm.complete(req("What is the capital of France?"))).text == "Paris"
    assert (await llm.complete(req("q1"))).text == "first"
    assert (await llm.complete(req("q2"))).text == "Q2"
    assert (await llm.complete(req("q3"))).text == "dunno"
    assert [r.messages[-1].content for r in llm.requests] == ["What is the capital of France?", "q1", "q2", "q3"]


async def test_exception_entries_are_raised_in_order() -> None:
    llm = ScriptedLLM([LLMServerError("boom", status=503), "ok"])
    with pytest.raises(LLMServerError):
        await llm.complete(req("x"))
    assert (await llm.complete(req("x"))).text == "ok"


async def test_usage_stop_and_max_tokens() -> None:
    llm = ScriptedLLM(["alpha beta END gamma", "one two three four five six"])
    r = await llm.complete(req("hello world", stop=("END",)))
    assert r.text == "alpha beta "
    assert r.prompt_tokens == llm.count_tokens("You answer questions.\nhello world")
    assert r.completion_tokens == llm.count_tokens("alpha beta ")
    r2 = await llm.complete(req("x", max_tokens=3))
    assert r2.finish_reason == "length" and r2.completion_tokens == 3
    assert "one two three four".startswith(r2.text)


async def test_window_exceeded_without_consuming_a_reply() -> None:
    tiny = ModelProfile(name="tiny", context_window=50, usable_window=40)
    llm = ScriptedLLM(["kept"], profile=tiny)
    with pytest.raises(ContextWindowExceeded) as info:
        await llm.complete(req("word " * 100, max_tokens=10))
    assert info.value.window == 50 and info.value.prompt_tokens > 50
    assert (await llm.complete(req("short", max_tokens=10))).text == "kept"


async def test_stream_yields_deltas_then_end() -> None:
    text = "The answer is forty two, as everybody knows."
    llm = ScriptedLLM([text])
    items = [item async for item in llm.stream(req("q"))]
    assert isinstance(items[-1], StreamEnd)
    deltas = [i.text for i in items[:-1] if isinstance(i, StreamDelta)]
    assert len(deltas) >= 2 and "".join(deltas) == text == items[-1].response.text


def test_cli_chat_streams_and_reports_usage(monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ctxroute.cli import app

    monkeypatch.delenv("CTXROUTE_LLM_BASE_URL", raising=False)
    result = CliRunner().invoke(app, ["llm", "chat", "hello there", "--backend", "scripted", "--max-tokens", "8"])
    assert result.exit_code == 0, result.output
    assert "prompt" in result.output and "completion 0 tok" in result.output and "first token" in result.output
    bad = CliRunner().invoke(app, ["llm", "chat", "x", "--backend", "gpt"])
    assert bad.exit_code == 1 and "unknown LLM backend" in bad.output
