"""OpenAICompatibleLLM against a scripted HTTP server on a real loopback socket."""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass, field
from email.utils import format_datetime
from datetime import datetime, timedelta, timezone
from typing import AsyncIterator, Callable

import httpx
import pytest

from ctxroute.errors import (
    ContextWindowExceeded,
    LLMAuthError,
    LLMBadRequest,
    LLMMalformedResponse,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
)
from ctxroute.pipelines.llm.base import LLMClient, LLMRequest, StreamDelta, StreamEnd
from ctxroute.pipelines.llm.openai import OpenAICompatibleLLM, parse_retry_after, redact_url
from ctxroute.types import ModelProfile

SECRET = "sk-test-very-secret-key-0123456789"
PROFILE = ModelProfile(name="test-model", context_window=4096, usable_window=2048)


@dataclass
class Reply:
    status: int = 200
    body: bytes | str | dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    delay_s: float = 0.0
    sse: list[str] | None = None  # raw data: payloads, sent as SSE events


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: dict
    at: float


def completion(text: str, usage: dict | None = None, finish: str = "stop") -> dict:
    out: dict = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "model": "served-model",
        "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": finish}],
    }
    if usage is not None:
        out["usage"] = usage
    return out


class ScriptedServer:
    """HTTP/1.1 on 127.0.0.1: answers each request with the next scripted Reply (the last repeats)."""

    def __init__(self) -> None:
        self.replies: list[Reply] = []
        self.seen: list[Seen] = []
        self._server: asyncio.Server | None = None
        self.port = 0

    def script(self, *replies: Reply) -> None:
        self.replies = list(replies)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = await reader.readuntil(b"\r\n\r\n")
            lines = head.decode("latin-1").split("\r\n")
            path = lines[0].split(" ")[1]
            headers = {k.strip().lower(): v.strip() for k, v in (ln.split(":", 1) for ln in lines[1:] if ":" in ln)}
            body = await reader.readexactly(int(headers.get("content-length", "0")))
            self.seen.append(Seen(path, headers, json.loads(body or b"{}"), time.monotonic()))
            reply = self.replies.pop(0) if len(self.replies) > 1 else self.replies[0]
            if reply.delay_s:
                await asyncio.sleep(reply.delay_s)
            if reply.sse is not None:
                writer.write(
                    f"HTTP/1.1 {reply.status} OK\r\ncontent-type: text/event-stream\r\nconnection: close\r\n"
                    f"x-request-id: req-stream\r\n\r\n".encode()
                )
                for data in reply.sse:
                    writer.write(f"data: {data}\n\n".encode())
                    await writer.drain()
                    await asyncio.sleep(0.001)
            else:
                payload = reply.body if reply.body is not None else completion("ok")
                raw = json.dumps(payload).encode() if isinstance(payload, dict) else (payload.encode() if isinstance(payload, str) else payload)
                extra = "".join(f"{k}: {v}\r\n" for k, v in reply.headers.items())
                writer.write(
                    f"HTTP/1.1 {reply.status} X\r\ncontent-type: application/json\r\ncontent-length: {len(raw)}\r\n"
                    f"connection: close\r\n{extra}\r\n".encode() + raw
                )
            await writer.drain()
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass  # the client gave up (timeouts, abandoned streams) or the test loop is closing
        finally:
            writer.close()


@pytest.fixture
async def server() -> AsyncIterator[ScriptedServer]:
    srv = ScriptedServer()
    await srv.start()
    yield srv
    await srv.stop()


@pytest.fixture
def make_llm(server: ScriptedServer) -> Callable[..., OpenAICompatibleLLM]:
    def make(**kw: object) -> OpenAICompatibleLLM:
        opts: dict = dict(profile=PROFILE, timeout_s=5.0, max_retries=3, backoff_base_s=0.01, backoff_max_s=0.05, rng=random.Random(0))
        opts.update(kw)
        return OpenAICompatibleLLM(server.base_url, "test-model", SECRET, **opts)

    return make


def req(text: str = "What is up?", **kw: object) -> LLMRequest:
    return LLMRequest.of("Be brief.", text, **kw)


async def test_completion_json(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(body=completion("Hello there", {"prompt_tokens": 11, "completion_tokens": 2, "total_tokens": 13})))
    llm = make_llm()
    assert isinstance(llm, LLMClient)
    r = await llm.complete(req(stop=("\n\n",), max_tokens=20))
    await llm.aclose()
    assert (r.text, r.prompt_tokens, r.completion_tokens, r.model) == ("Hello there", 11, 2, "served-model")
    sent = server.seen[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.headers["authorization"] == f"Bearer {SECRET}"
    assert sent.body["model"] == "test-model" and sent.body["max_tokens"] == 20 and sent.body["stop"] == ["\n\n"]
    assert sent.body["messages"] == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "What is up?"}]


async def test_usage_counted_when_server_omits_it(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(body=completion("three little words")))
    llm = make_llm()
    r = await llm.complete(req())
    await llm.aclose()
    assert r.prompt_tokens == llm.count_tokens("Be brief.\nWhat is up?") > 0
    assert r.completion_tokens == llm.count_tokens("three little words")


