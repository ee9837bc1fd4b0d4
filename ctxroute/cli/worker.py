"""`ctxroute worker` (the Redis queue's worker) and `ctxroute jobs list|status` (read queued jobs)."""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Optional

import typer

from ctxroute.cli.common import console, err_console

jobs_app = typer.Typer(help="Queued jobs (Redis): ingestion uploads and `eval run --queue` runs.", no_args_is_help=True)


def _settings() -> Any:
    """The service's settings from the environment; the queue must be Redis."""
    from ctxroute.api.settings import ApiSettings
    from ctxroute.errors import CtxrouteError

    try:
        settings = ApiSettings.from_env()
    except CtxrouteError as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(2) from None
    if not settings.redis_url:
        err_console.print("[red]error:[/red] no job queue: set CTXROUTE_REDIS_URL=redis://host:6379/0 "
                          "(the same Redis the API uses)")
        raise typer.Exit(2)
    return settings.with_overrides(job_queue="redis")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.add_typer(jobs_app, name="jobs")

    @app.command()
    def worker(
        jobs: int = typer.Option(1, "--jobs", min=1, help="ingestion jobs run at once"),
        eval_jobs: int = typer.Option(1, "--eval-jobs", min=1, help="evaluation runs at once"),
        queues: str = typer.Option("ingest,eval", "--queues", help="which queues to work: ingest, eval or both"),
        burst: bool = typer.Option(False, "--burst", help="exit once the queues are empty"),
    ) -> None:
        """Run queued ingestion and evaluation jobs (Redis at $CTXROUTE_REDIS_URL, collections as
        `ctxroute serve` stores them). Run as many as you like, on any machine that reaches Redis
        and the collection store; a worker killed mid-job leaves the job to the next one.
        (`ctxroute serve`'s in-process worker takes ingestion jobs only.)"""
        import asyncio
        import logging

        from ctxroute.api.backend import Backend
        from ctxroute.api.jobqueue_worker import build_worker, run_workers, worker_error

        chosen = [q.strip() for q in queues.split(",") if q.strip()]
        if not chosen or set(chosen) - {"ingest", "eval"}:
            err_console.print(f"[red]error:[/red] --queues {queues!r}: use ingest, eval or ingest,eval")
            raise typer.Exit(2)
        settings = _settings()
        backend = Backend(settings.with_overrides(reader="extractive"))  # ingestion needs the embedder only
        if "ingest" in chosen:  # an evaluation's child process loads its own models
            err_console.print(f"loading the embedder ({settings.embedder}) ...")
            try:
                asyncio.run(backend.load())
            except Exception as exc:  # noqa: BLE001 - one line, not a traceback
                err_console.print(f"[red]error:[/red] {worker_error(exc)}")
                raise typer.Exit(1) from None
        err_console.print(f"ctxroute worker: Redis {settings.redis_url.rsplit('@', 1)[-1]}, home {settings.home}, "
                          f"queues {', '.join(chosen)}, lease {settings.job_lease_s:g} s; Ctrl-C to stop")
        handler = logging.StreamHandler()  # arq's own lines: one per job started, retried or finished
        handler.setFormatter(logging.Formatter("%(asctime)s %(message)s", datefmt="%H:%M:%S"))
        arq_log = logging.getLogger("arq")
        arq_log.addHandler(handler)
        arq_log.setLevel(logging.INFO)
        workers = [build_worker(settings, backend, queue=q, max_jobs=jobs if q == "ingest" else eval_jobs,
                                handle_signals=False, burst=burst) for q in dict.fromkeys(chosen)]
        try:
            run_workers(workers)
        except Exception as exc:  # noqa: BLE001
            err_console.print(f"[red]error:[/red] {worker_error(exc)}")
            raise typer.Exit(1) from None


def _records() -> Any:
    from ctxroute.api.jobqueue import JobRecords

    s = _settings()
    return JobRecords(s.redis_url, s.job_ttl_s)


