"""Shared CLI helpers: settings from the environment, error printing."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any, Iterator

import typer

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def data_dir() -> Path:
    """Where collections live: $CTXROUTE_HOME or ./.ctxroute (collections under collections/)."""
    return Path(os.environ.get("CTXROUTE_HOME", ".ctxroute")).resolve()


def build_llm_from_env(backend: str | None) -> Any:
    """The LLM the environment (or ``--llm``) asks for; ``None`` for the extractive reader."""
    from ctxroute.pipelines.llm.factory import LLMConfig, build_llm

    from ctxroute.errors import InputError
    from ctxroute.pipelines.llm.factory import BACKENDS

    env = dict(os.environ)
    if backend:
        env["CTXROUTE_LLM_BACKEND"] = backend
    chosen = env.get("CTXROUTE_LLM_BACKEND", "").strip().lower()
    if chosen in ("extractive", "none"):
        return None
    if chosen and chosen not in BACKENDS:
        where = "--llm" if backend else "CTXROUTE_LLM_BACKEND"
        raise InputError(f"unknown LLM backend {chosen!r} ({where}); use one of {', '.join((*BACKENDS, 'extractive'))}",
                         backend=chosen)
    return build_llm(LLMConfig.from_env(env))


@contextlib.contextmanager
def cli_errors() -> Iterator[None]:
    """Library errors become one red line and exit code 1 (no traceback)."""
    from rich.markup import escape

    from ctxroute.errors import CtxrouteError

    try:
        yield
    except CtxrouteError as exc:
        err_console.print(f"[red]error:[/red] {escape(exc.message)}", highlight=False, soft_wrap=True)
        raise typer.Exit(1) from None


def collection_store() -> Any:
    """The CollectionStore the CLI uses: ``data_dir()/collections``, or the PostgreSQL store
    that ``CTXROUTE_STORE=postgresql://...`` names (namespace ``default``, the API's dev tenant)."""
    from ctxroute.retrievers.collection import CollectionStore

    url = os.environ.get("CTXROUTE_STORE", "").strip()
    if url.startswith(("postgres://", "postgresql://")):
        return CollectionStore(url, namespace="default")
    return CollectionStore(data_dir() / "collections")
