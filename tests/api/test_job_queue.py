"""Jobs on the Redis queue (arq), against a real Redis server, real uvicorn servers and real
`ctxroute worker` processes: an upload enqueued through one replica is finished by a worker
and its status is read through another; a worker SIGKILLed mid-job leaves the job to a second
worker, which finishes it with every document exactly once."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

pytest.importorskip("arq", reason="the Redis job queue needs arq (pip install 'ctxroute[scale]')")

from ctxroute.api import jobqueue as Q  # noqa: E402
from tests.api.conftest import upload, wait_job  # noqa: E402

ROOT = Path(__file__).resolve().parents[2]


def _queue_settings(settings_factory: Any, redis_url: str, **kw: Any) -> Any:
    return settings_factory(redis_url=redis_url, job_queue="redis", **kw)


def _worker(home: Path, redis_url: str, log: Path, **env_extra: str) -> subprocess.Popen:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=str(home), CTXROUTE_REDIS_URL=redis_url, CTXROUTE_EMBEDDER="hashing",
               HF_HUB_OFFLINE="1", **env_extra)
    return subprocess.Popen([sys.executable, "-m", "ctxroute", "worker"], env=env, cwd=ROOT,
                            stdout=log.open("ab"), stderr=subprocess.STDOUT)


def _stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=30)


def _records(n: int, words: int = 120) -> tuple[bytes, list[str]]:
    vocab = "harbour pilot vessel mooring fee orchard cider station glacier turbine".split()
    lines, ids = [], []
    for i in range(n):
        text = " ".join(f"{vocab[(i + j) % len(vocab)]}{j % 89}" for j in range(words)) + f". Record {i} ends here."
        ids.append(f"rec-{i}")
        lines.append(json.dumps({"id": ids[-1], "text": text}))
    return "\n".join(lines).encode(), ids


def test_settings_pick_the_queue() -> None:
    from ctxroute.api.settings import ApiSettings
    from ctxroute.errors import InputError

    assert ApiSettings.from_env({}).job_queue == "thread"
    s = ApiSettings.from_env({"CTXROUTE_REDIS_URL": "redis://127.0.0.1:1/0"})
    assert (s.job_queue, s.job_worker) == ("redis", True)
    assert ApiSettings.from_env({"CTXROUTE_REDIS_URL": "redis://x/0", "CTXROUTE_JOB_QUEUE": "thread"}).job_queue == "thread"
    with pytest.raises(InputError, match="needs CTXROUTE_REDIS_URL"):
        ApiSettings.from_env({"CTXROUTE_JOB_QUEUE": "redis"})
    with pytest.raises(InputError, match="use 'redis' or 'thread'"):
        ApiSettings.from_env({"CTXROUTE_REDIS_URL": "redis://x/0", "CTXROUTE_JOB_QUEUE": "celery"})


def test_in_progress_prefix_is_arqs() -> None:
    from arq.constants import in_progress_key_prefix

    assert Q.IN_PROGRESS_PREFIX == in_progress_key_prefix


def test_upload_through_one_replica_read_through_another(settings_factory, live_server, redis_restartable) -> None:
    """Replica A (with its in-process worker) takes the upload; replica B (no worker) reads
    the job from Redis; the documents are in the shared collection."""
    a = live_server(_queue_settings(settings_factory, redis_restartable.url, job_worker=True))
    b = live_server(_queue_settings(settings_factory, redis_restartable.url, job_worker=False))
    ca, cb = httpx.Client(base_url=a.url, timeout=30), httpx.Client(base_url=b.url, timeout=30)
    assert ca.post("/v1/collections", json={"name": "notes"}).status_code == 201
    docs = {f"note{i}.md": f"# Note {i}\n\nThe parcel number {i} left the depot at {i} o'clock. It was blue.\n"
            for i in range(5)}
    r = upload(ca, "notes", docs, background=True)
    assert r.status_code == 202, r.text
    job = r.json()
    assert job["status"] == "queued" and job["files_total"] == 5 and r.headers["location"] == f"/v1/jobs/{job['id']}"
    done = wait_job(cb, job["id"])  # read through the replica that did not take the upload
    assert done["status"] == "succeeded", done
    assert done["files_done"] == 5 and len(done["documents_added"]) == 5 and done["collection_version"]
    listed = cb.get("/v1/jobs").json()["jobs"]
    assert [j["id"] for j in listed] == [job["id"]] and listed[0]["status"] == "succeeded"
    ids = {d["id"] for d in cb.get("/v1/collections/notes/documents").json()["documents"]}
    assert ids == set(done["documents_added"])
    assert not [k for k in b.svc.jobs.records.r.keys("ctxroute:jobfile:*")], "spooled upload left in Redis"
    # the same files again: nothing duplicated, each reported as already there
    again = wait_job(cb, upload(ca, "notes", docs, background=True).json()["id"])
    assert again["status"] == "failed" and again["documents_added"] == []
    assert len(again["errors"]) == 5 and all("already in the collection" in e["message"] for e in again["errors"])
    assert cb.get("/v1/collections/notes").json()["documents"] == 5
    # another tenant's job (here: an unknown id) answers 404 from both replicas
    assert cb.get("/v1/jobs/job_0123456789abcdef").status_code == 404
    # an evaluation is left to `ctxroute worker`: the API's in-process worker takes ingestion only
    import asyncio

    ev = asyncio.run(Q.enqueue_eval(a.settings, {"out": "/nonexistent/out", "argv": ["x.jsonl"], "label": "x"}))
    time.sleep(2.0)
    assert cb.get(f"/v1/jobs/{ev.id}").json()["status"] == "queued"


def test_redis_down_upload_answers_503_and_loses_nothing(settings_factory, live_server, redis_restartable) -> None:
    server = live_server(_queue_settings(settings_factory, redis_restartable.url, job_worker=False))
    c = httpx.Client(base_url=server.url, timeout=30)
    assert c.post("/v1/collections", json={"name": "notes"}).status_code == 201
    redis_restartable.stop()
    r = upload(c, "notes", {"a.md": "# A\n\nAlpha is the first letter.\n"}, background=True)
    assert r.status_code == 503, r.text
    assert r.json()["code"] == "queue_unavailable" and "retry" in r.json()["message"]
    assert c.get("/v1/jobs").status_code == 503
    redis_restartable.start()
    r = upload(c, "notes", {"a.md": "# A\n\nAlpha is the first letter.\n"}, background=True)
    assert r.status_code == 202, r.text


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGTERM], ids=["sigkill", "sigterm"])
def test_killed_worker_job_is_finished_by_another(settings_factory, live_server, redis_restartable, tmp_path, sig) -> None:
    """Kill the worker after its first commits; a second worker resumes: after SIGKILL once the
    lease (2 s here) lapses, after SIGTERM at once (arq hands a cancelled job back). All
    documents once, none lost, none reported twice."""
    settings = _queue_settings(settings_factory, redis_restartable.url, job_worker=False)
    api = live_server(settings)
    c = httpx.Client(base_url=api.url, timeout=60)
    assert c.post("/v1/collections", json={"name": "big"}).status_code == 201
    data, ids = _records(3000)
    env = dict(CTXROUTE_JOB_LEASE_S="2", CTXROUTE_JOB_BATCH_DOCS="150")
    log = tmp_path / "workers.log"
    first = _worker(settings.home, redis_restartable.url, log, **env)
    second = None
    try:
        r = c.post("/v1/collections/big/files", params={"background": True},
                   files=[("files", ("big.jsonl", data, "application/jsonl"))])
        assert r.status_code == 202, r.text
        job_id = r.json()["id"]
        deadline = time.monotonic() + 240
        while True:
            job = c.get(f"/v1/jobs/{job_id}").json()
            if job["status"] == "running" and job["documents_added"]:
                break
            assert job["status"] in ("queued", "running"), (job, log.read_text()[-2000:])
            assert time.monotonic() < deadline, f"no commit within 240 s: {job}"
            time.sleep(0.05)
        first.send_signal(sig)
        first.wait(timeout=30)
        committed = len(job["documents_added"])
        assert 0 < committed < 3000, "the job finished before the kill; make it bigger"
        deadline = time.monotonic() + 30
        while (job := c.get(f"/v1/jobs/{job_id}").json())["status"] != "queued":  # the lease lapses
            assert time.monotonic() < deadline, job
            time.sleep(0.1)
        assert "waiting for a worker" in job["stage"]
        second = _worker(settings.home, redis_restartable.url, log, **env)
        done = wait_job(c, job_id, timeout=600)
        assert done["status"] == "succeeded", (done, log.read_text()[-3000:])
        assert done["errors"] == []
        assert sorted(done["documents_added"]) == sorted(ids), "lost or duplicated documents in the job's report"
        state = api.svc.jobs.records.load("default", job_id)
        assert state.attempts == 2 and state.pending == ()
        listed = [d["id"] for d in c.get("/v1/collections/big/documents").json()["documents"]]
        assert sorted(listed) == sorted(ids) and len(listed) == len(set(listed))
        assert c.get("/v1/collections/big").json()["documents"] == 3000
    finally:
        _stop(first)
        if second is not None:
            _stop(second)


def _cli(args: list[str], env: dict[str, str], timeout: float = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "ctxroute", *args], env=env, cwd=ROOT, capture_output=True, text=True,
                          timeout=timeout)


def test_eval_run_through_the_queue(redis_restartable, tmp_path) -> None:
    """`eval run --queue` prints a job id; a worker (burst mode) runs the same runner and
    writes results and report under --out; `jobs status`/`jobs list` read it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=str(tmp_path / "home"), CTXROUTE_REDIS_URL=redis_restartable.url, HF_HUB_OFFLINE="1")
    data = tmp_path / "data"
    data.mkdir()
    (data / "a.txt").write_text("The lighthouse keeper was named Ada Byrne. She kept the lamp lit for forty years.\n" * 3)
    (data / "qa.jsonl").write_text(
        json.dumps({"id": "q1", "question": "Who kept the lighthouse?", "answers": ["Ada Byrne"], "docs": ["a.txt"]}) + "\n"
        + json.dumps({"id": "q2", "question": "What colour was the lamp?", "answers": [], "docs": ["a.txt"],
                      "answerable": False}) + "\n")
    out = tmp_path / "run"
    res = _cli(["eval", "run", str(data / "qa.jsonl"), "--routes", "rag,lc", "--out", str(out), "--embedder", "hashing",
                "--llm", "scripted", "--queue"], env)
    assert res.returncode == 0, res.stderr
    job_id = res.stdout.strip().splitlines()[-1]
    assert job_id.startswith("job_") and not out.exists(), "the CLI ran the evaluation itself"
    res = _cli(["jobs", "status", job_id], env)
    assert res.returncode == 3 and json.loads(res.stdout)["status"] == "queued", res.stdout + res.stderr
    worker = _cli(["worker", "--burst"], {**env, "CTXROUTE_EMBEDDER": "hashing"}, timeout=600)
    assert worker.returncode == 0, worker.stderr[-3000:]
    res = _cli(["jobs", "status", job_id, "--wait", "5"], env)
    job = json.loads(res.stdout)
    assert res.returncode == 0 and job["status"] == "succeeded", res.stdout + res.stderr
    assert job["kind"] == "eval" and job["attempts"] == 1 and job["files_done"] == job["files_total"] == 4
    assert job["detail"] == str(out / "report")
    keys = sorted(json.loads(line)["key"] for line in (out / "results.jsonl").read_text().splitlines())
    assert keys == ["q1|lc", "q1|rag", "q2|lc", "q2|rag"]
    assert (out / "report" / "summary.json").is_file()
    listed = json.loads(_cli(["jobs", "list", "--json"], env).stdout)
    assert [(j["id"], j["status"]) for j in listed] == [(job_id, "succeeded")]
    res = _cli(["jobs", "status", "job_ffffffffffffffff"], env)
    assert res.returncode == 1 and "does not exist" in res.stderr


