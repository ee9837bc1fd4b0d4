"""The FastAPI app: ``create_app(settings)``. Models and indexes load once, in the lifespan;
every error has the shape ``{code, message, request_id}``; collections are tenant-scoped.
Routes live in ``routes`` (collections, documents, jobs, admin) and ``query`` (questions)."""
from __future__ import annotations

import time
import uuid
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request, Response
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ctxroute.api import errors as api_errors
from ctxroute.api import models as M
from ctxroute.api import query, routes
from ctxroute.api.auth import DEV_TENANT, TenantStore, load_pepper, stored_keys_exist
from ctxroute.api.backend import Backend
from ctxroute.api.cache import AnswerCache
from ctxroute.api.deps import Services, principal, services, tenant
from ctxroute.api.jobs import JobManager
from ctxroute.api.limits import Limits
from ctxroute.api.metrics import CONTENT_TYPE_LATEST, Metrics
from ctxroute.api.redis_link import RedisLink
from ctxroute.api.schema import build_openapi
from ctxroute.api.settings import ApiSettings
from ctxroute.api.ui import mount_ui
from ctxroute.api.uploads import UploadParser
from ctxroute.errors import NotFound
from ctxroute.pipelines.llm.base import LLMClient

__all__ = ["Services", "app_from_env", "create_app"]

ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    s: {"model": M.Error} for s in (400, 401, 403, 404, 409, 413, 422, 429, 500, 502, 503, 504)
}
SWAGGER_DIR = Path(__file__).parent / "static" / "swagger"
SWAGGER_ASSETS = {"swagger-ui-bundle.js": "text/javascript", "swagger-ui.css": "text/css",
                  "favicon-32x32.png": "image/png", "LICENSE": "text/plain", "NOTICE": "text/plain"}


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
            self.metrics.observe(scope, status, time.perf_counter() - start)


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
        jobs: Any = JobManager(home)
        jobs.recover()
        if settings.job_queue == "redis":  # jobs go through Redis (arq); any replica reads their status
            from ctxroute.api.jobqueue import RedisJobs

            jobs = RedisJobs(settings, disk=jobs)
        backend = Backend(settings, llm=llm, embedder=embedder)
        svc = Services(
            settings=settings, tenants=tenants, link=link,
            cache=AnswerCache(link, ttl_s=settings.cache_ttl_s, size=settings.cache_size),
            limits=Limits(link, rate_per_min=settings.rate_limit_per_min, tokens_per_day=settings.tenant_tokens_per_day),
            metrics=metrics, jobs=jobs, backend=backend, parser=UploadParser(settings),
            auth_enabled=settings.auth_enabled or stored_keys_exist(home),
        )
        app.state.svc = svc
        try:
            await backend.load()
            if settings.demo:
                await backend.ensure_demo(DEV_TENANT)
            if settings.job_queue == "redis" and settings.job_worker:
                await jobs.start_worker(backend)  # this replica also works the queue
            svc.ready = True
            yield
        finally:
            svc.ready = False
            await jobs.drain()
            svc.parser.close()
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
        docs_url=None, redoc_url=None, openapi_url=None,  # served below: local assets, routes with metrics labels
    )
    api_errors.install(app)
    app.add_middleware(_ObserveMiddleware, metrics=metrics, max_body=settings.max_upload_bytes + 64 * 1024)
    _ops_routes(app, settings)
    app.include_router(routes.router)
    app.include_router(query.router)
    mount_ui(app, services=services, tenant=tenant, principal=principal)  # the web page at /ui
    return app


def _ops_routes(app: FastAPI, settings: ApiSettings) -> None:
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

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi_json() -> JSONResponse:
        return JSONResponse(build_openapi(app, settings.max_question_chars))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(
            openapi_url="/openapi.json", title="ctxroute API",
            swagger_js_url="/docs/assets/swagger-ui-bundle.js", swagger_css_url="/docs/assets/swagger-ui.css",
            swagger_favicon_url="/docs/assets/favicon-32x32.png",
        )

    @app.get("/docs/assets/{asset}", include_in_schema=False)
    async def docs_asset(asset: str) -> Response:
        if asset not in SWAGGER_ASSETS:
            raise NotFound(f"no docs asset {asset!r}; see /docs")
        return FileResponse(SWAGGER_DIR / asset, media_type=SWAGGER_ASSETS[asset],
                            headers={"Cache-Control": "public, max-age=86400"})


def app_from_env() -> FastAPI:
    """The app configured from the environment (uvicorn ``--factory`` target for several workers).
    Without keys, requests from non-loopback clients are refused whatever address is bound."""
    settings = ApiSettings.from_env()
    settings.check_bind(stored_keys=stored_keys_exist(settings.home))
    return create_app(settings)
