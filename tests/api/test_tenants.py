"""Tenants: API keys map to tenants, a tenant sees only its own collections and jobs (404, not
403), the admin key manages tenants and keys, and development mode is loopback only."""
from __future__ import annotations

import httpx
import pytest

from ctxroute.api.settings import ApiSettings, is_loopback, parse_api_keys
from ctxroute.errors import InputError
from tests.api.conftest import ADMIN_KEY, DOCS, upload, wait_job

STATIC_KEY = "static-key-of-team-s-0123456789"


def _client(server, key: str | None) -> httpx.Client:
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


@pytest.fixture()
def auth_server(settings_factory, live_server):
    return live_server(settings_factory(admin_key=ADMIN_KEY, api_keys={STATIC_KEY: "team-s"},
                                        background_upload_bytes=1))


def test_tenant_isolation(auth_server):
    with _client(auth_server, ADMIN_KEY) as admin:
        keys = {}
        for t in ("team-a", "team-b"):
            assert admin.post("/v1/admin/tenants", json={"name": t}).status_code == 201
            r = admin.post(f"/v1/admin/tenants/{t}/keys", json={"label": "test"})
            assert r.status_code == 201 and r.json()["key"].startswith("ctx_")
            keys[t] = r.json()["key"]
        listed = admin.get("/v1/admin/tenants").json()["tenants"]
        assert [(t["name"], t["keys"]) for t in listed] == [("team-a", 1), ("team-b", 1)]
        assert "key" not in admin.get("/v1/admin/tenants/team-a/keys").json()["keys"][0]
        # the admin key manages tenants, not collections
        assert admin.get("/v1/collections").status_code == 403

    with _client(auth_server, keys["team-a"]) as a, _client(auth_server, keys["team-b"]) as b:
        assert a.post("/v1/collections", json={"name": "secret"}).status_code == 201
        job = upload(a, "secret", DOCS).json()
        assert wait_job(a, job["id"])["status"] == "succeeded"
        doc_id = a.get("/v1/collections/secret/documents").json()["documents"][0]["id"]
        assert a.post("/v1/collections/secret/query", json={"question": "Who founded the station?"}).status_code == 200

        # B: the same name is free, A's collection and job are invisible (404, never 403)
        assert b.get("/v1/collections").json()["collections"] == []
        for method, path, body in [
            ("GET", "/v1/collections/secret", None),
            ("GET", "/v1/collections/secret/documents", None),
            ("GET", f"/v1/collections/secret/documents/{doc_id}", None),
            ("DELETE", f"/v1/collections/secret/documents/{doc_id}", None),
            ("POST", "/v1/collections/secret/query", {"question": "Who founded the station?"}),
            ("POST", "/v1/collections/secret/route", {"question": "Who founded the station?"}),
            ("POST", "/v1/collections/secret/documents", {"documents": [{"text": "planted text"}]}),
            ("DELETE", "/v1/collections/secret", None),
            ("GET", f"/v1/jobs/{job['id']}", None),
        ]:
            r = b.request(method, path, json=body)
            assert r.status_code == 404, (method, path, r.status_code, r.text)
            assert set(r.json()) == {"code", "message", "request_id"}
        assert b.get("/v1/jobs").json()["jobs"] == []
        assert b.post("/v1/collections", json={"name": "secret"}).status_code == 201
        assert b.get("/v1/collections/secret").json()["documents"] == 0
        # A's data is untouched
        assert a.get("/v1/collections/secret").json()["documents"] == 3


