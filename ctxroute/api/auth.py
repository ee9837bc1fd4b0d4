"""Tenants and API keys. Keys are stored as HMAC-SHA256(pepper, key) and compared with
``hmac.compare_digest``; the plaintext is shown once, when the key is created."""
from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

from ctxroute.errors import Conflict, InputError, NotFound

DEV_TENANT = "default"
_TENANT_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,62}$")
_KEY_RE = re.compile(r"^ctx_([0-9a-f]{12})_[A-Za-z0-9_-]{20,}$")


def check_tenant_name(name: str) -> str:
    if not _TENANT_RE.match(name):
        raise InputError(
            f"bad tenant name {name!r}: use 1-63 lowercase letters, digits, '-' or '_', starting with a letter or digit",
            tenant=name,
        )
    return name


def stored_keys_exist(home: Path) -> bool:
    """Whether ``<home>/api/tenants.sqlite`` holds any tenant key (then auth stays on)."""
    path = home / "api" / "tenants.sqlite"
    if not path.is_file():
        return False
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return db.execute("SELECT 1 FROM keys LIMIT 1").fetchone() is not None
    except sqlite3.Error:
        return False
    finally:
        db.close()


@dataclass(frozen=True)
class Principal:
    """Who is calling: a tenant (its own collections only) and/or the admin."""

    tenant: str | None
    admin: bool = False
    key_id: str = ""


@dataclass(frozen=True)
class TenantInfo:
    name: str
    created_at: float
    n_keys: int


@dataclass(frozen=True)
class KeyInfo:
    key_id: str
    tenant: str
    created_at: float
    label: str


@dataclass(frozen=True)
class NewKey:
    key: str  # plaintext, returned once
    info: KeyInfo


def load_pepper(home: Path, configured: str) -> bytes:
    """The configured pepper, else a random one kept in ``<home>/api/pepper`` (mode 600)."""
    if configured:
        return configured.encode()
    path = home / "api" / "pepper"
    if path.exists():
        return path.read_bytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    value = secrets.token_bytes(32)
    path.touch(mode=0o600)
    path.write_bytes(value)
    return value


