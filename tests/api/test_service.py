"""End to end over a real uvicorn server: collections, uploads, jobs, queries with citations,
streaming (SSE), deletes, and persistence across a restart."""
from __future__ import annotations

import httpx
import pytest
from httpx_sse import connect_sse

from ctxroute.retrievers.documents import content_id
from tests.api.conftest import DOCS, STATION, upload, wait_job


def _check_citations(body: dict, docs: dict[str, str]) -> None:
    """Every quote is exactly the text at its span in the document it cites (by content id)."""
    assert body["citations"], body
    by_id = {content_id(t): t for t in docs.values()}
    for c in body["citations"]:
        assert c["doc_id"] in by_id, c
        assert by_id[c["doc_id"]][c["start"]:c["end"]] == c["quote"], c
        assert c["title"]


def test_collections_documents_query_stream_delete_restart(settings_factory, live_server, redis_server):
    settings = settings_factory(redis_url=redis_server)
    server = live_server(settings)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.get("/healthz").json()["status"] == "ok"
        ready = c.get("/readyz")
        assert ready.status_code == 200 and ready.json()["checks"]["reader"] == "extractive"
        assert c.get("/docs").status_code == 200
        assert "/v1/collections/{name}/query" in c.get("/openapi.json").json()["paths"]

        r = c.post("/v1/collections", json={"name": "field"})
        assert r.status_code == 201 and r.json()["documents"] == 0
        v0 = r.json()["version"]
        assert c.post("/v1/collections", json={"name": "field"}).status_code == 409
        assert [x["name"] for x in c.get("/v1/collections").json()["collections"]] == ["field"]

        r = upload(c, "field", DOCS)
        assert r.status_code == 201, r.text
        added = r.json()
        assert len(added["documents"]) == 3 and added["version"] != v0
        info = c.get("/v1/collections/field").json()
        assert info["documents"] == 3 and info["chunks"] > 0 and info["version"] == added["version"]

        docs = c.get("/v1/collections/field/documents").json()["documents"]
        station = next(d for d in docs if d["title"] == "Field Station Orion")
        detail = c.get(f"/v1/collections/field/documents/{station['id']}").json()
        assert detail["chars"] == len(STATION) and STATION.startswith(detail["preview"][:100])

        q = {"question": "What is the wind turbine rated at?"}
        r = c.post("/v1/collections/field/query", json=q)
        assert r.status_code == 200, r.text
        body = r.json()
        assert "45 kilowatts" in body["answer"] and not body["cached"]
        _check_citations(body, DOCS)
        assert body["decision"]["reasons"] and body["route_taken"] == "extractive"
        assert "total" in body["latency_ms"] and body["request_id"] == r.headers["x-request-id"]
        again = c.post("/v1/collections/field/query", json=q).json()
        assert again["cached"] and again["answer"] == body["answer"]

        preview = c.post("/v1/collections/field/route", json=q)
        assert preview.status_code == 200 and preview.json()["decision"]["route"] == "extractive"

        # streaming: decision first, one event per citation, a final event with usage
        events = []
        with connect_sse(c, "POST", "/v1/collections/field/query",
                         json={"question": "Who is the harbour master?", "stream": True}) as source:
            assert source.response.headers["content-type"].startswith("text/event-stream")
            for sse in source.iter_sse():
                events.append((sse.event, sse.json()))
        kinds = [k for k, _ in events]
        assert kinds[0] == "decision" and kinds[-1] == "done", kinds
        final = events[-1][1]
        # the extractive reader writes no tokens: its text still arrives as a delta, before the citations
        assert "".join(d["text"] for k, d in events if k == "delta") == final["answer"], kinds
        assert kinds.index("delta") < kinds.index("citation")
        streamed = [d for k, d in events if k == "citation"]
        assert "Ruth Okafor" in final["answer"] and final["usage"]["calls"] is not None
        assert streamed == final["citations"] and streamed
        _check_citations(final, DOCS)
        # Accept: text/event-stream also streams, and a cached answer replays the same events
        with connect_sse(c, "POST", "/v1/collections/field/query",
                         json={"question": "Who is the harbour master?"}) as source:
            replay = [(s.event, s.json()) for s in source.iter_sse()]
        assert [k for k, _ in replay][0] == "decision" and replay[-1][1]["cached"]
        assert [d for k, d in replay if k == "citation"] == streamed

        # a change to the collection changes its version: no stale cached answer
        r = c.delete(f"/v1/collections/field/documents/{station['id']}")
        assert r.status_code == 204
        assert c.get(f"/v1/collections/field/documents/{station['id']}").status_code == 404
        after = c.post("/v1/collections/field/query", json=q).json()
        assert not after["cached"] and after["collection_version"] != body["collection_version"]
        assert "45 kilowatts" not in after["answer"]

        metrics = c.get("/metrics").text
        assert 'ctxroute_answer_cache_total{result="hit"}' in metrics
        assert 'ctxroute_route_total{route="extractive"}' in metrics
        assert "ctxroute_request_latency_seconds_bucket" in metrics
        version_before = c.get("/v1/collections/field").json()["version"]

    # restart: the data is still there
    server.stop()
    server2 = live_server(settings)
    with httpx.Client(base_url=server2.url, timeout=30) as c:
        info = c.get("/v1/collections/field").json()
        assert info["documents"] == 2 and info["version"] == version_before
        # the answer cache lives in Redis: it survives the restart (same collection version)
        cached = c.post("/v1/collections/field/query", json=q).json()
        assert cached["cached"] and cached["answer"] == after["answer"]
        body = c.post("/v1/collections/field/query", json={"question": "When does the harvest start?"}).json()
        assert "September" in body["answer"]
        assert c.delete("/v1/collections/field").status_code == 204
        assert c.get("/v1/collections/field").status_code == 404
        assert c.get("/v1/collections").json()["collections"] == []


