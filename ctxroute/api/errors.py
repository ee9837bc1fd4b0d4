"""One error shape for every failure, ``{code, message, request_id}``, and the mapping from
library errors to HTTP statuses. Unknown exceptions become a 500 that leaks no internals."""
from __future__ import annotations

import logging
import math
import uuid

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from ctxroute import errors as E

log = logging.getLogger("ctxroute.api")


class ApiError(E.CtxrouteError):
    """An error raised by the service itself with an explicit status."""

    status = 400

    def __init__(self, message: str, *, retry_after: float | None = None, **fields: object) -> None:
        super().__init__(message, **fields)
        self.retry_after = retry_after


class Unauthorized(ApiError):
    code = "unauthorized"
    status = 401


class Forbidden(ApiError):
    code = "forbidden"
    status = 403


class RateLimited(ApiError):
    code = "rate_limited"
    status = 429
    retryable = True


class TenantBudgetExhausted(ApiError):
    code = "token_budget_exhausted"
    status = 429
    retryable = True


class NotReady(ApiError):
    code = "not_ready"
    status = 503
    retryable = True


class RequestTimeout(ApiError):
    code = "timeout"
    status = 504
    retryable = True


class BodyTooLarge(ApiError):
    code = "too_large"
    status = 413

    def __init__(self, limit: int) -> None:
        super().__init__(
            f"request body exceeds {limit} bytes; raise CTXROUTE_MAX_UPLOAD_MB or split the upload into several requests"
        )


def status_of(exc: E.CtxrouteError) -> int:
    """HTTP status for a library or service error."""
    if isinstance(exc, ApiError):
        return exc.status
    if isinstance(exc, E.InputTooLarge):
        return 413
    if isinstance(exc, E.DocumentError):
        return 422
    if isinstance(exc, E.InputError):
        return 400
    if isinstance(exc, E.NotFound):
        return 404
    if isinstance(exc, E.Conflict):
        return 409
    if isinstance(exc, (E.LLMRateLimited, E.BudgetExceeded)):
        return 429
    if isinstance(exc, E.LLMTimeout):
        return 504
    if isinstance(exc, E.LLMError):
        return 502
    if isinstance(exc, E.ManifestMismatch):
        return 409
    if isinstance(exc, E.StoreUnavailable):
        return 503
    return 500


def retry_after_of(exc: E.CtxrouteError) -> float | None:
    value = getattr(exc, "retry_after", None)
    if value is None and (status_of(exc) == 429 or isinstance(exc, E.StoreUnavailable)):
        return 1.0
    return value


def request_id(request: Request) -> str:
    rid = getattr(request.state, "request_id", None)
    if not rid:
        rid = uuid.uuid4().hex
        request.state.request_id = rid
    return rid


def error_body(code: str, message: str, rid: str) -> dict[str, str]:
    return {"code": code, "message": message, "request_id": rid}


def error_response(request: Request, status: int, code: str, message: str, retry_after: float | None = None) -> JSONResponse:
    rid = request_id(request)
    headers = {}  # X-Request-ID is added to every response by the app's middleware
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return JSONResponse(error_body(code, message, rid), status_code=status, headers=headers)


def ctxroute_error_response(request: Request, exc: E.CtxrouteError) -> JSONResponse:
    status = status_of(exc)
    if status >= 500:
        log.warning("request %s failed: %s: %s", request_id(request), type(exc).__name__, exc.message)
    message = exc.message
    if isinstance(exc, E.LLMError) and not isinstance(exc, (E.LLMRateLimited, E.LLMTimeout)):
        message = f"the language model call failed ({exc.code}); try again later or check the LLM server"
    return error_response(request, status, exc.code, message, retry_after_of(exc) if status in (429, 503) else None)


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for err in exc.errors()[:5]:
        loc = ".".join(str(p) for p in err.get("loc", ()) if p not in ("body",))
        parts.append(f"{loc or 'body'}: {err.get('msg', 'invalid')}")
    return "invalid request: " + "; ".join(parts)


def _allowed_methods(request: Request) -> str:
    """Every method some route accepts for this path (Starlette names only the first route's)."""
    from starlette.routing import Match

    methods = []
    for method in ("DELETE", "GET", "PATCH", "POST", "PUT"):
        scope = dict(request.scope, method=method)
        if any(route.matches(scope)[0] == Match.FULL for route in request.app.router.routes):
            methods.append(method)
    return ", ".join(methods)


def install(app: FastAPI) -> None:
    """Register the handlers that give every error the same shape."""

    @app.exception_handler(E.CtxrouteError)
    async def _ctx(request: Request, exc: E.CtxrouteError) -> JSONResponse:
        return ctxroute_error_response(request, exc)

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> JSONResponse:
        return error_response(request, 422, "invalid_request", _validation_message(exc))

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if getattr(request.state, "body_too_large", False):
            return ctxroute_error_response(request, BodyTooLarge(getattr(request.state, "max_body", 0)))
        codes = {404: "not_found", 405: "method_not_allowed", 401: "unauthorized", 413: "too_large"}
        message = exc.detail if isinstance(exc.detail, str) else "request failed"
        if exc.status_code == 404 and message == "Not Found":
            message = f"no route {request.method} {request.url.path}; see /docs for the API"
        response = error_response(request, exc.status_code, codes.get(exc.status_code, "http_error"), message)
        for name, value in (exc.headers or {}).items():  # e.g. Allow on a 405
            response.headers[name] = value
        if exc.status_code == 405:
            response.headers["Allow"] = _allowed_methods(request) or response.headers.get("Allow", "")
        return response

    @app.exception_handler(Exception)
    async def _unknown(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error in request %s", request_id(request))
        return error_response(
            request, 500, "internal_error",
            f"internal error; report request id {request_id(request)} to the operator",
        )
