"""HTTP failures of OpenAI-compatible servers mapped to ``ctxroute.errors.LLMError``s
(``openai.py``): status, provider message, ``Retry-After`` and request id kept; retryable ones
wrapped in ``_Retry``."""
from __future__ import annotations

import email.utils
import json
import re
from datetime import datetime, timezone
from typing import Any, Callable
from urllib.parse import urlsplit, urlunsplit

import httpx

from ctxroute.errors import (
    ContextWindowExceeded,
    LLMAuthError,
    LLMBadRequest,
    LLMError,
    LLMRateLimited,
    LLMServerError,
    LLMTimeout,
)

# what servers say when the prompt is too long (OpenAI, vLLM, llama.cpp, TGI, Ollama, Anthropic proxies)
CONTEXT_LENGTH_PATTERN = re.compile(
    r"maximum context length|context_length_exceeded|context (length|size|window)|too many tokens|"
    r"exceeds? the context|exceed_context_size|prompt is too long|input is too long|"
    r"reduce the length|tokens? limit|longer than the model",
    re.IGNORECASE,
)
_MAX_PROVIDER_MESSAGE = 500


def redact_url(url: str) -> str:
    """``url`` with any ``user:password@`` removed (safe to show)."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, f"***@{host}", parts.path, parts.query, parts.fragment))


def parse_retry_after(headers: httpx.Headers, now: datetime | None = None) -> float | None:
    """Seconds to wait from ``retry-after-ms``, or ``Retry-After`` as seconds or an HTTP date."""
    ms = headers.get("retry-after-ms")
    if ms:
        try:
            return max(0.0, float(ms) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, (when - (now or datetime.now(timezone.utc))).total_seconds())


class _Retry(Exception):
    """Internal: a retryable failure and how long the server asked us to wait."""

    def __init__(self, error: LLMError, wait_s: float | None = None) -> None:
        super().__init__(error.message)
        self.error = error
        self.wait_s = wait_s


def provider_message(response: httpx.Response, redact: Callable[[str], str]) -> str:
    """The provider's own error message (``error.message`` and kin, else the body), redacted."""
    text = response.text
    try:
        data = json.loads(text)
    except ValueError:
        data = None
    message = text
    if isinstance(data, dict):
        err = data.get("error", data.get("detail", data.get("message")))
        if isinstance(err, dict):
            err = err.get("message") or err.get("code") or json.dumps(err)
        if isinstance(err, str) and err:
            message = err
    return redact(message.strip()[:_MAX_PROVIDER_MESSAGE])


def error_for(response: httpx.Response, *, base_url: str, model: str, window: int,
              redact: Callable[[str], str]) -> LLMError | _Retry:
    """The error for a non-2xx response, wrapped in ``_Retry`` when retrying can help."""
    status = response.status_code
    provider = provider_message(response, redact)
    request_id = response.headers.get("x-request-id")
    where = f"{redact_url(base_url)} (model {model!r})"
    fields: dict[str, Any] = {"status": status, "provider_message": provider, "request_id": request_id}
    if status == 429:
        retry_after = parse_retry_after(response.headers)
        err: LLMError = LLMRateLimited(
            f"rate limited by {where}: {provider or 'HTTP 429'}; slow down or raise the provider's quota",
            retry_after=retry_after,
            **fields,
        )
        return _Retry(err, retry_after)
    if status == 408:
        return _Retry(LLMTimeout(f"{where} timed out the request (HTTP 408): {provider}", **fields))
    if status >= 500:
        return _Retry(LLMServerError(f"server error {status} from {where}: {provider}", **fields))
    if status in (401, 403):
        return LLMAuthError(
            f"{where} rejected the credentials (HTTP {status}): {provider}; check CTXROUTE_LLM_API_KEY", **fields
        )
    if CONTEXT_LENGTH_PATTERN.search(provider):
        return ContextWindowExceeded(
            f"{where} says the prompt is too long: {provider}; shorten it or pick a route that splits the document",
            window=window,
            **fields,
        )
    hint = "; check CTXROUTE_LLM_MODEL" if status == 404 else ""
    return LLMBadRequest(f"{where} refused the request (HTTP {status}): {provider}{hint}", **fields)


def transport_error(exc: Exception, *, base_url: str, timeout_s: float, redact: Callable[[str], str]) -> _Retry:
    """A timeout or connection failure, as a retryable error."""
    where = redact_url(base_url)
    if isinstance(exc, httpx.TimeoutException):
        return _Retry(LLMTimeout(f"no answer from {where} within {timeout_s:g} s; raise CTXROUTE_LLM_TIMEOUT or use a faster model"))
    return _Retry(LLMServerError(f"cannot reach {where}: {type(exc).__name__}: {redact(str(exc))}; is the server running?"))
