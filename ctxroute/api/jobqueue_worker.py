"""Background jobs on a Redis queue (arq): the worker side (``ctxroute worker``, or in-process
in ``ctxroute serve``).

Delivery is at least once; re-running a job is harmless:

- **Lease.** arq marks a started job with an in-progress key whose lifetime is the job
  timeout (``CTXROUTE_JOB_TIMEOUT_S``, a day, so long ingestions are never cut off); while the
  job runs, a heartbeat shortens and renews that key to ``CTXROUTE_JOB_LEASE_S`` every third of
  the lease. A worker killed mid-job (SIGKILL, OOM, a lost machine) stops renewing, the key
  expires within one lease, and the next worker that polls the queue runs the job again.
  A short lease recovers fast; too short a lease (a worker stalled longer than the lease, or
  cut off from Redis) lets a second worker start the same job while the first still runs,
  which costs work but not correctness (below).
- **Idempotent ingestion.** Document ids are deterministic (a jsonl record's id, else the
  hash of the text), the collection skips text it already holds, and the job commits in
  steps of ``CTXROUTE_JOB_BATCH_DOCS`` documents, recording each step's ids (``pending``)
  before the commit and ``documents_added`` after it. A retry counts a pending document that
  is in the collection with the same text as its own, so a job killed at any point finishes
  with every document once and reports each once.
- **Evaluations** run ``ctxroute eval run`` as a child process (killed with its worker via
  ``PR_SET_PDEATHSIG``); the runner appends to ``results.jsonl`` and skips what is recorded,
  so a retry resumes. Then ``ctxroute eval report`` writes the report next to it.
"""
from __future__ import annotations

import asyncio
import contextlib
import ctypes
import functools
import os
import signal
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, AsyncIterator

from redis.exceptions import RedisError

from ctxroute.api import jobqueue as Q
from ctxroute.api.jobs import TERMINAL, FileError, JobState
from ctxroute.api.settings import ApiSettings
from ctxroute.api.uploads import UploadLimits, parse_file
from ctxroute.errors import CtxrouteError
from ctxroute.retrievers.collection_config import content_hash
from ctxroute.types import Document


class Stopped(Exception):
    """The job was cancelled (worker shutting down): stop at the next checkpoint."""


class RemoteHandle:
    """Progress of one job attempt, written to Redis (throttled); stops the ingesting thread at
    its next update once ``stop`` is set."""

    def __init__(self, records: Q.JobRecords, state: JobState, stop: threading.Event) -> None:
        self.records = records
        self.state = state
        self.stop = stop
        self._last = 0.0

    def update(self, *, force: bool = False, **changes: Any) -> None:
        if self.stop.is_set():
            raise Stopped()
        self.state = replace(self.state, **changes)
        now = time.monotonic()
        if force or now - self._last > 0.2:
            self._last = now
            self.records.save(self.state)

    def add_error(self, file: str, message: str) -> None:
        e = FileError(file, message)
        if e not in self.state.errors:  # a retry meets the same errors again
            self.update(errors=self.state.errors + (e,))


def _finish(h: RemoteHandle) -> None:
    s = h.state
    status = "failed" if s.errors and not s.documents_added else "partial" if s.errors else "succeeded"
    h.update(status=status, stage="done", progress=1.0, pending=(), finished_at=time.time(), force=True)


def ingest(h: RemoteHandle, backend: Any, files: list[tuple[str, bytes | None]], limits: UploadLimits,
           batch_docs: int) -> None:
    """Body of an ingestion job (blocking): parse every file, then commit in steps, resuming
    after what an earlier attempt committed."""
    s = h.state
    docs: list[Document] = []
    n = max(1, len(files))
    for i, (fname, data) in enumerate(files, start=1):
        if data is None:
            h.add_error(fname, "the spooled upload expired from Redis before a worker read it (CTXROUTE_JOB_TTL_S); "
                               "upload the file again")
        else:
            loaded, errs, _ = parse_file(data, fname, limits)
            docs.extend(loaded)
            for e in errs:
                h.add_error(e.file, e.message)
        h.update(files_done=i, progress=0.2 * i / n)
    col = backend.collection(s.tenant, s.collection)
    ours = set(s.documents_added) | set(s.pending)
    added = list(s.documents_added)
    todo: list[Document] = []
    for d in docs:  # committed by an earlier attempt (maybe after its last status write)
        if d.id in ours and d.id in col and col.content_hash(d.id) == content_hash(d.text):
            if d.id not in added:
                added.append(d.id)
        else:
            todo.append(d)
    h.update(documents_added=tuple(added), pending=(), stage="indexing", force=True)
    source = {d.id: d.source or d.id for d in docs}
    total = len(todo)
    for start in range(0, total, batch_docs):
        batch = todo[start:start + batch_docs]
        fresh = tuple(d.id for d in batch
                      if not (d.id in col and col.content_hash(d.id) == content_hash(d.text)))
        h.update(pending=fresh, force=True)  # before the commit: a retry then knows these are ours

        def progress(stage: str, done: int, of: int, _start: int = start) -> None:
            part = (_start + len(batch) * done / max(1, of)) / max(1, total)
            h.update(stage=f"indexing:{stage}", progress=min(0.99, 0.2 + 0.79 * part))

        stats = col.add_documents(batch, progress=progress)
        for doc_id in stats.skipped:
            if doc_id not in fresh or doc_id not in col:
                h.add_error(source.get(doc_id, doc_id), f"document {doc_id} is already in the collection (same text); "
                                                        "skipped")
        for doc_id, why in stats.failed:
            h.add_error(source.get(doc_id, doc_id), why)
        added.extend(x for x in stats.added if x not in added)
        h.update(documents_added=tuple(added), pending=(), collection_version=stats.version, force=True)


