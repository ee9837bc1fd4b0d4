"""Tenants and keys: hashed at rest, constant-time compare, admin separate from tenants."""
from __future__ import annotations

import sqlite3

import pytest

from ctxroute.api.auth import TenantStore, check_tenant_name, load_pepper
from ctxroute.errors import Conflict, InputError, NotFound

ADMIN = "admin-secret-0123456789abcdef"
STATIC = "static-key-for-team-s-0123456789"


@pytest.fixture()
def store(tmp_path):
    s = TenantStore(tmp_path, pepper=load_pepper(tmp_path, ""), admin_key=ADMIN, static_keys={STATIC: "team-s"})
    yield s
    s.close()


def test_keys_are_stored_hashed_and_authenticate(store, tmp_path):
    store.create_tenant("team-a")
    new = store.create_key("team-a", label="ci")
    p = store.authenticate(new.key)
    assert p is not None and p.tenant == "team-a" and not p.admin and p.key_id == new.info.key_id
    rows = sqlite3.connect(tmp_path / "api" / "tenants.sqlite").execute("SELECT hash FROM keys").fetchall()
    assert len(rows) == 1 and new.key not in rows[0][0] and len(rows[0][0]) == 64
    # a key with the right id but a wrong secret is refused
    assert store.authenticate(new.key[:-4] + "XXXX") is None
    assert store.authenticate("ctx_000000000000_" + "a" * 32) is None
    assert store.authenticate("") is None


def test_admin_and_static_keys(store):
    admin = store.authenticate(ADMIN)
    assert admin is not None and admin.admin and admin.tenant is None
    static = store.authenticate(STATIC)
    assert static is not None and static.tenant == "team-s" and not static.admin
    assert store.authenticate(ADMIN + "x") is None


def test_pepper_changes_hashes(tmp_path):
    a = TenantStore(tmp_path / "a", pepper=b"one")
    b = TenantStore(tmp_path / "b", pepper=b"two")
    assert a.hash("k") != b.hash("k")
    a.close()
    b.close()


def test_generated_pepper_persists(tmp_path):
    first = load_pepper(tmp_path, "")
    assert load_pepper(tmp_path, "") == first and len(first) == 32
    assert (tmp_path / "api" / "pepper").stat().st_mode & 0o077 == 0
    assert load_pepper(tmp_path, "configured") == b"configured"


def test_revoke_and_delete_tenant(store):
    store.create_tenant("team-b")
    k1 = store.create_key("team-b")
    k2 = store.create_key("team-b")
    assert [k.key_id for k in store.keys("team-b")] == [k1.info.key_id, k2.info.key_id]
    store.revoke_key(k1.info.key_id)
    assert store.authenticate(k1.key) is None and store.authenticate(k2.key) is not None
    with pytest.raises(NotFound):
        store.revoke_key(k1.info.key_id)
    store.delete_tenant("team-b")
    assert store.authenticate(k2.key) is None
    with pytest.raises(NotFound):
        store.delete_tenant("team-b")


def test_tenant_errors(store):
    store.create_tenant("team-c")
    with pytest.raises(Conflict, match="team-c"):
        store.create_tenant("team-c")
    with pytest.raises(NotFound, match="nobody"):
        store.create_key("nobody")
    for bad in ("", "Team", "../x", "a" * 64, "-x"):
        with pytest.raises(InputError):
            check_tenant_name(bad)


def test_every_key_is_compared_in_constant_time(tmp_path, monkeypatch):
    """The admin key and every static key are compared with hmac.compare_digest on every
    call, whichever matches (so timing tells nothing), and stored keys are too."""
    import hmac

    from ctxroute.api import auth

    statics = {f"static-key-{i}-0123456789abcdef": f"team-{i}" for i in range(3)}
    s = TenantStore(tmp_path, pepper=b"p", admin_key=ADMIN, static_keys=statics)
    s.create_tenant("team-db")
    stored = s.create_key("team-db").key
    calls: list[tuple[str, str]] = []
    real = hmac.compare_digest

    def spy(a, b):  # type: ignore[no-untyped-def]
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(auth.hmac, "compare_digest", spy)
    counts = {}
    for label, key in [("admin", ADMIN), ("first", "static-key-0-0123456789abcdef"),
                       ("last", "static-key-2-0123456789abcdef"), ("unknown", "no-such-key-0123456789abcdef")]:
        calls.clear()
        p = s.authenticate(key)
        assert (p is not None) == (label != "unknown")
        counts[label] = len(calls)
        assert all(len(a) == len(b) == 64 for a, b in calls)  # digests, never the plaintext
    assert counts == {"admin": 4, "first": 4, "last": 4, "unknown": 4}, counts
    calls.clear()
    assert s.authenticate(stored).tenant == "team-db"
    assert len(calls) == 5  # admin + 3 static + the stored key's hash
    s.close()
