"""Service settings, read from the environment here (the api is an edge) and nowhere below."""
from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Mapping

from ctxroute.errors import InputError

# Every CTXROUTE_* variable the service itself reads (the LLM's come from LLMConfig.from_env).
ENV_VARS: dict[str, str] = {
    "CTXROUTE_HOME": "data directory (collections, tenants, jobs); default ./.ctxroute",
    "CTXROUTE_HOST": "bind address of `ctxroute serve`; default 127.0.0.1",
    "CTXROUTE_PORT": "port of `ctxroute serve`; default 8000",
    "CTXROUTE_ADMIN_KEY": "admin API key (manages tenants and keys); setting it turns auth on",
    "CTXROUTE_API_KEYS": "static tenant keys, 'tenant=key,tenant2=key2'; setting it turns auth on",
    "CTXROUTE_KEY_PEPPER": "server-side secret mixed into stored key hashes",
    "CTXROUTE_REDIS_URL": "redis://host:6379/0 for the answer cache and limits; in-process without",
    "CTXROUTE_EMBEDDER": "minilm (default) or hashing (fast, for tests and demos)",
    "CTXROUTE_READER": "llm (default) or extractive (answers with source sentences, no LLM)",
    "CTXROUTE_MAX_UPLOAD_MB": "largest accepted upload (all files of one request), default 50",
    "CTXROUTE_BACKGROUND_UPLOAD_KB": "uploads above this size are ingested as a background job, default 512",
    "CTXROUTE_MAX_QUESTION_CHARS": "longest accepted question, default 4000",
    "CTXROUTE_REQUEST_TIMEOUT_S": "per-request time limit for queries, default 120",
    "CTXROUTE_RATE_LIMIT_PER_MIN": "requests per tenant per minute, default 600 (0 = unlimited)",
    "CTXROUTE_TENANT_TOKENS_PER_DAY": "LLM tokens per tenant per day, default 0 (unlimited)",
    "CTXROUTE_CACHE_TTL_S": "answer cache lifetime in seconds, default 86400 (0 disables the cache)",
    "CTXROUTE_CACHE_SIZE": "entries of the in-process answer cache, default 2048",
    "CTXROUTE_DEMO": "1 loads the demo collection for tenant 'default' (as `ctxroute serve --demo`)",
    "CTXROUTE_MAX_PDF_PAGES": "most pages of an uploaded PDF, default 2000",
    "CTXROUTE_MAX_PDF_CONTENT_MB": "most decompressed page content of an uploaded PDF, default 64",
    "CTXROUTE_MAX_PDF_RATIO": "most decompressed/compressed size of an uploaded PDF's content (bomb guard), default 100",
    "CTXROUTE_MAX_DOCUMENT_CHARS": "most characters extracted from one uploaded file, default 2000000",
    "CTXROUTE_PARSE_WORKERS": "worker threads that parse uploads (off the event loop), default 2",
    "CTXROUTE_AUTH_FAILURES_PER_MIN": "failed authentications per client address per minute before 429, default 30 (0 = off)",
    "CTXROUTE_STORE": "where collections are recorded: files (default, under CTXROUTE_HOME) or a postgresql:// URL shared by replicas",
    "CTXROUTE_JOB_QUEUE": "where background jobs run: redis (arq workers; the default when CTXROUTE_REDIS_URL is set) or thread",
    "CTXROUTE_JOB_WORKER": "1 (default): `ctxroute serve` also runs a queue worker in-process when the queue is redis; 0: none",
    "CTXROUTE_JOB_LEASE_S": "a running job's lease in Redis, renewed every third of it; a killed worker's job is retried after it, default 30",
    "CTXROUTE_JOB_TIMEOUT_S": "longest a queued job may run before the worker cancels it, default 86400",
    "CTXROUTE_JOB_MAX_TRIES": "attempts of one queued job (a worker killed mid-job counts one) before it is failed, default 5",
    "CTXROUTE_JOB_TTL_S": "how long queued jobs' status and spooled uploads stay in Redis, default 604800 (7 days)",
    "CTXROUTE_JOB_BATCH_DOCS": "documents committed per step of a queued ingestion (a retried job resumes after the last step), default 256",
}

