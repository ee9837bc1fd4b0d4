"""REST service (edge layer): ``create_app(ApiSettings.from_env())`` or `ctxroute serve`.

Importing this package is cheap; the app module (FastAPI, the engine) loads on first use.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ctxroute.api.settings import ApiSettings

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["ApiSettings", "create_app"]


def create_app(settings: ApiSettings, **kw: Any) -> "FastAPI":
    from ctxroute.api.app import create_app as _create_app

    return _create_app(settings, **kw)
