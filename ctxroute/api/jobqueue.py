"""Background jobs on a Redis queue (arq): the API side.

With ``CTXROUTE_JOB_QUEUE=redis`` (the default when ``CTXROUTE_REDIS_URL`` is set) an upload
that becomes a job is spooled into Redis (one key per file, written in 1 MiB appends, with a
TTL; the upload caps bound their size) and enqueued as an arq job; any worker
(``ctxroute worker``, or the one ``ctxroute serve`` runs in-process) picks it up. The job's
status lives in Redis too, so every replica answers ``/v1/jobs`` for it.

Keys (all under ``ctxroute:``): ``job:<tenant>:<id>`` the status JSON, ``jobs:<tenant>`` a
sorted set of a tenant's job ids by creation time, ``jobfile:<id>:<i>`` the spooled files;
arq's own keys live under ``arq:``; its queues are ``ctxroute:queue`` (ingestion) and
``ctxroute:queue:eval`` (evaluations, which only ``ctxroute worker`` takes, so a long
evaluation never holds an API replica's worker). The worker side is
``ctxroute.api.jobqueue_worker``.
"""
from __future__ import annotations

import asyncio
import json
import secrets
import time
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any, Iterable

import redis
from redis.exceptions import RedisError

from ctxroute.api.errors import ApiError
from ctxroute.api.jobs import TERMINAL, JobManager, JobState
from ctxroute.api.settings import ApiSettings
from ctxroute.errors import NotFound

QUEUE = "ctxroute:queue"  # ingestion jobs: every worker, the API's in-process ones too
EVAL_QUEUE = "ctxroute:queue:eval"  # evaluations (long, LLM-bound): `ctxroute worker` only
IN_PROGRESS_PREFIX = "arq:in-progress:"  # arq.constants.in_progress_key_prefix (checked in the tests)
INGEST_FN = "ingest_upload"
EVAL_FN = "eval_run"
EVAL_TENANT = "default"  # evaluation jobs come from the CLI, which acts as the development tenant
_CHUNK = 1024 * 1024


def job_key(tenant: str, job_id: str) -> str:
    return f"ctxroute:job:{tenant}:{job_id}"


def index_key(tenant: str) -> str:
    return f"ctxroute:jobs:{tenant}"


def file_key(job_id: str, i: int) -> str:
    return f"ctxroute:jobfile:{job_id}:{i}"


def new_job_id() -> str:
    return "job_" + secrets.token_hex(8)


class QueueUnavailable(ApiError):
    code = "queue_unavailable"
    status = 503
    retryable = True

    def __init__(self, what: str) -> None:
        super().__init__(f"the job queue's Redis is not reachable ({what}); nothing was lost, retry shortly",
                         retry_after=2)


class JobRecords:
    """Job states in Redis through a blocking client (call it from threads, not the event loop)."""

    def __init__(self, url: str, ttl_s: int) -> None:
        self.ttl_s = ttl_s
        self.r = redis.Redis.from_url(url, socket_timeout=5, socket_connect_timeout=5)

    def save(self, state: JobState) -> None:
        with self.r.pipeline(transaction=True) as p:
            p.set(job_key(state.tenant, state.id), json.dumps(asdict(state)), ex=self.ttl_s)
            p.zadd(index_key(state.tenant), {state.id: state.created_at})
            p.expire(index_key(state.tenant), self.ttl_s)
            p.execute()

    def load(self, tenant: str, job_id: str) -> JobState | None:
        raw = self.r.get(job_key(tenant, job_id))
        return JobState.from_json(json.loads(raw)) if raw else None

    def lease_alive(self, job_id: str) -> bool:
        return bool(self.r.exists(IN_PROGRESS_PREFIX + job_id))

    def view(self, state: JobState, lease_alive: bool) -> JobState:
        """What a reader sees: a running job whose worker's lease lapsed (the worker was
        killed or lost Redis) reads ``queued`` until a worker takes it again."""
        if state.status == "running" and not lease_alive:
            return replace(state, status="queued",
                           stage=f"waiting for a worker to retry it (attempt {state.attempts} stopped)")
        return state

    def get(self, tenant: str, job_id: str) -> JobState | None:
        state = self.load(tenant, job_id)
        return None if state is None else self.view(state, self.lease_alive(job_id))

    def list(self, tenant: str) -> list[JobState]:
        ids = [i.decode() for i in self.r.zrevrange(index_key(tenant), 0, 999)]
        if not ids:
            return []
        raws = self.r.mget([job_key(tenant, i) for i in ids])
        leases = self.r.mget([IN_PROGRESS_PREFIX + i for i in ids])
        gone = [i for i, raw in zip(ids, raws) if raw is None]
        if gone:  # statuses expired (CTXROUTE_JOB_TTL_S): drop them from the index
            self.r.zrem(index_key(tenant), *gone)
        return [self.view(JobState.from_json(json.loads(raw)), lease is not None)
                for raw, lease in zip(raws, leases) if raw is not None]

    def drop_files(self, job_id: str, n: int) -> None:
        if n:
            self.r.delete(*[file_key(job_id, i) for i in range(n)])

    def close(self) -> None:
        self.r.close()


