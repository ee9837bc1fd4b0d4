"""The queued ingestion's resume logic (ctxroute.api.jobqueue_worker.ingest) on a real
collection: an attempt cut short right after a commit (before its status write) or in the
middle of a step, then a retry from the last status written; the status store is an in-memory
stand-in (the end-to-end test with Redis and killed worker processes is test_job_queue.py)."""
from __future__ import annotations

import json
import threading
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("arq", reason="the Redis job queue needs arq (pip install 'ctxroute[scale]')")

from ctxroute.api.backend import Backend  # noqa: E402
from ctxroute.api.jobqueue_worker import RemoteHandle, Stopped, _finish, ingest  # noqa: E402
from ctxroute.api.jobs import JobState  # noqa: E402
from ctxroute.api.settings import ApiSettings  # noqa: E402
from ctxroute.api.uploads import UploadLimits  # noqa: E402
from ctxroute.retrievers.documents import document_from_text  # noqa: E402
from ctxroute.retrievers.embedders import HashingEmbedder  # noqa: E402

N, BATCH = 10, 3


class MemRecords:
    """What Redis would hold: the last state saved."""

    def __init__(self) -> None:
        self.saved: JobState | None = None

    def save(self, state: JobState) -> None:
        self.saved = state


class Killed(Exception):
    """The worker process dies here."""


class DyingHandle(RemoteHandle):
    """Dies at the ``nth`` progress report of ``stage`` (nothing after it is written)."""

    def __init__(self, records: MemRecords, state: JobState, stage: str, nth: int) -> None:
        super().__init__(records, state, threading.Event())  # type: ignore[arg-type]
        self.stage, self.nth, self.seen = stage, nth, 0

    def update(self, *, force: bool = False, **changes: Any) -> None:
        if changes.get("stage") == self.stage:
            self.seen += 1
            if self.seen == self.nth:
                raise Killed()
        super().update(force=force, **changes)


def _text(i: int) -> str:
    return f"Record {i} is about the harbour number {i}. The pilot boarded vessel {i} at dawn. It rained."


def _upload() -> bytes:
    return "\n".join(json.dumps({"id": f"rec-{i}", "text": _text(i)}) for i in range(N)).encode()


@pytest.fixture()
def backend(tmp_path: Path) -> Backend:
    b = Backend(ApiSettings(home=tmp_path / "home", embedder="hashing", reader="extractive"), embedder=HashingEmbedder())
    b.create_collection("default", "c")
    # rec-5 is in the collection before the job: the job must report it as skipped, never as its own
    b.collection("default", "c").add_documents([document_from_text(_text(5), doc_id="rec-5", source="old.jsonl")])
    return b


@pytest.mark.parametrize(("stage", "nth"), [("indexing:save", 2), ("indexing:chunk", BATCH + 2)],
                         ids=["after-commit", "mid-step"])
def test_retry_after_a_crash_adds_every_document_once(backend: Backend, stage: str, nth: int) -> None:
    records = MemRecords()
    state = JobState(id="job_00000000000000aa", tenant="default", collection="c", status="running", files_total=1)
    files = [("up.jsonl", _upload())]
    first = DyingHandle(records, state, stage, nth)  # dies in the second step (rec-3, rec-4, rec-5)
    with pytest.raises(Killed):
        ingest(first, backend, files, UploadLimits(), BATCH)
    last = records.saved
    assert last is not None and last.documents_added == ("rec-0", "rec-1", "rec-2")
    assert last.pending == ("rec-3", "rec-4"), "pending excludes what was in the collection before the job"
    in_collection = {d.id for d in backend.collection("default", "c").documents()}
    assert {"rec-3", "rec-4"} <= in_collection if stage == "indexing:save" else not {"rec-3", "rec-4"} & in_collection

    retry = RemoteHandle(records, replace(last, attempts=2), threading.Event())  # type: ignore[arg-type]
    ingest(retry, backend, files, UploadLimits(), BATCH)
    _finish(retry)
    done = records.saved
    assert done is not None and done.status == "partial" and done.pending == ()
    expected = [f"rec-{i}" for i in range(N) if i != 5]
    assert sorted(done.documents_added) == sorted(expected) and len(done.documents_added) == len(expected)
    assert [(e.file, "already in the collection" in e.message) for e in done.errors] == [("up.jsonl", True)]
    col = backend.collection("default", "c")
    assert sorted(d.id for d in col.documents()) == sorted(f"rec-{i}" for i in range(N))
    assert col.stats().n_docs == N


def test_a_stopped_attempt_stops_at_its_next_report(backend: Backend) -> None:
    records = MemRecords()
    stop = threading.Event()
    stop.set()
    h = RemoteHandle(records, JobState(id="job_00000000000000bb", tenant="default", collection="c", status="running",  # type: ignore[arg-type]
                                       files_total=1), stop)
    with pytest.raises(Stopped):
        ingest(h, backend, [("up.jsonl", _upload())], UploadLimits(), BATCH)
    assert records.saved is None
    assert {d.id for d in backend.collection("default", "c").documents()} == {"rec-5"}


def test_expired_spool_is_a_file_error(backend: Backend) -> None:
    records = MemRecords()
    h = RemoteHandle(records, JobState(id="job_00000000000000cc", tenant="default", collection="c", status="running",  # type: ignore[arg-type]
                                       files_total=1), threading.Event())
    ingest(h, backend, [("gone.md", None)], UploadLimits(), BATCH)
    _finish(h)
    assert records.saved is not None and records.saved.status == "failed"
    assert "expired" in records.saved.errors[0].message and records.saved.errors[0].file == "gone.md"


def test_redis_failure_mid_job_asks_arq_to_run_it_again(tmp_path: Path) -> None:
    import asyncio

    from arq.worker import Retry
    from redis.exceptions import ConnectionError as RedisConnectionError

    from ctxroute.api.jobqueue_worker import eval_run, ingest_upload

    class Down:
        def load(self, tenant: str, job_id: str) -> None:
            raise RedisConnectionError("Redis went away")

    ctx = {"records": Down(), "settings": ApiSettings(home=tmp_path), "job_try": 1}
    with pytest.raises(Retry):
        asyncio.run(ingest_upload(ctx, "default", "c", "job_00000000000000dd", ["a.md"]))
    with pytest.raises(Retry):
        asyncio.run(eval_run(ctx, "job_00000000000000ee", {"out": str(tmp_path / "o"), "argv": []}))


def test_a_job_that_keeps_dying_is_failed_after_max_tries(tmp_path: Path) -> None:
    import asyncio

    from ctxroute.api.jobqueue_worker import ingest_upload

    class Records(MemRecords):
        def load(self, tenant: str, job_id: str) -> JobState | None:
            return self.saved

        def drop_files(self, job_id: str, n: int) -> None:
            self.dropped = n

    records = Records()
    records.saved = JobState(id="job_00000000000000ff", tenant="default", collection="c", status="running",
                             files_total=1, attempts=2)
    ctx = {"records": records, "settings": ApiSettings(home=tmp_path, job_max_tries=2), "job_try": 3}
    assert asyncio.run(ingest_upload(ctx, "default", "c", "job_00000000000000ff", ["a.md"])) == "nothing to do"
    s = records.saved
    assert s.status == "failed" and s.finished_at and "gave up after 2 attempts" in s.errors[-1].message
    assert records.dropped == 1, "the spooled upload of a given-up job is removed"
