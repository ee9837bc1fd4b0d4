"""The OpenAPI schema as served: FastAPI's, plus the configured question limit as ``maxLength``
and OpenAPI links (what a created collection, document, job, tenant or key leads to), so
clients and stateful testers (schemathesis) can chain operations."""
from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

# (method, path, status) -> {link name: (method, path, {parameter: runtime expression})}
_LINKS: dict[tuple[str, str, str], dict[str, tuple[str, str, dict[str, str]]]] = {
    ("post", "/v1/collections", "201"): {
        f"{m}{p.replace('/', '_')}": (m, "/v1/collections/{name}" + p, {"name": "$response.body#/name"})
        for m, p in [("get", ""), ("delete", ""), ("get", "/documents"), ("post", "/documents"),
                     ("post", "/files"), ("post", "/route"), ("post", "/query")]
    },
    ("post", "/v1/collections/{name}/documents", "201"): {
        f"{m}_document": (m, "/v1/collections/{name}/documents/{doc_id}",
                          {"name": "$request.path.name", "doc_id": "$response.body#/documents/0/id"})
        for m in ("get", "delete")
    },
    ("post", "/v1/collections/{name}/files", "202"): {
        "get_job": ("get", "/v1/jobs/{job_id}", {"job_id": "$response.body#/id"}),
    },
    ("post", "/v1/admin/tenants", "201"): {
        "create_key": ("post", "/v1/admin/tenants/{tenant_name}/keys", {"tenant_name": "$response.body#/name"}),
        "list_keys": ("get", "/v1/admin/tenants/{tenant_name}/keys", {"tenant_name": "$response.body#/name"}),
        "delete_tenant": ("delete", "/v1/admin/tenants/{tenant_name}", {"tenant_name": "$response.body#/name"}),
    },
    ("post", "/v1/admin/tenants/{tenant_name}/keys", "201"): {
        "revoke_key": ("delete", "/v1/admin/keys/{key_id}", {"key_id": "$response.body#/key_id"}),
    },
}


def build_openapi(app: FastAPI, max_question_chars: int) -> dict[str, Any]:
    if app.openapi_schema is not None:
        return app.openapi_schema
    schema = get_openapi(title=app.title, version=app.version, summary=app.summary, routes=app.routes)
    for model in ("QueryIn", "RouteIn"):
        props = schema.get("components", {}).get("schemas", {}).get(model, {}).get("properties", {})
        if "question" in props:
            props["question"]["maxLength"] = max_question_chars
    paths = schema.get("paths", {})
    for (method, path, status), links in _LINKS.items():
        response = paths.get(path, {}).get(method, {}).get("responses", {}).get(status)
        if response is None:
            continue
        out = response.setdefault("links", {})
        for name, (m, p, params) in links.items():
            target = paths.get(p, {}).get(m)
            if target is not None and "operationId" in target:
                out[name] = {"operationId": target["operationId"], "parameters": dict(params)}
    app.openapi_schema = schema
    return schema