def sse_chunk(text: str | None = None, finish: str | None = None) -> str:
    delta = {"content": text} if text is not None else {}
    return json.dumps({"model": "served-model", "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]})


async def test_streaming_sse_with_usage(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    events = [sse_chunk(""), sse_chunk("Hel"), sse_chunk("lo"), sse_chunk(" world", "stop"),
              json.dumps({"choices": [], "usage": {"prompt_tokens": 7, "completion_tokens": 3}}), "[DONE]"]
    server.script(Reply(sse=events))
    llm = make_llm()
    items = [i async for i in llm.stream(req())]
    await llm.aclose()
    assert [i.text for i in items if isinstance(i, StreamDelta)] == ["Hel", "lo", " world"]
    end = items[-1]
    assert isinstance(end, StreamEnd)
    assert (end.response.text, end.response.prompt_tokens, end.response.completion_tokens) == ("Hello world", 7, 3)
    assert server.seen[0].body["stream"] is True and server.seen[0].body["stream_options"] == {"include_usage": True}


async def test_streaming_counts_when_usage_missing(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(sse=[sse_chunk("Hello"), sse_chunk(" world", "length"), "[DONE]"]))
    llm = make_llm()
    items = [i async for i in llm.stream(req())]
    await llm.aclose()
    end = items[-1]
    assert isinstance(end, StreamEnd)
    assert end.response.completion_tokens == llm.count_tokens("Hello world")
    assert end.response.finish_reason == "length"


async def test_stream_options_rejected_falls_back(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(
        Reply(status=400, body={"error": {"message": "Unrecognized request argument: stream_options"}}),
        Reply(sse=[sse_chunk("fine", "stop"), "[DONE]"]),
    )
    llm = make_llm()
    items = [i async for i in llm.stream(req())]
    await llm.aclose()
    assert isinstance(items[-1], StreamEnd) and items[-1].response.text == "fine"
    assert "stream_options" not in server.seen[1].body


@pytest.mark.parametrize("header", ["seconds", "http-date"])
async def test_429_honours_retry_after_then_succeeds(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM], header: str) -> None:
    if header == "seconds":
        value, wait = "0.3", 0.3
    else:  # HTTP dates have 1 s resolution: ask for ~2 s, expect at least 1 s
        value, wait = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=2), usegmt=True), 1.0
    server.script(Reply(status=429, body={"error": {"message": "slow down"}}, headers={"retry-after": value}), Reply(body=completion("done")))
    llm = make_llm(backoff_max_s=5.0)
    r = await llm.complete(req())
    await llm.aclose()
    assert r.text == "done" and len(server.seen) == 2
    assert server.seen[1].at - server.seen[0].at >= wait - 0.02


async def test_429_exhausted_raises_rate_limited(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(status=429, body={"error": {"message": "quota"}}, headers={"retry-after": "0.01", "x-request-id": "req-429"}))
    llm = make_llm(max_retries=2)
    with pytest.raises(LLMRateLimited) as info:
        await llm.complete(req())
    await llm.aclose()
    assert len(server.seen) == 3
    err = info.value
    assert (err.status, err.retry_after, err.request_id, err.provider_message) == (429, 0.01, "req-429", "quota")
    assert err.retryable


async def test_429_with_retry_after_beyond_cap_fails_fast(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(status=429, headers={"retry-after": "3600"}))
    llm = make_llm()
    with pytest.raises(LLMRateLimited) as info:
        await llm.complete(req())
    await llm.aclose()
    assert len(server.seen) == 1 and info.value.retry_after == 3600


async def test_500_then_success(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(status=500, body={"error": "oops"}), Reply(status=503, body="busy"), Reply(status=408), Reply(body=completion("recovered")))
    llm = make_llm()
    assert (await llm.complete(req())).text == "recovered"
    await llm.aclose()
    assert len(server.seen) == 4


async def test_500_forever_gives_up_after_max_retries(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(status=502, body={"error": {"message": "bad gateway"}}, headers={"x-request-id": "req-502"}))
    llm = make_llm(max_retries=3)
    with pytest.raises(LLMServerError) as info:
        await llm.complete(req())
    await llm.aclose()
    assert len(server.seen) == 4
    assert (info.value.status, info.value.request_id, info.value.provider_message) == (502, "req-502", "bad gateway")


async def test_stream_retries_before_first_byte(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(status=500), Reply(sse=[sse_chunk("ok", "stop"), "[DONE]"]))
    llm = make_llm()
    items = [i async for i in llm.stream(req())]
    await llm.aclose()
    assert isinstance(items[-1], StreamEnd) and items[-1].response.text == "ok" and len(server.seen) == 2


@pytest.mark.parametrize(
    "status, body, error",
    [
        (400, {"error": {"message": "Invalid value for temperature"}}, LLMBadRequest),
        (404, {"error": {"message": "model not found"}}, LLMBadRequest),
        (422, {"detail": "unprocessable"}, LLMBadRequest),
        (401, {"error": {"message": "Invalid API key"}}, LLMAuthError),
        (403, {"error": {"message": "forbidden"}}, LLMAuthError),
        (400, {"error": {"message": "This model's maximum context length is 4096 tokens. However, you requested 9000 tokens.", "code": "context_length_exceeded"}}, ContextWindowExceeded),
        (400, {"error": "the request exceeds the available context size, try increasing it"}, ContextWindowExceeded),
    ],
)
async def test_client_errors_are_never_retried(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM], status: int, body: dict, error: type) -> None:
    server.script(Reply(status=status, body=body, headers={"x-request-id": "req-4xx"}))
    llm = make_llm()
    with pytest.raises(error) as info:
        await llm.complete(req())
    await llm.aclose()
    assert len(server.seen) == 1
    assert info.value.status == status and info.value.request_id == "req-4xx"
    assert info.value.provider_message and not info.value.retryable