def arq_settings(url: str) -> Any:
    from arq.connections import RedisSettings

    s = RedisSettings.from_dsn(url)
    s.conn_retries = 1  # fail fast: the caller answers 503 (the API) or retries (the worker)
    return s


async def arq_pool(url: str) -> Any:
    from arq import create_pool

    return await create_pool(arq_settings(url), default_queue_name=QUEUE)


class RedisJobs:
    """The API's job manager when the queue is Redis: the same reading interface as
    ``JobManager`` (``get``, ``list``, ``running``, ``drain``), plus ``submit_upload``. Jobs
    recorded on disk by the thread mode (before a switch) stay readable."""

    def __init__(self, settings: ApiSettings, disk: JobManager) -> None:
        self.settings = settings
        self.disk = disk
        self.records = JobRecords(settings.redis_url, settings.job_ttl_s)
        self._pool: Any = None
        self._worker: Any = None
        self._worker_task: asyncio.Task[None] | None = None

    # --- the JobManager interface --------------------------------------------------------
    def new_id(self) -> str:
        return new_job_id()

    def get(self, tenant: str, job_id: str) -> JobState:
        try:
            state = self.records.get(tenant, job_id)
        except RedisError:
            raise QueueUnavailable("reading a job") from None
        return state if state is not None else self.disk.get(tenant, job_id)

    def list(self, tenant: str) -> list[JobState]:
        try:
            queued = self.records.list(tenant)
        except RedisError:
            raise QueueUnavailable("listing jobs") from None
        seen = {s.id for s in queued}
        out = queued + [s for s in self.disk.list(tenant) if s.id not in seen]
        return sorted(out, key=lambda s: s.created_at, reverse=True)

    @property
    def running(self) -> int:
        """Jobs this process's worker is running (other workers report their own)."""
        return int(getattr(self._worker, "job_counter", 0) or 0)

    def recover(self) -> int:
        return self.disk.recover()

    def purge(self, tenant: str) -> None:
        """Forget a purged tenant's job statuses (a job still running records its status again when
        it next reports; that record expires after CTXROUTE_JOB_TTL_S)."""
        try:
            ids = [i.decode() for i in self.records.r.zrange(index_key(tenant), 0, -1)]
            self.records.r.delete(index_key(tenant), *[job_key(tenant, i) for i in ids])
        except RedisError:
            raise QueueUnavailable("forgetting the tenant's jobs") from None

    # --- enqueueing ----------------------------------------------------------------------
    async def _get_pool(self) -> Any:
        if self._pool is None:
            try:
                self._pool = await arq_pool(self.settings.redis_url)
            except (RedisError, OSError):
                raise QueueUnavailable("connecting") from None
        return self._pool

    async def submit_upload(self, tenant: str, collection: str, files: Iterable[Any]) -> JobState:
        """Spool the uploaded files (starlette ``UploadFile``s) into Redis and enqueue the job.
        On any Redis failure nothing is left behind and the caller gets 503."""
        pool = await self._get_pool()
        job_id = self.new_id()
        names: list[str] = []
        try:
            for i, f in enumerate(files):
                names.append(Path(f.filename or f"upload{i}.txt").name or f"upload{i}.txt")
                key = file_key(job_id, i)
                await f.seek(0)
                await pool.set(key, b"", ex=self.settings.job_ttl_s)
                while chunk := await f.read(_CHUNK):  # never the whole upload in memory at once
                    await pool.append(key, chunk)
            state = JobState(id=job_id, tenant=tenant, collection=collection, status="queued",
                             files_total=len(names))
            await asyncio.to_thread(self.records.save, state)
            job = await pool.enqueue_job(INGEST_FN, tenant, collection, job_id, names, _job_id=job_id,
                                         _expires=self.settings.job_ttl_s)
            if job is None:  # an id collision (2^64 ids): refuse rather than run someone else's job
                raise QueueUnavailable("a job with this id exists")
        except (RedisError, OSError):
            await self._forget(pool, tenant, job_id, len(names))
            raise QueueUnavailable("spooling the upload") from None
        return state

    async def _forget(self, pool: Any, tenant: str, job_id: str, n: int) -> None:
        try:
            keys = [file_key(job_id, i) for i in range(n)] + [job_key(tenant, job_id)]
            await pool.delete(*keys)
            await pool.zrem(index_key(tenant), job_id)
        except (RedisError, OSError):
            pass  # the TTL removes them

    # --- the in-process worker -------------------------------------------------------------
    async def start_worker(self, backend: Any) -> None:
        """Run a queue worker in this process (``ctxroute serve --worker``), sharing the loaded
        embedder with the API."""
        from ctxroute.api.jobqueue_worker import build_worker

        self._worker = worker = build_worker(self.settings, backend, queue="ingest", max_jobs=1, handle_signals=False)

        async def run() -> None:
            while True:  # Redis down (at start or later): keep trying; the API itself stays up
                try:
                    await worker.main()
                    return
                except (RedisError, OSError):
                    await asyncio.sleep(2.0)

        self._worker_task = asyncio.get_running_loop().create_task(run())

    async def drain(self, timeout: float = 30.0) -> None:
        """Stop the in-process worker (its running job goes back to the queue for another
        worker: arq re-runs a cancelled job), close the pools, and drain thread-mode jobs."""
        if self._worker is not None:
            if self._worker_task is not None:  # first stop polling, so no new job starts
                self._worker_task.cancel()
                await asyncio.gather(self._worker_task, return_exceptions=True)
            try:
                await asyncio.wait_for(self._worker.close(), timeout)
            except (RedisError, OSError, asyncio.TimeoutError):
                pass
            self._worker = None
        if self._pool is not None:
            await self._pool.aclose()
            self._pool = None
        self.records.close()
        await self.disk.drain(timeout)


