"""``OpenAICompatibleLLM``: any server speaking OpenAI's ``/chat/completions`` (OpenAI, vLLM,
llama.cpp ``llama-server``, Ollama, LM Studio, TGI, LiteLLM...), over ``httpx``.

Retries 429 (honouring ``Retry-After``), 5xx, timeouts and transport errors with exponential
backoff and full jitter; never retries other 4xx. Every failure becomes one of the
``ctxroute.errors.LLMError`` subclasses with status, provider message, ``retry_after`` and the
``x-request-id``. The API key never appears in reprs, errors or logs.
"""
from __future__ import annotations

import asyncio
import json
import logging
import random
import time
from typing import Any, AsyncIterator, NoReturn

import httpx
from httpx_sse import EventSource, SSEError

from ctxroute.errors import (
    ContextWindowExceeded,
    InputError,
    LLMBadRequest,
    LLMError,
    LLMMalformedResponse,
    LLMServerError,
    LLMTimeout,
)
from ctxroute.pipelines.llm.http_errors import (  # noqa: F401 - redact_url, parse_retry_after, CONTEXT_LENGTH_PATTERN: public here too
    _MAX_PROVIDER_MESSAGE, CONTEXT_LENGTH_PATTERN, _Retry, error_for, parse_retry_after, redact_url, transport_error,
)
from ctxroute.pipelines.llm.base import LLMRequest, LLMResponse, StreamDelta, StreamEnd, StreamItem, prompt_text
from ctxroute.retrievers.tokens import TokenCounter, get_counter
from ctxroute.types import ModelProfile

logger = logging.getLogger(__name__)

def counter_for(profile: ModelProfile) -> TokenCounter:
    """tiktoken counter for a profile; non-tiktoken tokenizers are approximated by cl100k_base."""
    return get_counter("o200k_base" if profile.tokenizer == "o200k_base" else "cl100k_base")


