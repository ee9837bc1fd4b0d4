"""``LangChainChatLLM``: any LangChain chat model (``BaseChatModel``) as an ``LLMClient``.

Uses ``ainvoke``/``astream``; usage comes from ``usage_metadata`` when the model reports it,
else it is counted with the profile's tokenizer. Provider exceptions are mapped onto the
``LLMError`` hierarchy by HTTP status (``status_code``) or, failing that, by class name.
Retries are left to the chat model itself (e.g. ``ChatOpenAI(max_retries=...)``).
"""
from __future__ import annotations

import asyncio
import time
from typing import TYPE_CHECKING, Any, AsyncIterator

from ctxroute.errors import (
    ContextWindowExceeded,
    LLMAuthError,
    LLMBadRequest,
    LLMError,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
)
from ctxroute.pipelines.llm.base import LLMRequest, LLMResponse, Message, StreamDelta, StreamEnd, StreamItem, prompt_text
from ctxroute.pipelines.llm.http_errors import CONTEXT_LENGTH_PATTERN
from ctxroute.pipelines.llm.openai import counter_for
from ctxroute.pipelines.llm.scripted import apply_stop
from ctxroute.types import ModelProfile

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel
    from langchain_core.messages import BaseMessage


def _to_langchain(messages: tuple[Message, ...]) -> list["BaseMessage"]:
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

    kinds = {"system": SystemMessage, "user": HumanMessage, "assistant": AIMessage}
    return [kinds[m.role](content=m.content) for m in messages]


def _text_of(content: Any) -> str:
    """Text of a message's content: a string, or a list of content blocks."""
    if isinstance(content, str):
        return content
    parts = []
    for block in content or ():
        if isinstance(block, str):
            parts.append(block)
        elif isinstance(block, dict) and block.get("type") == "text":
            parts.append(str(block.get("text", "")))
    return "".join(parts)


def map_exception(exc: BaseException, model: str) -> LLMError:
    """The ``LLMError`` for a provider exception raised inside a LangChain model."""
    if isinstance(exc, LLMError):
        return exc
    name = type(exc).__name__
    message = str(exc)[:500]
    status = getattr(exc, "status_code", None) or getattr(getattr(exc, "response", None), "status_code", None)
    status = status if isinstance(status, int) else None
    where = f"LangChain model {model!r}"
    fields: dict[str, Any] = {"status": status, "provider_message": message}
    if isinstance(exc, (asyncio.TimeoutError, TimeoutError)) or "Timeout" in name:
        return LLMTimeout(f"{where} timed out: {name}: {message}", **fields)
    if status == 429 or "RateLimit" in name:
        return LLMRateLimited(f"{where} is rate limited: {message}", **fields)
    if status in (401, 403) or "Authentication" in name or "PermissionDenied" in name:
        return LLMAuthError(f"{where} rejected the credentials: {message}; check the provider's API key", **fields)
    if CONTEXT_LENGTH_PATTERN.search(message):
        return ContextWindowExceeded(f"{where} says the prompt is too long: {message}", **fields)
    if (status is not None and status >= 500) or "Connection" in name or "InternalServer" in name:
        return LLMServerError(f"{where} failed: {name}: {message}", **fields)
    if status is not None and 400 <= status < 500:
        return LLMBadRequest(f"{where} refused the request (HTTP {status}): {message}", **fields)
    return LLMError(f"{where} failed: {name}: {message}", **fields)


class LangChainChatLLM:
    """Wraps a LangChain chat model. ``pass_generation_params`` sends ``max_tokens`` and
    ``temperature`` as call kwargs (most provider models accept them; turn it off for one
    that does not)."""

    def __init__(self, chat_model: "BaseChatModel", *, profile: ModelProfile, pass_generation_params: bool = True) -> None:
        self.chat_model = chat_model
        self.profile = profile
        self.model = profile.name
        self.pass_generation_params = pass_generation_params
        self._counter = counter_for(profile)

    def __repr__(self) -> str:
        return f"LangChainChatLLM({type(self.chat_model).__name__}, profile={self.profile.name!r})"

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    def _prepare(self, request: LLMRequest) -> tuple[list["BaseMessage"], dict[str, Any], int]:
        prompt_tokens = self.count_tokens(prompt_text(request.messages))
        if prompt_tokens + request.max_tokens > self.profile.context_window:
            raise ContextWindowExceeded(
                f"prompt of {prompt_tokens} tokens + max_tokens {request.max_tokens} exceeds the "
                f"{self.profile.context_window}-token window of {self.profile.name!r}; shorten the prompt or pick a route that splits the document",
                prompt_tokens=prompt_tokens,
                window=self.profile.context_window,
            )
        kwargs: dict[str, Any] = {}
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if self.pass_generation_params:
            kwargs.update(max_tokens=request.max_tokens, temperature=request.temperature)
        return _to_langchain(request.messages), kwargs, prompt_tokens

    def _response(self, text: str, usage: Any, metadata: Any, prompt_tokens: int, latency_ms: float) -> LLMResponse:
        usage = usage or {}
        metadata = metadata or {}
        finish = metadata.get("finish_reason") or metadata.get("stop_reason") or metadata.get("done_reason") or "stop"
        return LLMResponse(
            text=text,
            prompt_tokens=int(usage.get("input_tokens") or prompt_tokens),
            completion_tokens=int(usage.get("output_tokens") or self.count_tokens(text)),
            model=str(metadata.get("model_name") or metadata.get("model") or self.profile.name),
            finish_reason=str(finish),
            latency_ms=latency_ms,
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        messages, kwargs, prompt_tokens = self._prepare(request)
        start = time.perf_counter()
        try:
            result = await self.chat_model.ainvoke(messages, **kwargs)
        except Exception as exc:
            raise map_exception(exc, self.profile.name) from exc
        text, _ = apply_stop(_text_of(result.content), request.stop)
        return self._response(
            text, getattr(result, "usage_metadata", None), getattr(result, "response_metadata", None), prompt_tokens,
            (time.perf_counter() - start) * 1000.0,
        )

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]:
        messages, kwargs, prompt_tokens = self._prepare(request)
        start = time.perf_counter()
        holdback = max((len(s) for s in request.stop), default=1) - 1
        text, emitted = "", 0
        usage: dict[str, Any] = {}
        metadata: dict[str, Any] = {}
        try:
            async for chunk in self.chat_model.astream(messages, **kwargs):
                if getattr(chunk, "usage_metadata", None):
                    for key, value in chunk.usage_metadata.items():
                        if isinstance(value, int):
                            usage[key] = usage.get(key, 0) + value
                metadata.update(getattr(chunk, "response_metadata", None) or {})
                text += _text_of(chunk.content)
                cut, stopped = apply_stop(text, request.stop)
                safe = len(cut) if stopped else max(emitted, len(text) - holdback)
                if safe > emitted:
                    yield StreamDelta(text[emitted:safe])
                    emitted = safe
                if stopped:
                    text = cut
                    break
        except LLMError:
            raise
        except Exception as exc:
            raise map_exception(exc, self.profile.name) from exc
        text, _ = apply_stop(text, request.stop)
        if len(text) > emitted:
            yield StreamDelta(text[emitted:])
        yield StreamEnd(self._response(text, usage, metadata, prompt_tokens, (time.perf_counter() - start) * 1000.0))

    async def aclose(self) -> None:
        """LangChain chat models hold no resources that need closing here."""
