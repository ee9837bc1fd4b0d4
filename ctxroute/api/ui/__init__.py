"""The web page (``/ui``) and the two read-only endpoints it needs beyond the REST API: a
document's full text (for the source viewer) and the ``eval report`` outputs of run folders
under ``CTXROUTE_RUNS_DIR``.

``mount_ui(app, services=..., tenant=..., principal=...)`` is called by ``create_app`` with the
same dependencies the other routes use, so tenant isolation and keys work the same way.
The page is plain HTML/JS/CSS shipped in ``static/`` (package data): no build step, no CDN.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from fastapi import FastAPI
from fastapi.responses import FileResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles

from ctxroute.api.ui.runs import runs_router
from ctxroute.api.ui.source import source_router

STATIC = Path(__file__).resolve().parent / "static"

# The page loads nothing from elsewhere: the browser enforces it (and it works offline).
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; style-src 'self'; "
    "script-src 'self'; connect-src 'self'; object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


class _Static(StaticFiles):
    async def get_response(self, path: str, scope: Any) -> Response:
        response = await super().get_response(path, scope)
        response.headers.update(PAGE_HEADERS)
        return response


def mount_ui(app: FastAPI, *, services: Callable[..., Any], tenant: Callable[..., Any], principal: Callable[..., Any]) -> None:
    """Serve the page at ``/ui`` and add the document-text and run-report endpoints."""
    app.include_router(source_router(services, tenant))
    app.include_router(runs_router(principal))

    @app.get("/ui", include_in_schema=False)
    async def ui_redirect() -> RedirectResponse:
        return RedirectResponse("/ui/", status_code=308)

    @app.get("/ui/", include_in_schema=False)
    async def ui_page() -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html", headers=PAGE_HEADERS)

    app.mount("/ui/static", _Static(directory=STATIC), name="ui-static")


__all__ = ["STATIC", "mount_ui"]
