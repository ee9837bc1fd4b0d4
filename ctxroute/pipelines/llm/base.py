"""The LLM seam: typed request/response records and the async ``LLMClient`` protocol."""
from __future__ import annotations

from dataclasses import dataclass
from typing import AsyncIterator, Literal, Protocol, Sequence, runtime_checkable

from ctxroute.types import ModelProfile


@dataclass(frozen=True)
class Message:
    role: Literal["system", "user", "assistant"]
    content: str


@dataclass(frozen=True)
class LLMRequest:
    messages: tuple[Message, ...]
    max_tokens: int = 512
    temperature: float = 0.0
    stop: tuple[str, ...] = ()
    stage: str = ""  # label recorded in usage, e.g. "rag.answer"

    @staticmethod
    def of(system: str, user: str, **kw: object) -> "LLMRequest":
        return LLMRequest(messages=(Message("system", system), Message("user", user)), **kw)  # type: ignore[arg-type]


@dataclass(frozen=True)
class LLMResponse:
    text: str
    prompt_tokens: int
    completion_tokens: int
    model: str
    finish_reason: str = "stop"
    latency_ms: float = 0.0
    cached: bool = False


@dataclass(frozen=True)
class StreamDelta:
    text: str


@dataclass(frozen=True)
class StreamEnd:
    """Last item of a stream: usage of the whole call."""

    response: LLMResponse


StreamItem = StreamDelta | StreamEnd


@runtime_checkable
class LLMClient(Protocol):
    """What pipelines need from an LLM. Implementations: OpenAICompatibleLLM,
    LangChainChatLLM, LocalLLM (embedded SmolLM2), ScriptedLLM (test double)."""

    profile: ModelProfile

    async def complete(self, request: LLMRequest) -> LLMResponse: ...

    def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]: ...

    def count_tokens(self, text: str) -> int: ...

    async def aclose(self) -> None: ...


def prompt_text(messages: Sequence[Message]) -> str:
    """All message contents joined: what token counting of a request measures."""
    return "\n".join(m.content for m in messages)
