"""LangChainChatLLM with langchain-core's own fake chat models."""
from __future__ import annotations

from typing import Any

import pytest
from langchain_core.language_models.fake_chat_models import FakeListChatModel, GenericFakeChatModel
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from ctxroute.errors import ContextWindowExceeded, LLMAuthError, LLMError, LLMRateLimited, LLMServerError, LLMTimeout
from ctxroute.pipelines.llm.base import LLMClient, LLMRequest, StreamDelta, StreamEnd
from ctxroute.pipelines.llm.langchain import LangChainChatLLM, map_exception
from ctxroute.types import ModelProfile

PROFILE = ModelProfile(name="lc-model", context_window=2048, usable_window=1024)


class RecordingChat(GenericFakeChatModel):
    """GenericFakeChatModel that remembers the messages and kwargs of each call."""

    calls: list[tuple[list[BaseMessage], dict[str, Any]]] = []

    async def _agenerate(self, messages: list[BaseMessage], stop: list[str] | None = None, run_manager: Any = None, **kwargs: Any) -> Any:
        self.calls.append((messages, {"stop": stop, **kwargs}))
        return await super()._agenerate(messages, stop=stop, run_manager=run_manager, **kwargs)


def req(text: str = "What is up?", **kw: object) -> LLMRequest:
    return LLMRequest.of("Be brief.", text, **kw)


async def test_complete_uses_usage_metadata_and_passes_messages() -> None:
    chat = RecordingChat(messages=iter([AIMessage(content="All good.", usage_metadata={"input_tokens": 9, "output_tokens": 3, "total_tokens": 12},
                                                  response_metadata={"finish_reason": "stop", "model_name": "fake-1"})]))
    llm = LangChainChatLLM(chat, profile=PROFILE)
    assert isinstance(llm, LLMClient)
    r = await llm.complete(req(max_tokens=33, stop=("###",)))
    assert (r.text, r.prompt_tokens, r.completion_tokens, r.model) == ("All good.", 9, 3, "fake-1")
    messages, kwargs = chat.calls[0]
    assert [type(m) for m in messages] == [SystemMessage, HumanMessage]
    assert messages[1].content == "What is up?"
    assert kwargs["stop"] == ["###"] and kwargs["max_tokens"] == 33 and kwargs["temperature"] == 0.0


async def test_usage_counted_when_missing_and_stop_applied() -> None:
    llm = LangChainChatLLM(FakeListChatModel(responses=["Paris is the capital. STOP extra text"]), profile=PROFILE)
    r = await llm.complete(req(stop=(" STOP",)))
    assert r.text == "Paris is the capital."
    assert r.completion_tokens == llm.count_tokens("Paris is the capital.")
    assert r.prompt_tokens == llm.count_tokens("Be brief.\nWhat is up?")


async def test_stream_deltas_and_usage() -> None:
    chat = GenericFakeChatModel(messages=iter([AIMessage(content="streamed words arrive one by one")]))
    llm = LangChainChatLLM(chat, profile=PROFILE)
    items = [i async for i in llm.stream(req())]
    deltas = [i.text for i in items if isinstance(i, StreamDelta)]
    end = items[-1]
    assert isinstance(end, StreamEnd) and len(deltas) > 3
    assert "".join(deltas) == end.response.text == "streamed words arrive one by one"
    assert end.response.completion_tokens == llm.count_tokens(end.response.text)


async def test_stream_stops_at_stop_string_spanning_chunks() -> None:
    chat = GenericFakeChatModel(messages=iter([AIMessage(content="alpha beta END gamma delta")]))
    llm = LangChainChatLLM(chat, profile=PROFILE)
    items = [i async for i in llm.stream(req(stop=("beta END",)))]
    deltas = "".join(i.text for i in items if isinstance(i, StreamDelta))
    assert deltas == "alpha " == items[-1].response.text  # type: ignore[union-attr]


async def test_window_checked_before_calling_the_model() -> None:
    chat = RecordingChat(messages=iter([AIMessage(content="never")]))
    llm = LangChainChatLLM(chat, profile=PROFILE)
    with pytest.raises(ContextWindowExceeded):
        await llm.complete(req("token " * 3000))
    assert chat.calls == []


class FailingChat(GenericFakeChatModel):
    error: Any = None

    async def _agenerate(self, *args: Any, **kwargs: Any) -> Any:
        raise self.error


class RateLimitError(Exception):
    status_code = 429


class APITimeoutError(Exception):
    pass


class BadRequestError(Exception):
    status_code = 400


async def test_provider_errors_are_mapped() -> None:
    for error, expected in [
        (RateLimitError("slow down"), LLMRateLimited),
        (APITimeoutError("took too long"), LLMTimeout),
        (BadRequestError("This model's maximum context length is 8192 tokens"), ContextWindowExceeded),
        (ConnectionError("refused"), LLMServerError),
    ]:
        llm = LangChainChatLLM(FailingChat(messages=iter([]), error=error), profile=PROFILE)
        with pytest.raises(expected):
            await llm.complete(req())
    auth = map_exception(type("AuthenticationError", (Exception,), {"status_code": 401})("bad key"), "m")
    assert isinstance(auth, LLMAuthError) and auth.status == 401
    other = map_exception(ValueError("weird"), "m")
    assert type(other) is LLMError and "ValueError" in str(other)
