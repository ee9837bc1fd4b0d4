"""FastAPI dependencies: the loaded services, who is calling (API key, or the loopback-only
development mode), the tenant a request acts for, the admin; typed path parameters."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer

from ctxroute.api import models as M
from ctxroute.api.auth import DEV_TENANT, Principal, TenantStore
from ctxroute.api.backend import Backend
from ctxroute.api.cache import AnswerCache
from ctxroute.api.errors import Forbidden, NotReady, Unauthorized
from ctxroute.api.jobs import JobManager
from ctxroute.api.limits import Limits
from ctxroute.api.metrics import Metrics
from ctxroute.api.redis_link import RedisLink
from ctxroute.api.settings import ApiSettings, is_loopback
from ctxroute.api.uploads import UploadParser


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
    parser: UploadParser
    auth_enabled: bool = True
    ready: bool = False


async def services(request: Request) -> Services:
    svc: Services | None = getattr(request.app.state, "svc", None)
    if svc is None or not svc.ready:
        raise NotReady("the service is starting or stopping; retry shortly", retry_after=2)
    return svc


Svc = Annotated[Services, Depends(services)]

_bearer = HTTPBearer(auto_error=False, description="an API key: a tenant's, or the admin key")
_api_key = APIKeyHeader(name="X-API-Key", auto_error=False, description="the same key, as a header")


def _loopback_connection(request: Request) -> bool:
    """Both ends of this connection are loopback addresses (the socket actually bound, not
    the configured host: ``uvicorn --factory ... --host 0.0.0.0`` bypasses the settings)."""
    client = request.scope.get("client")
    server = request.scope.get("server")
    return bool(client and is_loopback(str(client[0])) and (not server or not server[0] or is_loopback(str(server[0]))))


async def principal(
    request: Request,
    svc: Svc,
    bearer: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    header_key: Annotated[str | None, Depends(_api_key)],
) -> Principal:
    if not svc.auth_enabled:
        if not _loopback_connection(request):
            raise Forbidden(
                "development mode (no API keys) serves loopback clients only; set CTXROUTE_ADMIN_KEY "
                "(and/or CTXROUTE_API_KEYS) on the server to accept remote requests"
            )
        return Principal(tenant=DEV_TENANT, admin=False, key_id="dev")
    client = str((request.scope.get("client") or ("?",))[0])
    await svc.limits.check_auth_failures(client, svc.settings.auth_failures_per_min)
    key = (bearer.credentials if bearer is not None else header_key or "").strip()
    p = svc.tenants.authenticate(key) if key else None
    if p is None:
        await svc.limits.record_auth_failure(client)
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

# Path parameters carry their patterns into the OpenAPI schema (a schema-valid name is never a 400).
Name = Annotated[str, Path(pattern=M.NAME_PATTERN, description="collection name")]
DocId = Annotated[str, Path(pattern=M.NAME_PATTERN, description="document id")]
TenantName = Annotated[str, Path(pattern=M.TENANT_PATTERN, description="tenant name")]
KeyId = Annotated[str, Path(pattern=M.KEY_ID_PATTERN, description="key id (12 hex digits)")]
JobId = Annotated[str, Path(pattern=M.JOB_ID_PATTERN, description="job id")]
