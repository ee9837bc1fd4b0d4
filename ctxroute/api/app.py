"""The FastAPI app: ``create_app(settings)``. Models and indexes load once, in the lifespan;
every error has the shape ``{code, message, request_id}``; collections are tenant-scoped."""
from __future__ import annotations

import asyncio
import json
import time
import uuid
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, AsyncIterator

from fastapi import Depends, FastAPI, File, Query, Request, Response, UploadFile
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctxroute.api import errors as api_errors
from ctxroute.api import models as M
from ctxroute.api.auth import DEV_TENANT, Principal, TenantStore, check_tenant_name, load_pepper, stored_keys_exist
from ctxroute.api.backend import Backend, QueryOptions
from ctxroute.api.cache import AnswerCache, CacheKey
from ctxroute.api.errors import Forbidden, NotReady, RequestTimeout, Unauthorized
from ctxroute.api.jobs import JobHandle, JobManager, JobState
from ctxroute.api.limits import Limits
from ctxroute.api.metrics import CONTENT_TYPE_LATEST, Metrics
from ctxroute.api.redis_link import RedisLink
from ctxroute.api.settings import ApiSettings
from ctxroute.api.ui import mount_ui
from ctxroute.errors import CtxrouteError, DocumentError, InputError, InputTooLarge
from ctxroute.pipelines.llm.base import LLMClient

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"model": M.Error} for s in (400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503, 504)
}


@dataclass
class Services:
    settings: ApiSettings
    tenants: TenantStore
    link: RedisLink
    cache: AnswerCache
    limits: Limits
    metrics: Metrics
    jobs: JobManager
    backend: Backend
    auth_enabled: bool = True
    ready: bool = False


class _ObserveMiddleware:
    """Request id, metrics and latency for every HTTP request (plain ASGI: cheap, and safe
    with streaming responses)."""

    def __init__(self, app: ASGIApp, metrics: Metrics, max_body: int) -> None:
        self.app = app
        self.metrics = metrics
        self.max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        rid = ""
        length = -1
        for k, v in scope.get("headers", ()):
            if k == b"x-request-id":
                rid = v.decode("latin-1")[:64]
            elif k == b"content-length" and v.isdigit():
                length = int(v)
        if not rid or not rid.replace("-", "").isalnum():
            rid = uuid.uuid4().hex
        state = scope.setdefault("state", {})
        state["request_id"] = rid
        state["max_body"] = self.max_body
        start = time.perf_counter()
        status = 500
        received = 0

        async def receive_limited() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    state["body_too_large"] = True  # the error handler turns the parse failure into a 413
                    raise api_errors.BodyTooLarge(self.max_body)
            return message

        status_sent = False

        async def send_wrapper(message: Message) -> None:
            nonlocal status, status_sent
            if message["type"] == "http.response.start":
                status, status_sent = message["status"], True
                message.setdefault("headers", [])
                message["headers"] = list(message["headers"]) + [(b"x-request-id", rid.encode())]
            await send(message)

        try:
            if length > self.max_body:
                state["body_too_large"] = True
                response = api_errors.error_response(
                    Request(scope), 413, "too_large", api_errors.BodyTooLarge(self.max_body).message)
                await response(scope, receive, send_wrapper)
            else:
                await self.app(scope, receive_limited, send_wrapper)
        except Exception:
            # Unknown errors end here (not in the server) so the connection stays usable.
            if status_sent:
                raise
            api_errors.log.exception("unhandled error in request %s", rid)
            response = api_errors.error_response(
                Request(scope), 500, "internal_error", f"internal error; report request id {rid} to the operator")
            await response(scope, receive, send_wrapper)
        finally:
            route = scope.get("route")
            path = getattr(route, "path", "unmatched")
            method = scope.get("method", "")
            self.metrics.requests.labels(method, path, str(status)).inc()
            self.metrics.latency.labels(method, path).observe(time.perf_counter() - start)


