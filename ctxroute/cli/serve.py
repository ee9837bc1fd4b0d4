"""`ctxroute serve`: the REST API on uvicorn (OpenAPI docs at /docs)."""
from __future__ import annotations

from pathlib import Path
from typing import Any, Optional

import typer

from ctxroute.cli.common import err_console


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def serve(
        host: Optional[str] = typer.Option(None, help="bind address (default $CTXROUTE_HOST or 127.0.0.1)"),
        port: Optional[int] = typer.Option(None, help="port (default $CTXROUTE_PORT or 8000)"),
        demo: bool = typer.Option(False, "--demo", help="load the demo collection (built if absent) for tenant 'default'"),
        workers: int = typer.Option(1, min=1, help="uvicorn worker processes (use Redis to share limits and cache)"),
        log_level: str = typer.Option("info", help="uvicorn log level"),
        worker: Optional[bool] = typer.Option(
            None, "--worker/--no-worker",
            help="with the Redis job queue, also run a queue worker in this process (default on; $CTXROUTE_JOB_WORKER)"),
    ) -> None:
        """Start the REST API. Without API keys it only listens on loopback."""
        import uvicorn

        from ctxroute.api.auth import stored_keys_exist
        from ctxroute.api.settings import ApiSettings
        from ctxroute.errors import CtxrouteError

        try:
            settings = ApiSettings.from_env()
            settings = settings.with_overrides(
                host=host or settings.host, port=port or settings.port, demo=demo or settings.demo,
                job_worker=settings.job_worker if worker is None else worker,
            )
            stored_keys = stored_keys_exist(settings.home)
            settings.check_bind(stored_keys=stored_keys)
        except CtxrouteError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from None
        err_console.print(
            f"ctxroute API on http://{settings.host}:{settings.port} (docs at /docs; "
            f"{'API keys required' if settings.auth_enabled or stored_keys else 'development mode: no keys, loopback only'})"
        )
        if settings.job_queue == "redis":
            err_console.print(f"background jobs: Redis queue{' (with an in-process worker)' if settings.job_worker else ''}")
        if workers > 1:
            import os

            # uvicorn workers import the app by name; the factory reads the same environment.
            os.environ["CTXROUTE_HOST"], os.environ["CTXROUTE_PORT"] = settings.host, str(settings.port)
            if settings.demo:
                os.environ["CTXROUTE_DEMO"] = "1"
            os.environ["CTXROUTE_JOB_WORKER"] = "1" if settings.job_worker else "0"
            uvicorn.run(
                "ctxroute.api.app:app_from_env", factory=True, host=settings.host, port=settings.port,
                workers=workers, log_level=log_level,
            )
            return
        from ctxroute.api.app import create_app
        from ctxroute.retrievers.embedders import make_embedder

        embedder = make_embedder(settings.embedder)
        if settings.demo:
            _build_demo(settings.home, embedder)
        uvicorn.run(create_app(settings, embedder=embedder), host=settings.host, port=settings.port, log_level=log_level)


def _build_demo(home: Path, embedder: Any) -> None:
    """Build the demo collection (if absent) with a progress bar, before the server starts."""
    from rich.progress import Progress

    from ctxroute.retrievers.demo import ensure_demo_collection
    from ctxroute.retrievers.collection import CollectionStore

    store = CollectionStore(home / "collections")
    if store.exists("demo"):
        return
    with Progress(console=err_console, transient=True) as bar:
        tasks: dict[str, Any] = {}

        def progress(stage: str, done: int, total: int) -> None:
            if stage not in tasks:
                tasks[stage] = bar.add_task(f"demo collection: {stage}", total=max(total, 1))
            bar.update(tasks[stage], completed=done)

        ensure_demo_collection(store, embedder=embedder, progress=progress)
