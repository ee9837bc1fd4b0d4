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