def _row(s: Any) -> dict[str, Any]:
    from dataclasses import asdict

    d = asdict(s)
    d.pop("pending", None)
    return d


@jobs_app.command("list")
def list_cmd(
    tenant: str = typer.Option("default", help="whose jobs (the CLI and development mode act as 'default')"),
    as_json: bool = typer.Option(False, "--json", help="print JSON"),
) -> None:
    """Queued jobs, newest first."""
    from rich.table import Table

    from redis.exceptions import RedisError

    try:
        states = _records().list(tenant)
    except RedisError as exc:
        err_console.print(f"[red]error:[/red] Redis: {exc}")
        raise typer.Exit(1) from None
    if as_json:
        typer.echo(json.dumps([_row(s) for s in states], indent=1))
        return
    t = Table(title=f"jobs of {tenant!r}")
    for col in ("id", "kind", "status", "stage", "progress", "done/total", "tries", "created", "what"):
        t.add_column(col)
    for s in states:
        t.add_row(s.id, s.kind, s.status, s.stage, f"{100 * s.progress:.0f}%", f"{s.files_done}/{s.files_total}",
                  str(s.attempts), time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(s.created_at)),
                  s.detail or s.collection)
    console.print(t)


@jobs_app.command("status")
def status_cmd(
    job_id: str = typer.Argument(..., help="job id (job_...)"),
    tenant: str = typer.Option("default", help="the job's tenant"),
    wait: Optional[float] = typer.Option(None, "--wait", min=0, help="wait up to this many seconds for it to finish"),
) -> None:
    """One job's status as JSON; exit code 0 when it succeeded, 1 when it failed or is unknown,
    3 while it is still queued or running."""
    from redis.exceptions import RedisError

    from ctxroute.api.jobqueue import is_terminal, wait_for
    from ctxroute.errors import NotFound

    records = _records()
    try:
        state = wait_for(records, tenant, job_id, wait or 0.0)
    except NotFound as exc:
        err_console.print(f"[red]error:[/red] {exc.message}")
        raise typer.Exit(1) from None
    except RedisError as exc:
        err_console.print(f"[red]error:[/red] Redis: {exc}")
        raise typer.Exit(1) from None
    typer.echo(json.dumps(_row(state), indent=1))
    if not is_terminal(state):
        raise typer.Exit(3)
    if state.status not in ("succeeded", "partial"):
        raise typer.Exit(1)


def enqueue_eval_cmd(params: dict[str, Any]) -> None:
    """`ctxroute eval run ... --queue`: enqueue the same run for a worker and print the job id.
    Paths become absolute (the worker may run elsewhere: they must name shared storage)."""
    import asyncio

    from ctxroute.api.jobqueue import enqueue_eval

    settings = _settings()
    argv: list[str] = []
    spec: dict[str, Any] = {}
    dataset = str(params.pop("dataset"))
    if Path(dataset).exists():
        dataset = str(Path(dataset).resolve())
    argv.append(dataset)
    spec["dataset"] = dataset
    for name, value in params.items():
        if value is None or value is False:
            continue
        flag = "--" + name.replace("_", "-")
        if isinstance(value, Path):
            value = value.expanduser().resolve()
        if value is True:
            argv.append(flag)
        else:
            argv += [flag, str(value)]
        if name in ("out", "data_root", "task", "limit", "routes"):
            spec[name] = str(value) if isinstance(value, Path) else value
    spec["argv"] = argv
    spec["label"] = params.get("collection") or f"eval:{dataset.rsplit('/', 1)[-1]}"
    try:
        state = asyncio.run(enqueue_eval(settings, spec))
    except Exception as exc:  # noqa: BLE001 - Redis down: one line
        err_console.print(f"[red]error:[/red] could not enqueue: {exc}")
        raise typer.Exit(1) from None
    console.print(f"queued {state.id}: results -> {spec['out']}/results.jsonl, report -> {spec['out']}/report")
    console.print(f"[dim]follow it with: ctxroute jobs status {state.id} --wait 3600[/dim]")
    typer.echo(state.id)