async def enqueue_eval(settings: ApiSettings, spec: dict[str, Any]) -> JobState:
    """Enqueue an evaluation (``ctxroute eval run ... --queue``). ``spec``: ``argv`` (the
    arguments of ``ctxroute eval run``, paths absolute), ``out``, ``label``, and optionally
    ``dataset``, ``data_root``, ``task``, ``limit``, ``routes`` (to size the progress)."""
    pool = await arq_pool(settings.redis_url)
    try:
        job_id = new_job_id()
        state = JobState(id=job_id, tenant=EVAL_TENANT, collection=str(spec.get("label", "eval")), status="queued",
                         files_total=0, kind="eval", detail=str(spec["out"]))
        records = JobRecords(settings.redis_url, settings.job_ttl_s)
        try:
            await asyncio.to_thread(records.save, state)
        finally:
            records.close()
        await pool.enqueue_job(EVAL_FN, job_id, spec, _job_id=job_id, _queue_name=EVAL_QUEUE,
                               _expires=settings.job_ttl_s)
        return state
    finally:
        await pool.aclose()


def is_terminal(state: JobState) -> bool:
    return state.status in TERMINAL


def wait_for(records: JobRecords, tenant: str, job_id: str, timeout_s: float, poll_s: float = 0.5) -> JobState:
    """Poll until the job is terminal (blocking); raises NotFound for an unknown id."""
    deadline = time.monotonic() + timeout_s
    while True:
        state = records.get(tenant, job_id)
        if state is None:
            raise NotFound(f"job {job_id!r} does not exist (or its status expired)", job=job_id)
        if is_terminal(state) or time.monotonic() >= deadline:
            return state
        time.sleep(poll_s)