@contextlib.asynccontextmanager
async def lease(pool: Any, job_id: str, lease_s: float) -> AsyncIterator[None]:
    """Keep arq's in-progress key alive for ``lease_s`` at a time while the job runs."""
    key = Q.IN_PROGRESS_PREFIX + job_id

    async def beat() -> None:
        while True:
            with contextlib.suppress(RedisError, OSError):
                await pool.pexpire(key, int(lease_s * 1000))
            await asyncio.sleep(lease_s / 3)

    task = asyncio.get_running_loop().create_task(beat())
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def _start(ctx: dict[str, Any], tenant: str, job_id: str) -> JobState | None:
    """The job's state for a new attempt, or None when there is nothing (more) to do."""
    records: Q.JobRecords = ctx["records"]
    settings: ApiSettings = ctx["settings"]
    state = await asyncio.to_thread(records.load, tenant, job_id)
    if state is None or state.status in TERMINAL:
        return None  # status expired, or finished by an earlier attempt that died before arq knew
    attempt = int(ctx.get("job_try", 1))
    if attempt > settings.job_max_tries:
        msg = f"gave up after {settings.job_max_tries} attempts (each stopped before the end: a worker was killed or lost)"
        state = replace(state, status="failed", stage="done", finished_at=time.time(), pending=(),
                        errors=state.errors + (FileError("*", msg),))
        await asyncio.to_thread(records.save, state)
        return None
    state = replace(state, status="running", stage="loading", attempts=attempt, pid=os.getpid())
    await asyncio.to_thread(records.save, state)
    return state


def _retry_on_redis_errors(fn: Any) -> Any:
    """A Redis failure mid-job is no failure of the job: arq runs it again a little later
    (and if Redis stays away, the job is still queued and its lease lapses)."""

    @functools.wraps(fn)
    async def wrapper(ctx: dict[str, Any], *args: Any) -> Any:
        from arq.worker import Retry

        try:
            return await fn(ctx, *args)
        except RedisError as exc:
            raise Retry(defer=5) from exc

    return wrapper


@_retry_on_redis_errors
async def ingest_upload(ctx: dict[str, Any], tenant: str, collection: str, job_id: str, names: list[str]) -> str:
    records: Q.JobRecords = ctx["records"]
    settings: ApiSettings = ctx["settings"]
    state = await _start(ctx, tenant, job_id)
    if state is None:
        await asyncio.to_thread(records.drop_files, job_id, len(names))
        return "nothing to do"
    stop = threading.Event()
    h = RemoteHandle(records, state, stop)

    def body() -> None:
        blobs = records.r.mget([Q.file_key(job_id, i) for i in range(len(names))]) if names else []
        try:
            ingest(h, ctx["backend"], list(zip(names, blobs)), UploadLimits.of(settings), settings.job_batch_docs)
        except (Stopped, RedisError):
            raise
        except Exception as exc:  # noqa: BLE001 - a job records its failure instead of raising
            message = getattr(exc, "message", None) or f"{type(exc).__name__} during ingestion"
            h.add_error("*", str(message))
            h.update(status="failed", stage="done", pending=(), finished_at=time.time(), force=True)
            return
        _finish(h)

    async with lease(ctx["redis"], job_id, settings.job_lease_s):
        try:
            await asyncio.to_thread(body)
        except asyncio.CancelledError:
            stop.set()  # the thread stops at its next progress update; arq re-queues the job
            raise
        except Stopped:
            return "stopped"
    await asyncio.to_thread(records.drop_files, job_id, len(names))
    return h.state.status


def _die_with_parent() -> None:  # runs in the child between fork and exec
    with contextlib.suppress(Exception):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


def _count_lines(path: Path) -> int:
    try:
        with path.open("rb") as fh:
            return sum(1 for _ in fh)
    except OSError:
        return 0


def _eval_total(spec: dict[str, Any]) -> int:
    """Questions x routes the run will record (0 when it cannot be told up front)."""
    try:
        from ctxroute.eval.datasets import load_dataset

        root = Path(spec["data_root"]) if spec.get("data_root") else None
        ds = load_dataset(str(spec["dataset"]), root).filter(task=spec.get("task"), limit=spec.get("limit"))
        return len(ds.items) * len([r for r in str(spec.get("routes", "auto")).split(",") if r.strip()])
    except Exception:  # noqa: BLE001 - the run itself reports a bad dataset
        return 0