def test_json_documents_and_background_job(settings_factory, live_server):
    server = live_server(settings_factory(background_upload_bytes=1024))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/v1/collections", json={"name": "jobs"})
        r = c.post("/v1/collections/jobs/documents", json={"documents": [{"text": STATION, "title": "Orion"}]})
        assert r.status_code == 201 and r.json()["documents"][0]["title"] == "Orion"
        files = dict(DOCS)
        files["broken.pdf"] = "%PDF-1.4 not really a pdf"
        files["empty.txt"] = "   "
        r = upload(c, "jobs", files)
        assert r.status_code == 202, r.text
        job = r.json()
        assert r.headers["location"] == f"/v1/jobs/{job['id']}" and job["files_total"] == 5
        done = wait_job(c, job["id"])
        assert done["status"] == "partial" and done["progress"] == 1.0 and done["files_done"] == 5
        assert sorted(e["file"] for e in done["errors"]) == ["broken.pdf", "empty.txt", "station.md"]
        assert "already in the collection" in next(e for e in done["errors"] if e["file"] == "station.md")["message"]
        assert len(done["documents_added"]) == 2
        assert [j["id"] for j in c.get("/v1/jobs").json()["jobs"]] == [job["id"]]
        assert c.get("/v1/collections/jobs").json()["documents"] == 3


@pytest.mark.parametrize("status_path", ["/v1/collections/nope", "/v1/collections/nope/documents", "/v1/jobs/job_0000000000000000"])
def test_not_found_has_the_error_shape(settings_factory, live_server, status_path):
    server = live_server(settings_factory())
    r = httpx.get(server.url + status_path)
    assert r.status_code == 404
    body = r.json()
    assert set(body) == {"code", "message", "request_id"} and body["request_id"] == r.headers["x-request-id"]


def test_restart_marks_unfinished_jobs_interrupted(settings_factory, live_server):
    import json
    import os

    settings = settings_factory()
    jobs_dir = settings.home / "tenants" / "default" / "jobs"
    jobs_dir.mkdir(parents=True)
    base = {"tenant": "default", "collection": "c", "status": "running", "files_total": 2, "created_at": 1.0}
    (jobs_dir / "job_dead000000000000.json").write_text(json.dumps({**base, "id": "job_dead000000000000", "pid": 0}))
    # a job still owned by a live process (another worker) is left alone
    (jobs_dir / "job_a11e000000000000.json").write_text(
        json.dumps({**base, "id": "job_a11e000000000000", "pid": os.getppid()}))
    server = live_server(settings)
    with httpx.Client(base_url=server.url) as c:
        dead = c.get("/v1/jobs/job_dead000000000000").json()
        assert dead["status"] == "interrupted" and "stopped during ingestion" in dead["errors"][0]["message"]
        assert c.get("/v1/jobs/job_a11e000000000000").json()["status"] == "running"
