"""Background ingestion jobs: uploads are spooled to disk, ingested in a worker thread, and
their status (progress, errors per file) is kept in ``<home>/tenants/<t>/jobs/<id>.json`` so
it survives a restart (a job cut short by a restart reads ``interrupted``)."""
from __future__ import annotations

import asyncio
import json
import os
import secrets
import shutil
import threading
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Callable

from ctxroute.errors import NotFound

TERMINAL = ("succeeded", "partial", "failed", "interrupted")


@dataclass(frozen=True)
class FileError:
    file: str
    message: str


@dataclass(frozen=True)
class JobState:
    id: str
    tenant: str
    collection: str
    status: str  # queued | running | succeeded | partial | failed | interrupted
    files_total: int
    files_done: int = 0
    progress: float = 0.0  # 0..1
    stage: str = "queued"  # loading | indexing | done
    documents_added: tuple[str, ...] = ()
    errors: tuple[FileError, ...] = ()
    created_at: float = field(default_factory=time.time)
    finished_at: float | None = None
    collection_version: str = ""
    pid: int = 0  # the worker process running it (several uvicorn workers share the home)
    # queued jobs (ctxroute.api.jobqueue): what it is, tries so far, an ingestion's documents
    # being committed (a retry after a crash counts them as its own), the eval output folder
    kind: str = "ingest"  # ingest | eval
    attempts: int = 0
    pending: tuple[str, ...] = ()
    detail: str = ""

    @staticmethod
    def from_json(raw: dict) -> "JobState":
        raw = dict(raw)
        raw["errors"] = tuple(FileError(**e) for e in raw.get("errors", ()))
        raw["documents_added"] = tuple(raw.get("documents_added", ()))
        raw["pending"] = tuple(raw.get("pending", ()))
        return JobState(**raw)


def _alive(pid: int) -> bool:
    if pid <= 0 or pid == os.getpid():
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class JobHandle:
    """What the worker function uses to report progress; writes are throttled to disk."""

    def __init__(self, manager: "JobManager", state: JobState, files: list[tuple[str, Path]]) -> None:
        self._manager = manager
        self.state = state
        self.files = files
        self._last_write = 0.0

    def update(self, *, force: bool = False, **changes: object) -> None:
        self.state = replace(self.state, **changes)  # type: ignore[arg-type]
        now = time.monotonic()
        if force or now - self._last_write > 0.2:
            self._last_write = now
            self._manager._save(self.state)
        else:
            self._manager._remember(self.state)

    def add_error(self, file: str, message: str) -> None:
        self.update(errors=self.state.errors + (FileError(file, message),))


Work = Callable[[JobHandle], None]


class JobManager:
    def __init__(self, home: Path) -> None:
        self._home = home
        self._lock = threading.Lock()
        self._live: dict[tuple[str, str], JobState] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def _dir(self, tenant: str) -> Path:
        return self._home / "tenants" / tenant / "jobs"

    def _remember(self, state: JobState) -> None:
        with self._lock:
            self._live[(state.tenant, state.id)] = state

    def _save(self, state: JobState) -> None:
        self._remember(state)
        path = self._dir(state.tenant) / f"{state.id}.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".tmp{threading.get_ident()}")
        tmp.write_text(json.dumps(asdict(state)))
        os.replace(tmp, path)

    def spool_dir(self, tenant: str, job_id: str) -> Path:
        return self._dir(tenant) / job_id

    def new_id(self) -> str:
        return "job_" + secrets.token_hex(8)

    def submit(self, tenant: str, collection: str, job_id: str, files: list[tuple[str, Path]], work: Work) -> JobState:
        """Start ``work`` in a worker thread; returns the queued state at once."""
        state = JobState(id=job_id, tenant=tenant, collection=collection, status="queued", files_total=len(files),
                         pid=os.getpid())
        self._save(state)
        handle = JobHandle(self, state, files)

        async def run() -> None:
            try:
                await asyncio.to_thread(self._run, handle, work)
            finally:
                shutil.rmtree(self.spool_dir(tenant, job_id), ignore_errors=True)

        task = asyncio.get_running_loop().create_task(run())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return state

    def _run(self, handle: JobHandle, work: Work) -> None:
        handle.update(status="running", stage="loading", force=True)
        try:
            work(handle)
        except Exception as exc:  # noqa: BLE001 - a job records its failure instead of raising
            message = getattr(exc, "message", None) or f"{type(exc).__name__} during ingestion"
            handle.add_error("*", str(message))
            handle.update(status="failed", stage="done", finished_at=time.time(), force=True)
            return
        s = handle.state
        if s.errors and not s.documents_added:
            status = "failed"
        elif s.errors:
            status = "partial"
        else:
            status = "succeeded"
        handle.update(status=status, stage="done", progress=1.0, finished_at=time.time(), force=True)

    @property
    def running(self) -> int:
        return len(self._tasks)

    def get(self, tenant: str, job_id: str) -> JobState:
        with self._lock:
            live = self._live.get((tenant, job_id))
        if live is not None:
            return live
        path = self._dir(tenant) / f"{job_id}.json"
        if not job_id.startswith("job_") or "/" in job_id or not path.is_file():
            raise NotFound(f"job {job_id!r} does not exist; list jobs with GET /v1/jobs", job=job_id)
        state = JobState.from_json(json.loads(path.read_text()))
        if state.status not in TERMINAL and not _alive(state.pid):
            state = self._interrupt(state)  # its worker process died (another worker of this home)
        return state

    def _interrupt(self, state: JobState) -> JobState:
        """Record a job whose process is gone as interrupted (its progress stays as last written)."""
        state = replace(
            state, status="interrupted", stage="done", finished_at=time.time(),
            errors=state.errors + (FileError("*", "the server process running this job stopped during ingestion; "
                                                  "upload the files again"),),
        )
        self._save(state)
        shutil.rmtree(self.spool_dir(state.tenant, state.id), ignore_errors=True)
        return state

    def list(self, tenant: str) -> list[JobState]:
        d = self._dir(tenant)
        out = [self.get(tenant, p.stem) for p in sorted(d.glob("job_*.json"))] if d.is_dir() else []
        return sorted(out, key=lambda s: s.created_at, reverse=True)

    def recover(self) -> int:
        """Mark jobs left queued or running by a process that no longer exists as interrupted."""
        n = 0
        for path in (self._home / "tenants").glob("*/jobs/job_*.json"):
            try:
                state = JobState.from_json(json.loads(path.read_text()))
            except (ValueError, TypeError):
                continue
            if state.status not in TERMINAL and not _alive(state.pid):
                self._interrupt(state)
                n += 1
        return n

    async def drain(self, timeout: float = 30.0) -> None:
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)