class OpenAICompatibleLLM:
    """Chat completions over HTTP. ``base_url`` includes the version, e.g. ``http://host:8000/v1``."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None = None,
        *,
        profile: ModelProfile,
        timeout_s: float = 120.0,
        max_retries: int = 4,
        backoff_base_s: float = 0.5,
        backoff_max_s: float = 20.0,
        http_client: httpx.AsyncClient | None = None,
        rng: random.Random | None = None,
    ) -> None:
        if not base_url.startswith(("http://", "https://")):
            raise InputError(
                f"LLM base URL {redact_url(base_url)!r} must start with http:// or https://, e.g. http://localhost:8000/v1",
                base_url=redact_url(base_url),
            )
        if max_retries < 0 or timeout_s <= 0:
            raise InputError(f"max_retries must be >= 0 and timeout_s > 0, got {max_retries} and {timeout_s}")
        self.base_url = base_url.rstrip("/")
        self.model = model
        self.profile = profile
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s
        self.backoff_max_s = backoff_max_s
        self.__api_key = api_key or None
        self._own_client = http_client is None
        self._client = http_client
        self._client_loop: asyncio.AbstractEventLoop | None = None
        self._rng = rng or random.Random()
        self._counter = counter_for(profile)
        self._send_stream_options = True

    def __repr__(self) -> str:
        key = "'***'" if self.__api_key else "None"
        return f"OpenAICompatibleLLM(base_url={redact_url(self.base_url)!r}, model={self.model!r}, api_key={key}, profile={self.profile.name!r})"

    # --- plumbing -------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    def _http(self) -> httpx.AsyncClient:
        """The shared client, created lazily (again if the event loop changed)."""
        if not self._own_client:
            assert self._client is not None
            return self._client
        loop = asyncio.get_running_loop()
        if self._client is None or self._client.is_closed or self._client_loop is not loop:
            self._client = httpx.AsyncClient(
                timeout=httpx.Timeout(self.timeout_s, connect=min(10.0, self.timeout_s)),
                limits=httpx.Limits(max_connections=64, max_keepalive_connections=16),
            )
            self._client_loop = loop
        return self._client

    async def aclose(self) -> None:
        if self._own_client and self._client is not None and not self._client.is_closed:
            try:
                await self._client.aclose()
            except RuntimeError:  # created on an event loop that is gone
                pass
        if self._own_client:
            self._client = None

    def _headers(self) -> dict[str, str]:
        headers = {"content-type": "application/json", "accept": "application/json"}
        if self.__api_key:
            headers["authorization"] = f"Bearer {self.__api_key}"
        return headers

    def _redact(self, text: str) -> str:
        if self.__api_key and self.__api_key in text:
            text = text.replace(self.__api_key, "***")
        return text

    def _body(self, request: LLMRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": [{"role": m.role, "content": m.content} for m in request.messages],
            "max_tokens": request.max_tokens,
            "temperature": request.temperature,
        }
        if request.stop:
            body["stop"] = list(request.stop)
        if stream:
            body["stream"] = True
            if self._send_stream_options:
                body["stream_options"] = {"include_usage": True}
        return body

    def _check_window(self, request: LLMRequest) -> int:
        prompt_tokens = self.count_tokens(prompt_text(request.messages))
        if prompt_tokens + request.max_tokens > self.profile.context_window:
            raise ContextWindowExceeded(
                f"prompt of {prompt_tokens} tokens + max_tokens {request.max_tokens} exceeds the "
                f"{self.profile.context_window}-token window of {self.profile.name!r}; shorten the prompt, "
                f"lower max_tokens or pick a route that splits the document",
                prompt_tokens=prompt_tokens,
                window=self.profile.context_window,
            )
        return prompt_tokens

    def _backoff(self, attempt: int) -> float:
        return self._rng.uniform(0.0, min(self.backoff_max_s, self.backoff_base_s * (2**attempt)))

    def _error_for(self, response: httpx.Response) -> LLMError | _Retry:
        """The error for a non-2xx response, wrapped in ``_Retry`` when retrying can help."""
        return error_for(response, base_url=self.base_url, model=self.model,
                         window=self.profile.context_window, redact=self._redact)

    def _transport_error(self, exc: Exception) -> _Retry:
        return transport_error(exc, base_url=self.base_url, timeout_s=self.timeout_s, redact=self._redact)

    async def _with_retries(self, attempt_once: Any) -> Any:
        """Run ``attempt_once()`` with retries; it raises ``_Retry`` for retryable failures."""
        attempt = 0
        while True:
            try:
                return await attempt_once()
            except _Retry as retry:
                if attempt >= self.max_retries:
                    raise retry.error from None
                if retry.wait_s is not None and retry.wait_s > self.backoff_max_s:
                    raise retry.error from None  # the server wants a longer pause than we may take
                wait = self._backoff(attempt)
                if retry.wait_s is not None:
                    wait = max(wait, retry.wait_s)
                logger.info("LLM call failed (%s); retry %d/%d in %.2f s", retry.error.code, attempt + 1, self.max_retries, wait)
                attempt += 1
                await asyncio.sleep(wait)

    # --- completion -----------------------------------------------------------------
    async def complete(self, request: LLMRequest) -> LLMResponse:
        prompt_tokens = self._check_window(request)
        body = self._body(request, stream=False)
        start = time.perf_counter()

        async def once() -> httpx.Response:
            try:
                response = await self._http().post(f"{self.base_url}/chat/completions", json=body, headers=self._headers())
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise self._transport_error(exc) from None
            if response.is_success:
                return response
            raise self._error_for(response)

        response = await self._with_retries(once)
        return self._parse_completion(response, request, prompt_tokens, (time.perf_counter() - start) * 1000.0)

    def _malformed(self, what: str, response: httpx.Response, excerpt: str | None = None) -> NoReturn:
        if excerpt is None:
            try:
                excerpt = response.text
            except httpx.ResponseNotRead:  # a stream
                excerpt = ""
        raise LLMMalformedResponse(
            f"{redact_url(self.base_url)} answered with {what}; is it an OpenAI-compatible /chat/completions endpoint?",
            status=response.status_code,
            provider_message=self._redact(excerpt[:_MAX_PROVIDER_MESSAGE]),
            request_id=response.headers.get("x-request-id"),
        )

    def _parse_completion(self, response: httpx.Response, request: LLMRequest, prompt_tokens: int, latency_ms: float) -> LLMResponse:
        try:
            data = response.json()
        except ValueError:
            self._malformed("a body that is not JSON", response)
        if not isinstance(data, dict):
            self._malformed("JSON that is not an object", response)
        choices = data.get("choices")
        if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
            self._malformed("no choices", response)
        message = choices[0].get("message")
        if not isinstance(message, dict):
            self._malformed("a choice without a message", response)
        text = message.get("content") or ""
        if not isinstance(text, str):
            self._malformed("message content that is not a string", response)
        usage = data.get("usage") if isinstance(data.get("usage"), dict) else {}
        return LLMResponse(
            text=text,
            prompt_tokens=int(usage.get("prompt_tokens") or prompt_tokens),
            completion_tokens=int(usage.get("completion_tokens") or self.count_tokens(text)),
            model=str(data.get("model") or self.model),
            finish_reason=str(choices[0].get("finish_reason") or "stop"),
            latency_ms=latency_ms,
        )

    # --- streaming ------------------------------------------------------------------
    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]:
        prompt_tokens = self._check_window(request)
        start = time.perf_counter()
        url = f"{self.base_url}/chat/completions"

        async def once() -> httpx.Response:
            client = self._http()
            body = self._body(request, stream=True)
            try:
                response = await client.send(client.build_request("POST", url, json=body, headers=self._headers()), stream=True)
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise self._transport_error(exc) from None
            if response.is_success:
                return response
            try:
                await response.aread()
            except (httpx.TimeoutException, httpx.TransportError) as exc:
                raise self._transport_error(exc) from None
            finally:
                await response.aclose()
            err = self._error_for(response)
            if (
                isinstance(err, LLMBadRequest)
                and self._send_stream_options
                and "stream_options" in err.provider_message
            ):  # an older server that rejects stream_options: count usage ourselves
                self._send_stream_options = False
                return await once()
            raise err

        response = await self._with_retries(once)
        try:
            if "text/event-stream" not in response.headers.get("content-type", ""):
                await response.aread()  # the server ignored stream=true and answered in one piece
                full = self._parse_completion(response, request, prompt_tokens, (time.perf_counter() - start) * 1000.0)
                if full.text:
                    yield StreamDelta(full.text)
                yield StreamEnd(full)
                return
            parts: list[str] = []
            usage: dict[str, Any] = {}
            finish = "stop"
            model = self.model
            async for event in EventSource(response).aiter_sse():
                if event.data.strip() == "[DONE]":
                    break
                if not event.data.strip():
                    continue
                try:
                    chunk = json.loads(event.data)
                except ValueError:
                    self._malformed("a stream event that is not JSON", response, event.data)
                if not isinstance(chunk, dict):
                    self._malformed("a stream event that is not a JSON object", response, event.data)
                if "error" in chunk:
                    err = chunk["error"]
                    msg = err.get("message", str(err)) if isinstance(err, dict) else str(err)
                    raise LLMServerError(
                        f"{redact_url(self.base_url)} failed mid-stream: {self._redact(msg)}",
                        provider_message=self._redact(str(msg))[:_MAX_PROVIDER_MESSAGE],
                        request_id=response.headers.get("x-request-id"),
                    )
                model = str(chunk.get("model") or model)
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or ():
                    delta = choice.get("delta") or {}
                    piece = delta.get("content")
                    if isinstance(piece, str) and piece:
                        parts.append(piece)
                        yield StreamDelta(piece)
                    if choice.get("finish_reason"):
                        finish = str(choice["finish_reason"])
        except httpx.TimeoutException:
            raise LLMTimeout(f"{redact_url(self.base_url)} stopped sending within {self.timeout_s:g} s mid-stream") from None
        except (httpx.TransportError, SSEError) as exc:
            raise LLMServerError(f"stream from {redact_url(self.base_url)} broke: {type(exc).__name__}: {self._redact(str(exc))}") from None
        finally:
            await response.aclose()
        text = "".join(parts)
        yield StreamEnd(
            LLMResponse(
                text=text,
                prompt_tokens=int(usage.get("prompt_tokens") or prompt_tokens),
                completion_tokens=int(usage.get("completion_tokens") or self.count_tokens(text)),
                model=model,
                finish_reason=finish,
                latency_ms=(time.perf_counter() - start) * 1000.0,
            )
        )
