"""The query request's ``docs`` field: answers over those documents only, its own cache entry."""
from __future__ import annotations

import httpx

from ctxroute.api.backend import QueryOptions
from tests.api.conftest import DOCS, upload


def test_cache_part_includes_docs_only_when_scoped():
    assert QueryOptions().cache_part() == QueryOptions(docs=None).cache_part()
    assert QueryOptions(docs=("a", "b")).cache_part() == QueryOptions(docs=("b", "a")).cache_part()
    assert QueryOptions(docs=("a",)).cache_part() != QueryOptions().cache_part()
    assert QueryOptions(docs=("a",)).cache_part() != QueryOptions(docs=("b",)).cache_part()


def test_query_docs_scopes_the_answer(settings_factory, live_server):
    server = live_server(settings_factory())
    with httpx.Client(base_url=server.url, timeout=30) as c:
        assert c.post("/v1/collections", json={"name": "field"}).status_code == 201
        assert upload(c, "field", DOCS).status_code == 201
        ids = {d["title"]: d["id"] for d in c.get("/v1/collections/field/documents").json()["documents"]}
        station, harbour = ids["Field Station Orion"], ids["Port Ellis harbour rules"]
        q = "What is the wind turbine rated at, and who is the harbour master?"

        r = c.post("/v1/collections/field/query", json={"question": q, "docs": [harbour]})
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["citations"] and {x["doc_id"] for x in body["citations"]} == {harbour}
        assert "Okafor" in body["answer"] and "kilowatts" not in body["answer"] and not body["cached"]

        r = c.post("/v1/collections/field/query", json={"question": q, "docs": [station]})
        body = r.json()
        assert not body["cached"], "a different scope is a different cache entry"
        assert body["citations"] and {x["doc_id"] for x in body["citations"]} == {station}
        assert c.post("/v1/collections/field/query", json={"question": q, "docs": [station]}).json()["cached"]

        preview = c.post("/v1/collections/field/route", json={"question": q, "docs": [station]})
        assert preview.status_code == 200 and preview.json()["decision"]["route"] == "extractive"

        r = c.post("/v1/collections/field/query", json={"question": q, "docs": [station, "no-such-doc"]})
        assert r.status_code == 404 and "no-such-doc" in r.text
        r = c.post("/v1/collections/field/query", json={"question": q, "docs": [f"d{i}" for i in range(101)]})
        assert r.status_code == 422