MIN_KEY_CHARS = 16
_LOOPBACK_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost"}


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and localhost."""
    if host.lower() in _LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def parse_api_keys(spec: str) -> dict[str, str]:
    """'team-a=key1,team-b=key2' -> {key: tenant}. Raises InputError naming the bad entry."""
    keys: dict[str, str] = {}
    for raw in spec.split(","):
        item = raw.strip()
        if not item:
            continue
        tenant, sep, key = item.partition("=")
        if not sep or not tenant.strip() or len(key.strip()) < MIN_KEY_CHARS:
            raise InputError(
                f"bad CTXROUTE_API_KEYS entry {item.split('=')[0]!r}=...: write 'tenant=key' with a key "
                f"of at least {MIN_KEY_CHARS} characters, entries separated by commas",
                entry=tenant,
            )
        key, tenant = key.strip(), tenant.strip()
        if key in keys and keys[key] != tenant:
            raise InputError(
                f"CTXROUTE_API_KEYS lists one key for two tenants ({keys[key]!r} and {tenant!r}); "
                "give each tenant its own key",
                entry=tenant,
            )
        keys[key] = tenant
    return keys


def store_url(raw: str) -> str:
    """``CTXROUTE_STORE``: empty or ``files`` (collections under CTXROUTE_HOME), or a
    ``postgresql://`` URL."""
    raw = raw.strip()
    if raw in ("", "files"):
        return ""
    if raw.startswith(("postgres://", "postgresql://")):
        return raw
    raise InputError(f"CTXROUTE_STORE={raw!r}: use 'files' or a postgresql:// URL", name="CTXROUTE_STORE")


