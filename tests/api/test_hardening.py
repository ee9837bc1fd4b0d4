"""Fixes from probing the service as a hostile tenant: the BM25 vocabulary that would be
empty, reserved tenant names, 405 with Allow, name patterns in the schema, keys of unknown
tenants, throttled failed authentication, key configuration, local Swagger UI and metrics."""
from __future__ import annotations

import re
import sqlite3

import httpx
import pytest

from ctxroute.api.settings import ApiSettings, parse_api_keys
from ctxroute.errors import InputError
from tests.api.conftest import ADMIN_KEY, DOCS, upload

STATIC_KEY = "static-key-of-team-s-0123456789"


def _admin(server) -> httpx.Client:  # type: ignore[no-untyped-def]
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {ADMIN_KEY}"}, timeout=30)


def test_stop_word_documents_do_not_break_the_index(settings_factory, live_server):
    """Before: 500 (bm25s has no vocabulary to index)."""
    server = live_server(settings_factory())
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/v1/collections", json={"name": "sw"})
        r = c.post("/v1/collections/sw/documents", json={"documents": [{"text": "a", "id": "stop"}]})
        assert r.status_code == 201, r.text
        q = c.post("/v1/collections/sw/query", json={"question": "What is it?"})
        assert q.status_code == 200, q.text
        assert upload(c, "sw", {"harbour.md": DOCS["harbour.md"]}).status_code == 201
        harbour = next(d["id"] for d in c.get("/v1/collections/sw/documents").json()["documents"] if d["id"] != "stop")
        # deleting the only real document leaves stop words only
        assert c.delete(f"/v1/collections/sw/documents/{harbour}").status_code == 204
        assert c.post("/v1/collections/sw/route", json={"question": "Who is the harbour master?"}).status_code == 200


def test_reserved_and_static_tenant_names(settings_factory, live_server):
    server = live_server(settings_factory(admin_key=ADMIN_KEY, api_keys={STATIC_KEY: "team-s"}))
    cli_collection = server.settings.home / "collections" / "cli-made"
    cli_collection.mkdir(parents=True)
    (cli_collection / "CURRENT").write_text("v1")
    with _admin(server) as admin:
        for name in ("default", "team-s"):
            r = admin.post("/v1/admin/tenants", json={"name": name})
            assert r.status_code == 409, (name, r.text)
            assert ("reserved" if name == "default" else "static") in r.json()["message"]
        r = admin.delete("/v1/admin/tenants/default", params={"purge": True})
        assert r.status_code == 409
        assert admin.get("/v1/admin/tenants/nobody/keys").status_code == 404
        assert admin.get("/v1/admin/tenants").json()["tenants"] == []
    assert (cli_collection / "CURRENT").exists()


def test_a_legacy_default_tenant_purge_keeps_the_cli_collections(settings_factory, live_server):
    """A tenant 'default' stored before the name was reserved: purging it never deletes
    <home>/collections (the CLI's)."""
    settings = settings_factory(admin_key=ADMIN_KEY)
    server = live_server(settings)
    (settings.home / "collections" / "mine").mkdir(parents=True)
    db = sqlite3.connect(settings.home / "api" / "tenants.sqlite")
    db.execute("INSERT INTO tenants (name, created_at) VALUES ('default', 0)")
    db.commit()
    db.close()
    with _admin(server) as admin:
        r = admin.delete("/v1/admin/tenants/default", params={"purge": True})
        assert r.status_code == 409, r.text
    assert (settings.home / "collections" / "mine").is_dir()


def test_405_keeps_allow_and_schema_has_name_patterns(settings_factory, live_server):
    server = live_server(settings_factory())
    with httpx.Client(base_url=server.url, timeout=30) as c:
        r = c.request("TRACE", "/v1/jobs")
        assert r.status_code == 405 and r.headers["allow"] == "GET", r.headers
        assert set(r.json()) == {"code", "message", "request_id"}
        r = c.put("/v1/collections/x")
        assert r.status_code == 405 and set(r.headers["allow"].split(", ")) == {"GET", "DELETE"}
        schema = c.get("/openapi.json").json()
        for path, item in schema["paths"].items():
            for op in item.values():
                for p in op.get("parameters", []):
                    if p["in"] == "path":
                        assert "pattern" in p["schema"], (path, p)
        assert schema["components"]["schemas"]["QueryIn"]["properties"]["question"]["maxLength"] == 4000
        # a schema-invalid name is a 422 from validation, a schema-valid unknown one a 404
        assert c.get("/v1/collections/%C3%B1a").status_code == 422
        assert c.get("/v1/collections/nope.v2").status_code == 404


def test_failed_authentication_is_throttled(settings_factory, live_server):
    server = live_server(settings_factory(admin_key=ADMIN_KEY, api_keys={STATIC_KEY: "team-s"},
                                          auth_failures_per_min=5))
    with httpx.Client(base_url=server.url, timeout=30) as c:
        codes = [c.get("/v1/collections", headers={"Authorization": f"Bearer guess-{i}"}).status_code
                 for i in range(7)]
        assert codes == [401] * 5 + [429] * 2, codes
        # blocked even with the right key until the minute is over (guessing gets nowhere)
        r = c.get("/v1/collections", headers={"Authorization": f"Bearer {STATIC_KEY}"})
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1
        assert "CTXROUTE_AUTH_FAILURES_PER_MIN" in r.json()["message"]


def test_key_configuration_is_checked():
    with pytest.raises(InputError, match="at least 16"):
        ApiSettings(admin_key="short")
    with pytest.raises(InputError, match="at least 16"):
        ApiSettings.from_env({"CTXROUTE_ADMIN_KEY": "hunter2"})
    with pytest.raises(InputError, match="two tenants"):
        parse_api_keys("a=0123456789abcdef0,b=0123456789abcdef0")
    with pytest.raises(InputError, match="own key"):
        ApiSettings(admin_key="0123456789abcdef0", api_keys={"0123456789abcdef0": "a"})
    assert parse_api_keys("a=0123456789abcdef0,a=0123456789abcdef0") == {"0123456789abcdef0": "a"}


def test_docs_are_served_locally_and_counted_by_metrics(settings_factory, live_server):
    server = live_server(settings_factory())
    with httpx.Client(base_url=server.url, timeout=30) as c:
        html = c.get("/docs").text
        assert not re.findall(r"https?://", html), "the docs page loads something from another host"
        assets = re.findall(r"""(?:src|href)=['"](/[^'"]+)['"]""", html)
        assert {"/docs/assets/swagger-ui-bundle.js", "/docs/assets/swagger-ui.css"} <= set(assets), assets
        for a in assets:
            r = c.get(a)
            assert r.status_code == 200 and len(r.content) > 100, a
        assert "SwaggerUIBundle" in c.get("/docs/assets/swagger-ui-bundle.js").text
        assert "Apache License" in c.get("/docs/assets/LICENSE").text
        assert c.get("/docs/assets/secret.txt").status_code == 404
        c.get("/openapi.json")
        metrics = c.get("/metrics").text
    for path in ("/docs", "/openapi.json", "/docs/assets/{asset}"):
        assert f'path="{path}"' in metrics, path
