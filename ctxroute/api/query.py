"""The question routes: ``/route`` (decision only) and ``/query`` (answer, JSON or SSE)."""
from __future__ import annotations

import asyncio
import json
import time
from typing import Any, AsyncIterator

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, StreamingResponse

from ctxroute.api import errors as api_errors
from ctxroute.api import models as M
from ctxroute.api.backend import QueryOptions
from ctxroute.api.cache import CacheKey
from ctxroute.api.deps import Name, Services, Svc, Tenant
from ctxroute.api.errors import RequestTimeout
from ctxroute.errors import CtxrouteError, InputError, InputTooLarge

router = APIRouter()
_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def check_question(svc: Services, question: str) -> None:
    if len(question) > svc.settings.max_question_chars:
        raise InputTooLarge(
            f"question of {len(question)} characters exceeds the {svc.settings.max_question_chars}-character "
            "limit (CTXROUTE_MAX_QUESTION_CHARS); shorten it"
        )
    if not question.strip():
        raise InputError("the question is empty; send a non-blank 'question'")


def _timeout(limit: float) -> RequestTimeout:
    return RequestTimeout(f"the answer took longer than {limit:g} s (CTXROUTE_REQUEST_TIMEOUT_S); retry, "
                          "set a smaller budget, or force route 'rag'")


@router.post("/v1/collections/{name}/route", response_model=M.RouteOut, tags=["questions"])
async def route(name: Name, body: M.RouteIn, svc: Svc, t: Tenant) -> M.RouteOut:
    check_question(svc, body.question)
    opts = QueryOptions.of(body)
    return await svc.backend.route(t, name, body.question, opts)


@router.post(
    "/v1/collections/{name}/query", response_model=M.QueryOut, tags=["questions"],
    responses={200: {"content": {"text/event-stream": {"description": "with stream=true: events "
                                                        "decision, delta, citation, done (or error)"}}}},
)
async def query(name: Name, body: M.QueryIn, request: Request, svc: Svc, t: Tenant) -> Any:
    check_question(svc, body.question)
    opts = QueryOptions.of(body)
    version = (await svc.backend.open(t, name)).version
    key = CacheKey(
        tenant=t, collection=name, version=version, question=body.question, route=body.route or "auto",
        model=svc.backend.model_name, options=opts.cache_part(),
    )
    rid = api_errors.request_id(request)
    stream = body.stream or "text/event-stream" in request.headers.get("accept", "")
    cached = await svc.cache.get(key) if body.cache else None
    svc.metrics.cache.labels("hit" if cached else "miss").inc()
    if cached is not None:
        cached.update(cached=True, request_id=rid)
        if stream:
            return StreamingResponse(_replay(cached), media_type="text/event-stream", headers=_SSE_HEADERS)
        return JSONResponse(cached)  # stored from a validated QueryOut: no second validation
    if svc.backend.uses_llm:
        await svc.limits.check_tokens(t)
    if stream:
        gen = _stream(svc, t, name, body, opts, key, rid)
        return StreamingResponse(gen, media_type="text/event-stream", headers=_SSE_HEADERS)
    try:
        out = await asyncio.wait_for(svc.backend.answer(t, name, body.question, opts), svc.settings.request_timeout_s)
    except asyncio.TimeoutError:
        raise _timeout(svc.settings.request_timeout_s) from None
    await _account(svc, t, out)
    payload = out.model_dump()
    if body.cache and _cacheable(out):
        await svc.cache.put(key, payload)
    payload.update(request_id=rid)
    return JSONResponse(payload)  # already a validated QueryOut


def _cacheable(out: M.QueryOut) -> bool:
    """An answer degraded by a failed LLM call (extractive fallback) is not cached: the next
    request should try the LLM again."""
    return not any("->extractive:" in f for f in out.fallbacks_taken)


async def _account(svc: Services, tenant: str, out: M.QueryOut) -> None:
    m = svc.metrics
    m.routes.labels(out.route_taken).inc()
    m.tokens.labels(tenant, "prompt").inc(out.usage.prompt_tokens)
    m.tokens.labels(tenant, "completion").inc(out.usage.completion_tokens)
    m.cost.inc(out.usage.cost)
    for stage, ms in out.latency_ms.items():
        m.stage_latency.labels(stage).observe(ms / 1000.0)
    await svc.limits.record_tokens(tenant, out.usage.prompt_tokens + out.usage.completion_tokens)


async def _replay(payload: dict[str, Any]) -> AsyncIterator[bytes]:
    """A cached answer as the same event sequence a live stream sends."""
    yield _sse("decision", payload["decision"])
    yield _sse("delta", {"text": payload["answer"]})
    for c in payload["citations"]:
        yield _sse("citation", c)
    yield _sse("done", payload)


async def _stream(
    svc: Services, tenant: str, name: str, body: M.QueryIn, opts: QueryOptions, key: CacheKey, rid: str,
) -> AsyncIterator[bytes]:
    """decision -> delta* -> citation* -> done (the full answer, citations included, so none is
    lost if a client drops events); an ``error`` event with the error shape ends a failed stream."""
    limit = svc.settings.request_timeout_s
    deadline = time.monotonic() + limit
    events = svc.backend.answer_stream(tenant, name, body.question, opts)
    done = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise _timeout(limit)
            try:
                kind, data = await asyncio.wait_for(anext(events), remaining)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise _timeout(limit) from None  # the generator was cancelled: it cannot be resumed
            if kind == "done":
                done = True
                out: M.QueryOut = data
                await _account(svc, tenant, out)
                payload = out.model_dump()
                if body.cache and _cacheable(out):
                    await svc.cache.put(key, payload)
                payload.update(request_id=rid)
                yield _sse("done", payload)
            else:
                yield _sse(kind, data)
        if not done:
            raise CtxrouteError("the answer stream ended without a final answer; retry the request")
    except CtxrouteError as exc:
        status = api_errors.status_of(exc)
        message = exc.message if status < 500 else f"{exc.code}: the answer failed; retry or report request id {rid}"
        yield _sse("error", {"code": exc.code, "message": message, "request_id": rid, "status": status})
    except Exception:  # noqa: BLE001 - a stream must end with the error shape, not a cut connection
        api_errors.log.exception("stream %s failed", rid)
        yield _sse("error", {"code": "internal_error", "message": f"internal error; report request id {rid}",
                             "request_id": rid, "status": 500})
    finally:
        await events.aclose()