async def test_timeout(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(delay_s=1.5, body=completion("too late")))
    llm = make_llm(timeout_s=0.2, max_retries=1)
    started = time.monotonic()
    with pytest.raises(LLMTimeout):
        await llm.complete(req())
    await llm.aclose()
    assert len(server.seen) == 2 and time.monotonic() - started < 1.5


async def test_connection_refused_is_a_server_error(make_llm: Callable[..., OpenAICompatibleLLM], server: ScriptedServer) -> None:
    await server.stop()
    llm = make_llm(max_retries=1)
    with pytest.raises(LLMServerError) as info:
        await llm.complete(req())
    await llm.aclose()
    assert "cannot reach" in str(info.value)
    await server.start()  # the fixture stops it again


@pytest.mark.parametrize(
    "body",
    ["this is not json", {"object": "chat.completion"}, {"choices": []}, {"choices": [{"finish_reason": "stop"}]}],
)
async def test_malformed_bodies(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM], body: object) -> None:
    server.script(Reply(body=body))  # type: ignore[arg-type]
    llm = make_llm()
    with pytest.raises(LLMMalformedResponse):
        await llm.complete(req())
    await llm.aclose()
    assert len(server.seen) == 1


async def test_malformed_stream_event(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    server.script(Reply(sse=[sse_chunk("a"), "{broken", "[DONE]"]))
    llm = make_llm()
    with pytest.raises(LLMMalformedResponse):
        async for _ in llm.stream(req()):
            pass
    await llm.aclose()


async def test_window_checked_before_any_network_call(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM]) -> None:
    llm = make_llm()
    long_text = "lorem ipsum dolor sit amet " * 1000
    with pytest.raises(ContextWindowExceeded) as info:
        await llm.complete(req(long_text, max_tokens=100))
    with pytest.raises(ContextWindowExceeded):
        async for _ in llm.stream(req(long_text)):
            pass
    await llm.aclose()
    assert server.seen == []
    assert info.value.window == 4096 and info.value.prompt_tokens > 4096


async def test_api_key_never_leaks(server: ScriptedServer, make_llm: Callable[..., OpenAICompatibleLLM], caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level("DEBUG")
    llm = make_llm(max_retries=1)
    assert SECRET not in repr(llm) and "***" in repr(llm)
    server.script(Reply(status=401, body={"error": {"message": f"Incorrect API key provided: {SECRET}"}}))
    with pytest.raises(LLMAuthError) as auth:
        await llm.complete(req())
    server.script(Reply(status=500, body=f"crash while using {SECRET}"))
    with pytest.raises(LLMServerError) as crash:
        await llm.complete(req())
    await llm.aclose()
    for err in (auth.value, crash.value):
        assert SECRET not in str(err) and SECRET not in repr(err) and SECRET not in err.provider_message
        assert SECRET not in repr(err.fields)
    assert "***" in auth.value.provider_message
    assert SECRET not in caplog.text


async def test_shared_http_client_is_used_and_left_open(server: ScriptedServer) -> None:
    server.script(Reply(body=completion("via shared client")))
    async with httpx.AsyncClient() as shared:
        llm = OpenAICompatibleLLM(server.base_url, "m", profile=PROFILE, http_client=shared)
        assert (await llm.complete(req())).text == "via shared client"
        await llm.aclose()
        assert not shared.is_closed
    assert "authorization" not in server.seen[0].headers


def test_parse_retry_after_and_redaction() -> None:
    now = datetime(2025, 1, 1, tzinfo=timezone.utc)
    assert parse_retry_after(httpx.Headers({"retry-after": "2.5"})) == 2.5
    assert parse_retry_after(httpx.Headers({"retry-after-ms": "150"})) == 0.15
    assert parse_retry_after(httpx.Headers({"retry-after": "Wed, 01 Jan 2025 00:00:30 GMT"}), now) == 30.0
    assert parse_retry_after(httpx.Headers({"retry-after": "soon"})) is None
    assert parse_retry_after(httpx.Headers({})) is None
    assert redact_url("http://user:pw@host:8000/v1") == "http://***@host:8000/v1"
    assert redact_url("http://host/v1") == "http://host/v1"
