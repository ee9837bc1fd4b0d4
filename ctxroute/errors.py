"""One error hierarchy for the whole library (layer 0).

Every error carries structured fields and a message that names the bad value and the fix.
``retryable`` tells callers (and the API's error mapping) whether trying again can help.
"""
from __future__ import annotations


class CtxrouteError(Exception):
    """Base class of every error ctxroute raises on purpose."""

    code = "ctxroute_error"
    retryable = False

    def __init__(self, message: str, **fields: object) -> None:
        super().__init__(message)
        self.message = message
        self.fields = fields

    def __str__(self) -> str:
        return self.message


# --- bad input -------------------------------------------------------------------
class InputError(CtxrouteError):
    """The caller gave something unusable (empty, binary, too large, malformed)."""

    code = "bad_input"


class DocumentError(InputError):
    """A document could not be loaded: ``path`` and ``reason`` say which and why."""

    code = "bad_document"

    def __init__(self, path: str, reason: str) -> None:
        super().__init__(f"{path}: {reason}", path=path, reason=reason)
        self.path = path
        self.reason = reason


class InputTooLarge(InputError):
    code = "too_large"


class NotFound(CtxrouteError):
    code = "not_found"


class CollectionNotFound(NotFound):
    code = "collection_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"collection {name!r} does not exist; list them with `ctxroute collections list` "
            f"or create it with `ctxroute ingest PATH --collection {name}`",
            name=name,
        )
        self.name = name


class DocumentNotFound(NotFound):
    code = "document_not_found"


class Conflict(CtxrouteError):
    code = "conflict"


class ManifestMismatch(CtxrouteError):
    """A stored collection does not match the code or the configured embedder."""

    code = "manifest_mismatch"


class StoreUnavailable(CtxrouteError):
    """A shared collection store (PostgreSQL) cannot be reached; retry when it is back."""

    code = "store_unavailable"
    retryable = True


class BudgetExceeded(CtxrouteError):
    """No route fits the request's token or cost budget."""

    code = "budget_exceeded"


# --- LLM -------------------------------------------------------------------------
class LLMError(CtxrouteError):
    """An LLM call failed. Fields: status, provider_message, retry_after, request_id."""

    code = "llm_error"

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        provider_message: str = "",
        retry_after: float | None = None,
        request_id: str | None = None,
    ) -> None:
        super().__init__(
            message,
            status=status,
            provider_message=provider_message,
            retry_after=retry_after,
            request_id=request_id,
        )
        self.status = status
        self.provider_message = provider_message
        self.retry_after = retry_after
        self.request_id = request_id


class LLMAuthError(LLMError):
    code = "llm_auth"


class LLMRateLimited(LLMError):
    code = "llm_rate_limited"
    retryable = True


class LLMTimeout(LLMError):
    code = "llm_timeout"
    retryable = True


class LLMServerError(LLMError):
    code = "llm_server_error"
    retryable = True


class LLMBadRequest(LLMError):
    code = "llm_bad_request"


class LLMMalformedResponse(LLMError):
    code = "llm_malformed_response"


class ContextWindowExceeded(LLMError):
    """The prompt does not fit the model's window: a routing signal, not a server error."""

    code = "context_window_exceeded"

    def __init__(self, message: str, *, prompt_tokens: int = 0, window: int = 0, **kw: object) -> None:
        super().__init__(message, **kw)  # type: ignore[arg-type]
        self.prompt_tokens = prompt_tokens
        self.window = window