def create_app(
    settings: ApiSettings,
    *,
    llm: LLMClient | None = None,
    embedder: Any | None = None,
) -> FastAPI:
    """The service. ``llm`` and ``embedder`` override what ``settings`` would build (tests)."""
    metrics = Metrics()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        home = settings.home
        home.mkdir(parents=True, exist_ok=True)
        tenants = TenantStore(
            home, pepper=load_pepper(home, settings.key_pepper), admin_key=settings.admin_key,
            static_keys=settings.api_keys,
        )
        link = RedisLink(settings.redis_url, on_failure=metrics.redis_failures.inc)
        jobs = JobManager(home)
        jobs.recover()
        backend = Backend(settings, llm=llm, embedder=embedder)
        svc = Services(
            settings=settings, tenants=tenants, link=link,
            cache=AnswerCache(link, ttl_s=settings.cache_ttl_s, size=settings.cache_size),
            limits=Limits(link, rate_per_min=settings.rate_limit_per_min, tokens_per_day=settings.tenant_tokens_per_day),
            metrics=metrics, jobs=jobs, backend=backend,
            auth_enabled=settings.auth_enabled or stored_keys_exist(home),
        )
        app.state.svc = svc
        try:
            await backend.load()
            if settings.demo:
                await backend.ensure_demo(DEV_TENANT)
            svc.ready = True
            yield
        finally:
            svc.ready = False
            await jobs.drain()
            await backend.aclose()
            await link.aclose()
            tenants.close()

    app = FastAPI(
        title="ctxroute",
        summary="Questions over long documents, routed between retrieval, long context and map-reduce, "
        "answered with verified citations.",
        version="0.1.0",
        lifespan=lifespan,
        responses=ERROR_RESPONSES,
    )
    api_errors.install(app)
    app.add_middleware(_ObserveMiddleware, metrics=metrics, max_body=settings.max_upload_bytes + 64 * 1024)
    _routes(app, settings)
    mount_ui(app, services=services, tenant=tenant, principal=principal)  # the web page at /ui
    return app


def app_from_env() -> FastAPI:
    """The app configured from the environment (uvicorn ``--factory`` target for several workers)."""
    settings = ApiSettings.from_env()
    settings.check_bind(stored_keys=stored_keys_exist(settings.home))
    return create_app(settings)


# --- dependencies ------------------------------------------------------------------
async def services(request: Request) -> Services:
    svc: Services | None = getattr(request.app.state, "svc", None)
    if svc is None or not svc.ready:
        raise NotReady("the service is starting or stopping; retry shortly", retry_after=2)
    return svc


Svc = Annotated[Services, Depends(services)]


_bearer = HTTPBearer(auto_error=False, description="an API key: a tenant's, or the admin key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, as a header")