@dataclass(frozen=True)
class ApiSettings:
    """Everything the service needs; build with ``from_env`` or directly in tests."""

    home: Path = Path(".ctxroute")
    host: str = "127.0.0.1"
    port: int = 8000
    admin_key: str = ""
    api_keys: Mapping[str, str] = field(default_factory=dict)  # key -> tenant
    key_pepper: str = ""
    redis_url: str = ""
    # where collections are recorded: "" = files under <home> (embedded default), or a
    # postgresql:// URL shared by every replica (one namespace per tenant)
    store_url: str = ""
    embedder: str = "minilm"
    reader: str = "llm"
    max_upload_bytes: int = 50 * 1024 * 1024
    background_upload_bytes: int = 512 * 1024
    max_question_chars: int = 4000
    request_timeout_s: float = 120.0
    rate_limit_per_min: int = 600
    tenant_tokens_per_day: int = 0
    cache_ttl_s: int = 86400
    cache_size: int = 2048
    llm_env: Mapping[str, str] = field(default_factory=dict)  # CTXROUTE_* handed to LLMConfig.from_env
    demo: bool = False
    max_pdf_pages: int = 2000
    max_pdf_content_bytes: int = 64 * 1024 * 1024
    max_pdf_ratio: float = 100.0
    max_document_chars: int = 2_000_000
    parse_workers: int = 2
    auth_failures_per_min: int = 30
    job_queue: str = "thread"  # thread | redis (from_env: redis when a Redis URL is set)
    job_worker: bool = True  # `serve` runs an in-process queue worker when job_queue is redis
    job_lease_s: float = 30.0
    job_timeout_s: float = 86400.0
    job_max_tries: int = 5
    job_ttl_s: int = 7 * 86400
    job_batch_docs: int = 256

    def __post_init__(self) -> None:
        if self.job_queue not in ("thread", "redis"):
            raise InputError(f"CTXROUTE_JOB_QUEUE={self.job_queue!r}: use 'redis' or 'thread'", name="CTXROUTE_JOB_QUEUE")
        if self.job_queue == "redis" and not self.redis_url:
            raise InputError("CTXROUTE_JOB_QUEUE=redis needs CTXROUTE_REDIS_URL (redis://host:6379/0)",
                             name="CTXROUTE_JOB_QUEUE")
        if self.admin_key and len(self.admin_key) < MIN_KEY_CHARS:
            raise InputError(
                f"CTXROUTE_ADMIN_KEY has {len(self.admin_key)} characters; use at least {MIN_KEY_CHARS} "
                "(e.g. `openssl rand -hex 24`)",
                name="CTXROUTE_ADMIN_KEY",
            )
        if self.admin_key and self.admin_key in self.api_keys:
            raise InputError("CTXROUTE_ADMIN_KEY is also a tenant key in CTXROUTE_API_KEYS; give the admin its own key",
                             name="CTXROUTE_ADMIN_KEY")

    @property
    def auth_enabled(self) -> bool:
        return bool(self.admin_key or self.api_keys)

    def with_overrides(self, **kw: object) -> "ApiSettings":
        return replace(self, **kw)  # type: ignore[arg-type]

    def check_bind(self, host: str | None = None, *, stored_keys: bool = False) -> None:
        """Refuse a non-loopback bind without keys (development mode is loopback only).
        ``stored_keys``: tenant keys exist in the tenants database (auth is on then too)."""
        host = host or self.host
        if not (self.auth_enabled or stored_keys) and not is_loopback(host):
            raise InputError(
                f"refusing to listen on {host!r} without API keys: set CTXROUTE_ADMIN_KEY (and/or "
                "CTXROUTE_API_KEYS='tenant=key') or bind 127.0.0.1",
                host=host,
            )

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> "ApiSettings":
        env = os.environ if env is None else env

        def num(name: str, default: float, cast: type = int) -> float:
            raw = env.get(name, "")
            if raw.strip() == "":
                return cast(default)
            try:
                value = cast(raw)
            except ValueError:
                raise InputError(f"{name}={raw!r} is not a number; unset it or give e.g. {default}", name=name) from None
            if value < 0:
                raise InputError(f"{name}={raw!r} must be >= 0", name=name)
            return value

        embedder = env.get("CTXROUTE_EMBEDDER", "minilm").strip().lower() or "minilm"
        if embedder not in ("minilm", "hashing"):
            raise InputError(f"CTXROUTE_EMBEDDER={embedder!r}: use 'minilm' or 'hashing'", name="CTXROUTE_EMBEDDER")
        redis_url = env.get("CTXROUTE_REDIS_URL", "").strip()
        job_queue = env.get("CTXROUTE_JOB_QUEUE", "").strip().lower() or ("redis" if redis_url else "thread")
        reader = env.get("CTXROUTE_READER", "llm").strip().lower() or "llm"
        if reader not in ("llm", "extractive"):
            raise InputError(f"CTXROUTE_READER={reader!r}: use 'llm' or 'extractive'", name="CTXROUTE_READER")
        return cls(
            home=Path(env.get("CTXROUTE_HOME", ".ctxroute") or ".ctxroute").resolve(),
            host=env.get("CTXROUTE_HOST", "127.0.0.1") or "127.0.0.1",
            port=int(num("CTXROUTE_PORT", 8000)),
            admin_key=env.get("CTXROUTE_ADMIN_KEY", "").strip(),
            api_keys=parse_api_keys(env.get("CTXROUTE_API_KEYS", "")),
            key_pepper=env.get("CTXROUTE_KEY_PEPPER", ""),
            redis_url=env.get("CTXROUTE_REDIS_URL", "").strip(),
            store_url=store_url(env.get("CTXROUTE_STORE", "")),
            embedder=embedder,
            reader=reader,
            max_upload_bytes=int(num("CTXROUTE_MAX_UPLOAD_MB", 50, float) * 1024 * 1024),
            background_upload_bytes=int(num("CTXROUTE_BACKGROUND_UPLOAD_KB", 512, float) * 1024),
            max_question_chars=int(num("CTXROUTE_MAX_QUESTION_CHARS", 4000)),
            request_timeout_s=float(num("CTXROUTE_REQUEST_TIMEOUT_S", 120.0, float)),
            rate_limit_per_min=int(num("CTXROUTE_RATE_LIMIT_PER_MIN", 600)),
            tenant_tokens_per_day=int(num("CTXROUTE_TENANT_TOKENS_PER_DAY", 0)),
            cache_ttl_s=int(num("CTXROUTE_CACHE_TTL_S", 86400)),
            cache_size=int(num("CTXROUTE_CACHE_SIZE", 2048)),
            llm_env={k: v for k, v in env.items() if k.startswith("CTXROUTE_")},
            demo=env.get("CTXROUTE_DEMO", "").strip().lower() in ("1", "true", "yes"),
            max_pdf_pages=int(num("CTXROUTE_MAX_PDF_PAGES", 2000)),
            max_pdf_content_bytes=int(num("CTXROUTE_MAX_PDF_CONTENT_MB", 64, float) * 1024 * 1024),
            max_pdf_ratio=float(num("CTXROUTE_MAX_PDF_RATIO", 100.0, float)),
            max_document_chars=int(num("CTXROUTE_MAX_DOCUMENT_CHARS", 2_000_000)),
            parse_workers=max(1, int(num("CTXROUTE_PARSE_WORKERS", 2))),
            auth_failures_per_min=int(num("CTXROUTE_AUTH_FAILURES_PER_MIN", 30)),
            job_queue=job_queue,
            job_worker=env.get("CTXROUTE_JOB_WORKER", "1").strip().lower() not in ("0", "false", "no", "off"),
            job_lease_s=max(1.0, float(num("CTXROUTE_JOB_LEASE_S", 30.0, float))),
            job_timeout_s=max(1.0, float(num("CTXROUTE_JOB_TIMEOUT_S", 86400.0, float))),
            job_max_tries=max(1, int(num("CTXROUTE_JOB_MAX_TRIES", 5))),
            job_ttl_s=max(60, int(num("CTXROUTE_JOB_TTL_S", 7 * 86400))),
            job_batch_docs=max(1, int(num("CTXROUTE_JOB_BATCH_DOCS", 256))),
        )
