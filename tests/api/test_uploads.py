"""Uploads: parsing runs in the bounded parser pool (never on the event loop), and pages,
decompressed PDF content and extracted characters are capped with a 413 naming the limit."""
from __future__ import annotations

import json
import threading

import httpx
import pytest

from ctxroute.api import uploads
from tests.api.conftest import wait_job
from tests.api.pdfs import make_pdf, pdf_bomb, text_page


def _files(name: str, data: bytes, mime: str = "application/pdf") -> list:
    return [("files", (name, data, mime))]


def test_pdf_bomb_is_refused_with_the_limit_named(settings_factory, live_server):
    bomb = pdf_bomb()
    assert len(bomb) < 20_000
    server = live_server(settings_factory(background_upload_bytes=1024 * 1024))
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/v1/collections", json={"name": "b"})
        r = c.post("/v1/collections/b/files", files=_files("bomb.pdf", bomb))
        assert r.status_code == 413, r.text
        body = r.json()
        assert body["code"] == "too_large" and "bomb.pdf" in body["message"]
        assert "CTXROUTE_MAX_PDF_RATIO" in body["message"]
        # the same file as a background job fails alone, with the same reason
        ok = make_pdf([text_page("The harbour opens at five.")])
        r = c.post("/v1/collections/b/files", params={"background": True},
                   files=_files("bomb.pdf", bomb) + _files("ok.pdf", ok))
        assert r.status_code == 202, r.text
        job = wait_job(c, r.json()["id"])
        assert job["status"] == "partial" and len(job["documents_added"]) == 1, job
        assert [e["file"] for e in job["errors"]] == ["bomb.pdf"] and "CTXROUTE_MAX_PDF_RATIO" in job["errors"][0]["message"]
        assert c.get("/v1/collections/b").json()["documents"] == 1


def test_pdf_content_and_page_caps(settings_factory, live_server):
    server = live_server(settings_factory(max_pdf_pages=2, max_pdf_ratio=0, max_pdf_content_bytes=200_000))
    three = make_pdf([text_page(f"Page {i} of the report.") for i in range(3)])
    big = make_pdf([text_page("x" * 100) * 3000], compress=False)  # ~300 KB of plain content
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/v1/collections", json={"name": "p"})
        r = c.post("/v1/collections/p/files", files=_files("three.pdf", three))
        assert r.status_code == 413 and "3 pages" in r.json()["message"] and "CTXROUTE_MAX_PDF_PAGES" in r.json()["message"]
        r = c.post("/v1/collections/p/files", files=_files("big.pdf", big), params={"background": False})
        assert r.status_code == 413 and "CTXROUTE_MAX_PDF_CONTENT_MB" in r.json()["message"], r.text
        two = make_pdf([text_page("Page one."), text_page("Page two.")])
        assert c.post("/v1/collections/p/files", files=_files("two.pdf", two)).status_code == 201


def test_extracted_characters_are_capped(settings_factory, live_server):
    server = live_server(settings_factory(max_document_chars=5000))
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/v1/collections", json={"name": "t"})
        r = c.post("/v1/collections/t/files", files=_files("long.txt", b"word " * 2000, "text/plain"))
        assert r.status_code == 413 and "CTXROUTE_MAX_DOCUMENT_CHARS" in r.json()["message"], r.text
        # one file over the cap does not sink the others
        r = c.post("/v1/collections/t/files", files=_files("long.txt", b"word " * 2000, "text/plain")
                   + _files("short.txt", b"The orchard opens in May.", "text/plain"))
        assert r.status_code == 201 and len(r.json()["documents"]) == 1
        assert r.json()["errors"][0]["file"] == "long.txt"


def test_parsing_runs_in_the_parser_pool(settings_factory, live_server, monkeypatch):
    """Before: load_upload ran inside the async handler, on the event loop's thread."""
    seen: list[str] = []
    real = uploads.load_bytes_report

    def spy(data, name):  # type: ignore[no-untyped-def]
        seen.append(threading.current_thread().name)
        return real(data, name)

    monkeypatch.setattr(uploads, "load_bytes_report", spy)
    server = live_server(settings_factory())
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/v1/collections", json={"name": "pool"})
        r = c.post("/v1/collections/pool/files", files=_files("a.txt", b"Alpha text here.", "text/plain"))
        assert r.status_code == 201
    assert seen and all(name.startswith("ctxroute-parse") for name in seen), seen


@pytest.mark.parametrize("bad_id", ["a/b", "../../etc/passwd", "x" * 5000, "line\nbreak", " lead"])
def test_jsonl_document_ids_are_validated(settings_factory, live_server, bad_id):
    server = live_server(settings_factory())
    lines = [json.dumps({"id": bad_id, "text": "A document with a bad id."}),
             json.dumps({"id": "good-1", "text": "A document with a good id."})]
    with httpx.Client(base_url=server.url, timeout=60) as c:
        c.post("/v1/collections", json={"name": "j"})
        r = c.post("/v1/collections/j/files", files=_files("docs.jsonl", "\n".join(lines).encode(), "application/jsonl"))
        assert r.status_code == 201, r.text
        assert [d["id"] for d in r.json()["documents"]] == ["good-1"]
        assert "is not allowed" in r.json()["errors"][0]["message"]
        ids = [d["id"] for d in c.get("/v1/collections/j/documents").json()["documents"]]
        assert ids == ["good-1"]
        assert c.delete("/v1/collections/j/documents/good-1").status_code == 204