async def principal(
    svc: Svc,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    if not svc.auth_enabled:
        return Principal(tenant=DEV_TENANT, admin=False, key_id="dev")
    key = (bearer.credentials if bearer is not None else header_key or "").strip()
    p = svc.tenants.authenticate(key) if key else None
    if p is None:
        raise Unauthorized(
            "missing or unknown API key; send 'Authorization: Bearer <key>' (ask the operator for a key)"
        )
    return p


Who = Annotated[Principal, Depends(principal)]


async def tenant(svc: Svc, who: Who) -> str:
    if who.tenant is None:
        raise Forbidden("the admin key manages tenants and keys only; use a tenant's key for collections")
    await svc.limits.check_rate(who.tenant)
    return who.tenant


Tenant = Annotated[str, Depends(tenant)]


async def admin(who: Who) -> Principal:
    if who.key_id == "dev":
        raise Forbidden("development mode has no tenants: set CTXROUTE_ADMIN_KEY and restart to manage tenants and keys")
    if not who.admin:
        raise Forbidden("this endpoint needs the admin key (CTXROUTE_ADMIN_KEY)")
    return who


Admin = Annotated[Principal, Depends(admin)]


def _job_out(s: JobState) -> M.JobOut:
    return M.JobOut(
        id=s.id, collection=s.collection, status=s.status, stage=s.stage, progress=round(s.progress, 4),  # type: ignore[arg-type]
        files_total=s.files_total, files_done=s.files_done, documents_added=list(s.documents_added),
        errors=[M.FileErrorOut(file=e.file, message=e.message) for e in s.errors],
        created_at=s.created_at, finished_at=s.finished_at, collection_version=s.collection_version,
    )


def _sse(event: str, data: Any) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n".encode()


def _routes(app: FastAPI, settings: ApiSettings) -> None:  # noqa: C901 - one place for all routes
    # --- health and metrics ----------------------------------------------------------
    @app.get("/healthz", response_model=M.Health, tags=["ops"])
    async def healthz() -> M.Health:
        return M.Health(status="ok")

    @app.get("/readyz", response_model=M.Health, tags=["ops"])
    async def readyz(request: Request) -> Any:
        svc: Services | None = getattr(request.app.state, "svc", None)
        if svc is None or not svc.ready:
            return api_errors.error_response(request, 503, "not_ready", "models and indexes are still loading", 2)
        checks: dict[str, bool | str] = dict(svc.backend.checks())
        if svc.link.configured:
            checks["redis"] = "ok" if await svc.link.ping() else "degraded (in-process fallback)"
        return M.Health(status="ready", checks=checks)

    @app.get("/metrics", tags=["ops"], response_class=Response)
    async def metrics(request: Request) -> Response:
        svc: Services | None = getattr(request.app.state, "svc", None)
        if svc is not None:
            svc.metrics.jobs.set(svc.jobs.running)
        body = svc.metrics.render() if svc is not None else b""
        return Response(body, media_type=CONTENT_TYPE_LATEST)

    # --- collections -----------------------------------------------------------------
    @app.post("/v1/collections", status_code=201, response_model=M.CollectionOut, tags=["collections"])
    async def create_collection(body: M.CollectionCreate, svc: Svc, t: Tenant) -> M.CollectionOut:
        return await asyncio.to_thread(svc.backend.create_collection, t, body.name)

    @app.get("/v1/collections", response_model=M.CollectionList, tags=["collections"])
    async def list_collections(svc: Svc, t: Tenant) -> M.CollectionList:
        return M.CollectionList(collections=await asyncio.to_thread(svc.backend.list_collections, t))

    @app.get("/v1/collections/{name}", response_model=M.CollectionOut, tags=["collections"])
    async def get_collection(name: str, svc: Svc, t: Tenant) -> M.CollectionOut:
        return await asyncio.to_thread(svc.backend.collection_info, t, name)

    @app.delete("/v1/collections/{name}", status_code=204, tags=["collections"])
    async def delete_collection(name: str, svc: Svc, t: Tenant) -> Response:
        await asyncio.to_thread(svc.backend.delete_collection, t, name)
        return Response(status_code=204)

    # --- documents -------------------------------------------------------------------
    @app.get("/v1/collections/{name}/documents", response_model=M.DocumentList, tags=["documents"])
    async def list_documents(name: str, svc: Svc, t: Tenant) -> M.DocumentList:
        return M.DocumentList(documents=await asyncio.to_thread(svc.backend.list_documents, t, name))

    @app.get("/v1/collections/{name}/documents/{doc_id}", response_model=M.DocumentDetail, tags=["documents"])
    async def get_document(name: str, doc_id: str, svc: Svc, t: Tenant) -> M.DocumentDetail:
        return await asyncio.to_thread(svc.backend.document_info, t, name, doc_id)

    @app.delete("/v1/collections/{name}/documents/{doc_id}", status_code=204, tags=["documents"])
    async def delete_document(name: str, doc_id: str, svc: Svc, t: Tenant) -> Response:
        await asyncio.to_thread(svc.backend.remove_document, t, name, doc_id)
        return Response(status_code=204)

    @app.post("/v1/collections/{name}/documents", status_code=201, response_model=M.IngestOut, tags=["documents"])
    async def add_documents(name: str, body: M.DocumentsIn, svc: Svc, t: Tenant) -> M.IngestOut:
        svc.backend.check_exists(t, name)
        docs = [svc.backend.document_from_in(d) for d in body.documents]
        return await asyncio.to_thread(svc.backend.add_documents, t, name, docs, [])

    @app.post(
        "/v1/collections/{name}/files", status_code=201, response_model=M.IngestOut, tags=["documents"],
        responses={202: {"model": M.JobOut, "description": "large upload: ingested as a background job"}},
    )
    async def upload_files(
        name: str, svc: Svc, t: Tenant,
        files: Annotated[list[UploadFile], File(description="txt, md, html, pdf or jsonl files")],
        background: Annotated[bool | None, Query(description="force (true) or forbid (false) a background job")] = None,
    ) -> Any:
        svc.backend.check_exists(t, name)
        if not files:
            raise InputError("no files in the upload; send one or more 'files' parts")
        total = sum(f.size or 0 for f in files)
        if total > svc.settings.max_upload_bytes:
            raise InputTooLarge(
                f"upload of {total} bytes exceeds the {svc.settings.max_upload_bytes}-byte limit "
                "(CTXROUTE_MAX_UPLOAD_MB); split it into several requests"
            )
        as_job = background if background is not None else total > svc.settings.background_upload_bytes
        if not as_job:
            docs, errs = [], []
            for f in files:
                data = await f.read()
                loaded, failed = svc.backend.load_upload(data, f.filename or "upload.txt")
                docs.extend(loaded)
                errs.extend(failed)
            if not docs:
                raise DocumentError(errs[0].file if errs else "upload", errs[0].message if errs else "no documents")
            return await asyncio.to_thread(svc.backend.add_documents, t, name, docs, errs)
        job_id = svc.jobs.new_id()
        spool = svc.jobs.spool_dir(t, job_id)
        spool.mkdir(parents=True, exist_ok=True)
        saved: list[tuple[str, Path]] = []
        for i, f in enumerate(files):
            fname = Path(f.filename or f"upload{i}.txt").name or f"upload{i}.txt"
            path = spool / f"{i:05d}"
            path.write_bytes(await f.read())
            saved.append((fname, path))
        backend = svc.backend

        def work(h: JobHandle) -> None:
            backend.ingest_job(t, name, h)

        state = svc.jobs.submit(t, name, job_id, saved, work)
        return JSONResponse(
            _job_out(state).model_dump(), status_code=202, headers={"Location": f"/v1/jobs/{job_id}"}
        )

    # --- jobs --------------------------------------------------------------------
    @app.get("/v1/jobs", response_model=M.JobList, tags=["jobs"])
    async def list_jobs(svc: Svc, t: Tenant) -> M.JobList:
        return M.JobList(jobs=[_job_out(s) for s in await asyncio.to_thread(svc.jobs.list, t)])

    @app.get("/v1/jobs/{job_id}", response_model=M.JobOut, tags=["jobs"])
    async def get_job(job_id: str, svc: Svc, t: Tenant) -> M.JobOut:
        return _job_out(svc.jobs.get(t, job_id))

    # --- questions ---------------------------------------------------------------
    def check_question(svc: Services, question: str) -> None:
        if len(question) > svc.settings.max_question_chars:
            raise InputTooLarge(
                f"question of {len(question)} characters exceeds the {svc.settings.max_question_chars}-character "
                "limit (CTXROUTE_MAX_QUESTION_CHARS); shorten it"
            )
        if not question.strip():
            raise InputError("the question is empty; send a non-blank 'question'")

    @app.post("/v1/collections/{name}/route", response_model=M.RouteOut, tags=["questions"])
    async def route(name: str, body: M.RouteIn, svc: Svc, t: Tenant) -> M.RouteOut:
        check_question(svc, body.question)
        opts = QueryOptions(route=body.route, top_k=body.top_k, budget=body.budget,
                            docs=tuple(body.docs) if body.docs else None)
        return await svc.backend.route(t, name, body.question, opts)

    @app.post(
        "/v1/collections/{name}/query", response_model=M.QueryOut, tags=["questions"],
        responses={200: {"content": {"text/event-stream": {"description": "with stream=true: events "
                                                            "decision, delta, citation, done (or error)"}}}},
    )
    async def query(name: str, body: M.QueryIn, request: Request, svc: Svc, t: Tenant) -> Any:
        check_question(svc, body.question)
        opts = QueryOptions(route=body.route, top_k=body.top_k, budget=body.budget,
                            docs=tuple(body.docs) if body.docs else None)
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
            raise RequestTimeout(
                f"the answer took longer than {svc.settings.request_timeout_s:g} s (CTXROUTE_REQUEST_TIMEOUT_S); "
                "retry, set a smaller budget, or force route 'rag'"
            ) from None
        await _account(svc, t, out)
        payload = out.model_dump()
        if body.cache and _cacheable(out):
            await svc.cache.put(key, payload)
        payload.update(request_id=rid)
        return JSONResponse(payload)  # already a validated QueryOut

    # --- admin -------------------------------------------------------------------
    @app.post("/v1/admin/tenants", status_code=201, response_model=M.TenantOut, tags=["admin"])
    async def create_tenant(body: M.TenantCreate, svc: Svc, _: Admin) -> M.TenantOut:
        info = svc.tenants.create_tenant(body.name)
        return M.TenantOut(name=info.name, created_at=info.created_at, keys=info.n_keys)

    @app.get("/v1/admin/tenants", response_model=M.TenantList, tags=["admin"])
    async def list_tenants(svc: Svc, _: Admin) -> M.TenantList:
        return M.TenantList(tenants=[M.TenantOut(name=i.name, created_at=i.created_at, keys=i.n_keys) for i in svc.tenants.tenants()])

    @app.delete("/v1/admin/tenants/{tenant_name}", status_code=204, tags=["admin"])
    async def delete_tenant(
        tenant_name: str, svc: Svc, _: Admin,
        purge: Annotated[bool, Query(description="also delete the tenant's collections and jobs")] = False,
    ) -> Response:
        check_tenant_name(tenant_name)
        svc.tenants.delete_tenant(tenant_name)
        if purge:
            await asyncio.to_thread(svc.backend.purge_tenant, tenant_name)
        return Response(status_code=204)

    @app.post("/v1/admin/tenants/{tenant_name}/keys", status_code=201, response_model=M.KeyCreated, tags=["admin"])
    async def create_key(tenant_name: str, body: M.KeyCreate, svc: Svc, _: Admin) -> M.KeyCreated:
        new = svc.tenants.create_key(tenant_name, body.label)
        i = new.info
        return M.KeyCreated(key=new.key, key_id=i.key_id, tenant=i.tenant, created_at=i.created_at, label=i.label)

    @app.get("/v1/admin/tenants/{tenant_name}/keys", response_model=M.KeyList, tags=["admin"])
    async def list_keys(tenant_name: str, svc: Svc, _: Admin) -> M.KeyList:
        return M.KeyList(keys=[M.KeyOut(key_id=k.key_id, tenant=k.tenant, created_at=k.created_at, label=k.label)
                               for k in svc.tenants.keys(tenant_name)])

    @app.delete("/v1/admin/keys/{key_id}", status_code=204, tags=["admin"])
    async def revoke_key(key_id: str, svc: Svc, _: Admin) -> Response:
        svc.tenants.revoke_key(key_id)
        return Response(status_code=204)


_SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}


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
    timeout = RequestTimeout(f"the answer took longer than {limit:g} s (CTXROUTE_REQUEST_TIMEOUT_S); retry, "
                             "set a smaller budget, or force route 'rag'")
    done = False
    try:
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise timeout
            try:
                kind, data = await asyncio.wait_for(anext(events), remaining)
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise timeout from None  # the generator was cancelled: it cannot be resumed
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