def test_keys_are_required_and_revocable(auth_server):
    with _client(auth_server, None) as anon:
        r = anon.get("/v1/collections")
        assert r.status_code == 401 and r.json()["code"] == "unauthorized"
        assert anon.get("/healthz").status_code == 200  # probes need no key
    with _client(auth_server, "ctx_0123456789ab_notarealkeynotarealkey") as wrong:
        assert wrong.get("/v1/collections").status_code == 401
    with httpx.Client(base_url=auth_server.url, headers={"X-API-Key": STATIC_KEY}) as static:
        assert static.get("/v1/collections").status_code == 200
        assert static.get("/v1/admin/tenants").status_code == 403
    with _client(auth_server, ADMIN_KEY) as admin:
        admin.post("/v1/admin/tenants", json={"name": "team-c"})
        created = admin.post("/v1/admin/tenants/team-c/keys", json={}).json()
        assert admin.post("/v1/admin/tenants", json={"name": "team-c"}).status_code == 409
        assert admin.post("/v1/admin/tenants", json={"name": "Bad Name"}).status_code == 422
        assert admin.post("/v1/admin/tenants/nobody/keys", json={}).status_code == 404
    with _client(auth_server, created["key"]) as c:
        assert c.post("/v1/collections", json={"name": "x"}).status_code == 201
    with _client(auth_server, ADMIN_KEY) as admin:
        assert admin.delete(f"/v1/admin/keys/{created['key_id']}").status_code == 204
    with _client(auth_server, created["key"]) as c:
        assert c.get("/v1/collections").status_code == 401
    with _client(auth_server, ADMIN_KEY) as admin:
        assert admin.delete("/v1/admin/tenants/team-c", params={"purge": True}).status_code == 204
        assert not (auth_server.settings.home / "tenants" / "team-c").exists()


def test_rate_limit_per_tenant(settings_factory, live_server):
    server = live_server(settings_factory(rate_limit_per_min=3))
    with httpx.Client(base_url=server.url) as c:
        codes = [c.get("/v1/collections").status_code for _ in range(4)]
        assert codes == [200, 200, 200, 429]
        r = c.get("/v1/collections")
        assert r.status_code == 429 and int(r.headers["retry-after"]) >= 1 and r.json()["code"] == "rate_limited"


def test_development_mode_is_loopback_only():
    dev = ApiSettings()
    dev.check_bind("127.0.0.1")
    dev.check_bind("::1")
    dev.check_bind("localhost")
    with pytest.raises(InputError, match="0.0.0.0.*CTXROUTE_ADMIN_KEY"):
        dev.check_bind("0.0.0.0")
    with pytest.raises(InputError):
        dev.check_bind("192.168.1.10")
    ApiSettings(admin_key=ADMIN_KEY).check_bind("0.0.0.0")
    assert is_loopback("127.0.0.5") and not is_loopback("example.org")


def test_env_keys_parse():
    assert parse_api_keys("a=0123456789abcdef0, b = fedcba98765432100 ") == {
        "0123456789abcdef0": "a", "fedcba98765432100": "b",
    }
    for bad in ("a", "a=short", "=0123456789abcdef0"):
        with pytest.raises(InputError):
            parse_api_keys(bad)
    env = {"CTXROUTE_API_KEYS": "team=0123456789abcdef0", "CTXROUTE_HOME": "/tmp/x", "CTXROUTE_PORT": "9000"}
    s = ApiSettings.from_env(env)
    assert s.auth_enabled and s.port == 9000 and str(s.home) == "/tmp/x"
    with pytest.raises(InputError, match="CTXROUTE_PORT"):
        ApiSettings.from_env({"CTXROUTE_PORT": "eighty"})


def test_stored_keys_keep_auth_on_and_dev_mode_has_no_admin(settings_factory, live_server):
    dev = live_server(settings_factory())
    r = httpx.post(f"{dev.url}/v1/admin/tenants", json={"name": "team-d"})
    assert r.status_code == 403 and "CTXROUTE_ADMIN_KEY" in r.json()["message"]
    dev.stop()
    admin_server = live_server(settings_factory(admin_key=ADMIN_KEY))
    with _client(admin_server, ADMIN_KEY) as admin:
        admin.post("/v1/admin/tenants", json={"name": "team-d"})
        key = admin.post("/v1/admin/tenants/team-d/keys", json={}).json()["key"]
    admin_server.stop()
    # restarted without CTXROUTE_ADMIN_KEY: the stored key still guards the data
    again = live_server(settings_factory())
    assert httpx.get(f"{again.url}/v1/collections").status_code == 401
    with _client(again, key) as c:
        assert c.get("/v1/collections").status_code == 200
    from ctxroute.api.auth import stored_keys_exist

    assert stored_keys_exist(again.settings.home)
    ApiSettings(home=again.settings.home).check_bind("0.0.0.0", stored_keys=True)