def test_compose_runs_a_worker_with_the_apis_image_and_store() -> None:
    import yaml
    from typer.testing import CliRunner

    from ctxroute.cli import app as cli_app
    from tests.api.test_serve import code_env_vars

    services = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    worker, api = services["worker"], services["api"]
    assert worker["command"][:2] == ["ctxroute", "worker"] and worker["image"] == api["image"]
    res = CliRunner().invoke(cli_app, [*worker["command"][1:], "--help"])
    assert res.exit_code == 0, res.output
    env = worker["environment"]
    assert set(env) <= code_env_vars()
    for same in ("CTXROUTE_HOME", "CTXROUTE_REDIS_URL", "CTXROUTE_EMBEDDER"):
        assert env[same] == api["environment"][same], same
    assert worker["volumes"] == api["volumes"]
    assert "noeviction" in services["redis"]["command"], "an evicting Redis can drop queued jobs"


def test_queued_jobs_are_tenant_scoped_and_purged(settings_factory, live_server, redis_restartable) -> None:
    from tests.api.conftest import ADMIN_KEY, DOCS

    server = live_server(_queue_settings(settings_factory, redis_restartable.url, admin_key=ADMIN_KEY,
                                         background_upload_bytes=1))
    admin = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {ADMIN_KEY}"})
    keys = {}
    for t in ("team-a", "team-b"):
        assert admin.post("/v1/admin/tenants", json={"name": t}).status_code == 201
        keys[t] = admin.post(f"/v1/admin/tenants/{t}/keys", json={"label": "q"}).json()["key"]
    a = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {keys['team-a']}"})
    b = httpx.Client(base_url=server.url, timeout=30, headers={"Authorization": f"Bearer {keys['team-b']}"})
    assert a.post("/v1/collections", json={"name": "c"}).status_code == 201
    job = upload(a, "c", DOCS).json()
    assert wait_job(a, job["id"])["status"] == "succeeded"
    assert b.get(f"/v1/jobs/{job['id']}").status_code == 404 and b.get("/v1/jobs").json()["jobs"] == []
    records = server.svc.jobs.records
    assert records.load("team-a", job["id"]) is not None
    assert admin.delete("/v1/admin/tenants/team-a", params={"purge": True}).status_code == 204
    assert records.load("team-a", job["id"]) is None and not records.r.exists(Q.index_key("team-a"))


def test_in_process_worker_waits_for_redis(settings_factory, live_server, redis_restartable) -> None:
    """A replica started while Redis is down is ready at once (queries need no Redis) and its
    worker starts taking jobs once Redis is back."""
    redis_restartable.stop()
    server = live_server(_queue_settings(settings_factory, redis_restartable.url, job_worker=True))
    c = httpx.Client(base_url=server.url, timeout=30)
    assert c.get("/readyz").status_code == 200
    assert c.post("/v1/collections", json={"name": "notes"}).status_code == 201
    redis_restartable.start()
    r = upload(c, "notes", {"a.md": "# A\n\nAlpha is the first letter of the alphabet.\n"}, background=True)
    assert r.status_code == 202, r.text
    done = wait_job(c, r.json()["id"], timeout=60)
    assert done["status"] == "succeeded" and len(done["documents_added"]) == 1