async def _child(h: RemoteHandle, argv: list[str], results: Path | None, total: int) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "ctxroute", *argv, stdout=asyncio.subprocess.DEVNULL,
        stderr=asyncio.subprocess.PIPE, preexec_fn=_die_with_parent,
    )
    tail = bytearray()

    async def read() -> None:
        assert proc.stderr is not None
        while chunk := await proc.stderr.read(65536):
            tail.extend(chunk)
            del tail[:-4000]

    reader = asyncio.get_running_loop().create_task(read())
    try:
        while proc.returncode is None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(proc.wait(), 1.0)
            if results is not None:
                done = _count_lines(results)
                await asyncio.to_thread(h.update, files_done=done, progress=min(0.95, 0.95 * done / total) if total else 0.0)
        await reader
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
        reader.cancel()
    return int(proc.returncode or 0), tail.decode(errors="replace")


@_retry_on_redis_errors
async def eval_run(ctx: dict[str, Any], job_id: str, spec: dict[str, Any]) -> str:
    records: Q.JobRecords = ctx["records"]
    settings: ApiSettings = ctx["settings"]
    state = await _start(ctx, Q.EVAL_TENANT, job_id)
    if state is None:
        return "nothing to do"
    out = Path(spec["out"])
    total = await asyncio.to_thread(_eval_total, spec)
    h = RemoteHandle(records, replace(state, stage="eval", files_total=total), threading.Event())
    async with lease(ctx["redis"], job_id, settings.job_lease_s):
        rc, tail = await _child(h, ["eval", "run", *spec["argv"]], out / "results.jsonl", total)
        if rc == 0:
            await asyncio.to_thread(h.update, stage="report", progress=0.96, force=True)
            rc, tail = await _child(h, ["eval", "report", str(out)], None, 0)
    if rc != 0:
        lines = [ln for ln in tail.strip().splitlines() if ln.strip()]
        h.state = replace(h.state, errors=h.state.errors + (FileError("*", (lines[-1] if lines else f"exit {rc}")[:500]),))
        await asyncio.to_thread(h.update, status="failed", stage="done", finished_at=time.time(), force=True)
        return "failed"
    done = _count_lines(out / "results.jsonl")
    await asyncio.to_thread(h.update, status="succeeded", stage="done", progress=1.0, files_done=done,
                            detail=str(out / "report"), finished_at=time.time(), force=True)
    return "succeeded"


def build_worker(settings: ApiSettings, backend: Any, *, queue: str = "ingest", max_jobs: int = 1,
                 handle_signals: bool = True, burst: bool = False) -> Any:
    """An arq Worker for one queue: ``ingest`` (uploads, through ``backend``'s loaded embedder
    and collection stores) or ``eval`` (``ctxroute eval run --queue``)."""
    from arq.worker import Worker, func

    records = Q.JobRecords(settings.redis_url, settings.job_ttl_s)
    tries = settings.job_max_tries + 1  # one more than ours: the extra try records the give-up
    if queue == "ingest":
        fn, name, queue_name = ingest_upload, Q.INGEST_FN, Q.QUEUE
    elif queue == "eval":
        fn, name, queue_name = eval_run, Q.EVAL_FN, Q.EVAL_QUEUE
    else:
        raise ValueError(f"unknown queue {queue!r}; use 'ingest' or 'eval'")

    async def shutdown(ctx: dict[str, Any]) -> None:
        records.close()

    return Worker(
        functions=[func(fn, name=name, timeout=settings.job_timeout_s, max_tries=tries)],
        queue_name=queue_name, redis_settings=Q.arq_settings(settings.redis_url), max_jobs=max_jobs,
        job_timeout=settings.job_timeout_s, keep_result=3600, poll_delay=0.5, handle_signals=handle_signals,
        burst=burst, ctx={"settings": settings, "backend": backend, "records": records}, on_shutdown=shutdown,
        health_check_interval=60, log_results=False,
    )


def run_workers(workers: list[Any]) -> None:
    """Run several arq workers (one per queue) in this process until SIGINT/SIGTERM (or, in
    burst mode, until their queues are empty); each hands its running jobs back on the way out."""
    loop = workers[0].loop
    tasks = []
    for w in workers:
        w.main_task = loop.create_task(w.main())
        tasks.append(w.main_task)

    def stop(sig: signal.Signals) -> None:
        for w in workers:
            w.handle_sig(sig)

    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop, sig)
    try:
        results = loop.run_until_complete(asyncio.gather(*tasks, return_exceptions=True))
    finally:
        loop.run_until_complete(asyncio.gather(*(w.close() for w in workers), return_exceptions=True))
    for r in results:
        if isinstance(r, Exception):
            raise r


def worker_error(exc: BaseException) -> str:
    """A one-line reason for the CLI."""
    if isinstance(exc, CtxrouteError):
        return exc.message
    return f"{type(exc).__name__}: {exc}"