class TenantStore:
    """Tenants and hashed keys in SQLite (``<home>/api/tenants.sqlite``), plus static keys
    from the environment (hashed in memory at start)."""

    def __init__(self, home: Path, *, pepper: bytes, admin_key: str = "", static_keys: Mapping[str, str] | None = None) -> None:
        self._pepper = pepper
        self._lock = threading.Lock()
        path = home / "api" / "tenants.sqlite"
        path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS tenants (name TEXT PRIMARY KEY, created_at REAL NOT NULL)")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS keys (key_id TEXT PRIMARY KEY, tenant TEXT NOT NULL, "
            "hash TEXT NOT NULL, label TEXT NOT NULL DEFAULT '', created_at REAL NOT NULL)"
        )
        self._admin_hash = self.hash(admin_key) if admin_key else ""
        self._static: list[tuple[str, str]] = [(self.hash(k), check_tenant_name(t)) for k, t in (static_keys or {}).items()]

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def hash(self, key: str) -> str:
        return hmac.new(self._pepper, key.encode(), hashlib.sha256).hexdigest()

    # --- authentication ----------------------------------------------------------
    def authenticate(self, key: str) -> Principal | None:
        digest = self.hash(key)
        found: Principal | None = None
        # compare with the admin key and every static key, always (timing tells nothing about
        # which matched, or whether one did), each with hmac.compare_digest
        if hmac.compare_digest(digest, self._admin_hash or "0" * 64):
            found = Principal(tenant=None, admin=True, key_id="admin") if self._admin_hash else None
        for stored, tenant in self._static:
            if hmac.compare_digest(digest, stored) and found is None:
                found = Principal(tenant=tenant, key_id="static")
        if found:
            return found
        m = _KEY_RE.match(key)
        if not m:
            return None
        with self._lock:
            row = self._db.execute("SELECT tenant, hash FROM keys WHERE key_id = ?", (m.group(1),)).fetchone()
        if row and hmac.compare_digest(digest, row[1]):
            return Principal(tenant=row[0], key_id=m.group(1))
        return None

    # --- tenants -----------------------------------------------------------------
    def static_tenants(self) -> set[str]:
        return {t for _, t in self._static}

    def create_tenant(self, name: str) -> TenantInfo:
        check_tenant_name(name)
        if name == DEV_TENANT:
            raise Conflict(
                f"tenant name {DEV_TENANT!r} is reserved (development mode's tenant, whose collections are the CLI's); "
                "pick another name", tenant=name)
        if name in self.static_tenants():
            raise Conflict(
                f"tenant name {name!r} is taken by a static key in CTXROUTE_API_KEYS; pick another name", tenant=name)
        now = time.time()
        with self._lock:
            try:
                self._db.execute("INSERT INTO tenants (name, created_at) VALUES (?, ?)", (name, now))
            except sqlite3.IntegrityError:
                raise Conflict(f"tenant {name!r} already exists; list tenants with GET /v1/admin/tenants", tenant=name) from None
        return TenantInfo(name, now, 0)

    def tenants(self) -> list[TenantInfo]:
        with self._lock:
            rows = self._db.execute(
                "SELECT t.name, t.created_at, COUNT(k.key_id) FROM tenants t LEFT JOIN keys k ON k.tenant = t.name "
                "GROUP BY t.name ORDER BY t.name"
            ).fetchall()
        return [TenantInfo(r[0], r[1], r[2]) for r in rows]

    def tenant_exists(self, name: str) -> bool:
        with self._lock:
            return self._db.execute("SELECT 1 FROM tenants WHERE name = ?", (name,)).fetchone() is not None

    def delete_tenant(self, name: str) -> None:
        if name == DEV_TENANT or name in self.static_tenants():
            raise Conflict(f"tenant {name!r} is not a managed tenant (reserved or static); it cannot be deleted here",
                           tenant=name)
        with self._lock:
            cur = self._db.execute("DELETE FROM tenants WHERE name = ?", (name,))
            if cur.rowcount == 0:
                raise NotFound(f"tenant {name!r} does not exist; list tenants with GET /v1/admin/tenants", tenant=name)
            self._db.execute("DELETE FROM keys WHERE tenant = ?", (name,))

    # --- keys --------------------------------------------------------------------
    def create_key(self, tenant: str, label: str = "") -> NewKey:
        if not self.tenant_exists(tenant):
            raise NotFound(f"tenant {tenant!r} does not exist; create it with POST /v1/admin/tenants", tenant=tenant)
        key_id = secrets.token_hex(6)
        key = f"ctx_{key_id}_{secrets.token_urlsafe(24)}"
        now = time.time()
        with self._lock:
            self._db.execute(
                "INSERT INTO keys (key_id, tenant, hash, label, created_at) VALUES (?, ?, ?, ?, ?)",
                (key_id, tenant, self.hash(key), label, now),
            )
        return NewKey(key=key, info=KeyInfo(key_id, tenant, now, label))

    def keys(self, tenant: str) -> list[KeyInfo]:
        if not self.tenant_exists(tenant):
            raise NotFound(f"tenant {tenant!r} does not exist; list tenants with GET /v1/admin/tenants", tenant=tenant)
        with self._lock:
            rows = self._db.execute(
                "SELECT key_id, tenant, created_at, label FROM keys WHERE tenant = ? ORDER BY created_at", (tenant,)
            ).fetchall()
        return [KeyInfo(*r) for r in rows]

    def revoke_key(self, key_id: str) -> None:
        with self._lock:
            cur = self._db.execute("DELETE FROM keys WHERE key_id = ?", (key_id,))
        if cur.rowcount == 0:
            raise NotFound(f"API key {key_id!r} does not exist; list keys with GET /v1/admin/tenants/{{name}}/keys", key_id=key_id)
