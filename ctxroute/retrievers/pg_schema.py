"""Schema and connections of the ``postgres`` backend.

Tables (schema ``ctxroute``; created idempotently under an advisory lock, versioned in
``schema_info``)::

    collections  one row per (namespace = tenant, name): config, live version (seq, content
                 hash), counts, embedding provenance, timestamps
    documents    text, metadata, content hash, order, counts, and the chunk hierarchy with its
                 sentence spans as one compact bytea per document (pg_codec.py)
    passages     per passage: the vector (pgvector, float32), a tsvector for Postgres full-text
                 search and the graph's key terms; LIST-partitioned by collection, one partition
                 per collection with its GIN index and, once it holds more than
                 ``hnsw_above(hnsw_threshold)`` passages, its HNSW (inner product) index

A collection's vector dimension is fixed by its embedder; the column is an untyped ``vector``
and each partition's HNSW index is on ``embedding::vector(dim)`` (pgvector's documented way to
index vectors whose dimension differs between rows of one table).
"""
from __future__ import annotations

import atexit
import contextlib
import hashlib
import threading
from typing import Any, Iterator

from ctxroute.errors import ManifestMismatch, StoreUnavailable  # noqa: F401 - StoreUnavailable: importable here too


SCHEMA = "ctxroute"
SCHEMA_VERSION = 1
FTS_CONFIG = "english"
_SCHEMA_LOCK = 0x63747872_6F757465 - (1 << 63)  # "ctxroute" as a signed bigint

DDL = f"""
CREATE EXTENSION IF NOT EXISTS vector;
CREATE SCHEMA IF NOT EXISTS {SCHEMA};
CREATE TABLE IF NOT EXISTS {SCHEMA}.schema_info (key text PRIMARY KEY, value text NOT NULL);
CREATE TABLE IF NOT EXISTS {SCHEMA}.collections (
    id          bigserial PRIMARY KEY,
    namespace   text NOT NULL,
    name        text NOT NULL,
    config      jsonb NOT NULL,
    seq         bigint NOT NULL DEFAULT 1,
    version     text NOT NULL,
    embedding   jsonb NOT NULL DEFAULT '{{}}',
    n_docs      bigint NOT NULL DEFAULT 0,
    n_passages  bigint NOT NULL DEFAULT 0,
    n_tokens    bigint NOT NULL DEFAULT 0,
    next_ord    bigint NOT NULL DEFAULT 0,
    created_at  timestamptz NOT NULL DEFAULT now(),
    updated_at  timestamptz NOT NULL DEFAULT now(),
    UNIQUE (namespace, name)
);
CREATE TABLE IF NOT EXISTS {SCHEMA}.documents (
    collection_id bigint NOT NULL REFERENCES {SCHEMA}.collections (id) ON DELETE CASCADE,
    doc_id      text NOT NULL,
    ord         bigint NOT NULL,
    hash        text NOT NULL,
    title       text NOT NULL,
    source      text NOT NULL,
    format      text NOT NULL,
    page_starts integer[] NOT NULL,
    metadata    jsonb NOT NULL,
    text        text NOT NULL,
    n_tokens    integer NOT NULL,
    n_sections  integer NOT NULL,
    n_passages  integer NOT NULL,
    n_sentences integer NOT NULL,
    chunks      bytea NOT NULL,
    PRIMARY KEY (collection_id, doc_id)
);
CREATE INDEX IF NOT EXISTS documents_order ON {SCHEMA}.documents (collection_id, ord);
CREATE TABLE IF NOT EXISTS {SCHEMA}.passages (
    collection_id bigint NOT NULL,
    doc_id      text NOT NULL,
    pos         integer NOT NULL,
    embedding   vector NOT NULL,
    tsv         tsvector NOT NULL,
    terms       text[] NOT NULL,
    PRIMARY KEY (collection_id, doc_id, pos),
    FOREIGN KEY (collection_id, doc_id) REFERENCES {SCHEMA}.documents (collection_id, doc_id) ON DELETE CASCADE
) PARTITION BY LIST (collection_id);
CREATE INDEX IF NOT EXISTS passages_tsv ON {SCHEMA}.passages USING gin (tsv);
"""


def partition(collection_id: int) -> str:
    return f"{SCHEMA}.passages_{int(collection_id)}"


def partition_ddl(collection_id: int) -> str:
    """The passages partition of one collection."""
    return f"CREATE TABLE {partition(collection_id)} PARTITION OF {SCHEMA}.passages FOR VALUES IN ({int(collection_id)})"


EXACT_MAX = 5_000  # passages; an exact scan in PostgreSQL costs ~3 us per 384-d row (FAISS: ~0.05)


def hnsw_above(threshold: int) -> int:
    """The passage count above which a collection is searched through HNSW: its
    ``hnsw_threshold``, capped at ``EXACT_MAX`` (pgvector's exact scan is ~50x slower per row
    than FAISS's, so the files backend's default of 50k would mean ~150 ms queries)."""
    return min(int(threshold), EXACT_MAX)


def hnsw_ddl(collection_id: int, dim: int) -> str:
    """The HNSW index of one collection's partition (inner product: the embedders
    L2-normalise, so this is cosine, and it is the files backend's FAISS metric). Made when the
    collection first grows past ``hnsw_above(hnsw_threshold)``: below it searches are exact and every
    insert would pay for an index no query uses (about 3 ms per passage on 2 busy cores)."""
    cid = int(collection_id)
    return (f"CREATE INDEX IF NOT EXISTS passages_{cid}_hnsw ON {partition(cid)} USING hnsw "
            f"((embedding::vector({int(dim)})) vector_ip_ops) WITH (m = 16, ef_construction = 64)")


def lock_key(namespace: str, name: str) -> int:
    """The advisory-lock key of one collection (64-bit, signed)."""
    digest = hashlib.sha256(f"ctxroute-collection\0{namespace}\0{name}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def ensure_schema(conn: Any) -> None:
    """Create the schema when missing (concurrent callers serialise on an advisory lock);
    refuse a database written by a newer schema version."""
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (_SCHEMA_LOCK,))
        conn.execute(DDL)
        conn.execute(f"INSERT INTO {SCHEMA}.schema_info VALUES ('version', %s) ON CONFLICT DO NOTHING",
                     (str(SCHEMA_VERSION),))
        found = conn.execute(f"SELECT value FROM {SCHEMA}.schema_info WHERE key = 'version'").fetchone()[0]
    if int(found) != SCHEMA_VERSION:
        raise ManifestMismatch(
            f"the database holds ctxroute schema version {found} but this code reads {SCHEMA_VERSION}; "
            "upgrade ctxroute, or point CTXROUTE_STORE at another database",
            found=int(found), expected=SCHEMA_VERSION,
        )


# --- connection pools: one per DSN and process, shared by every namespace (tenant) ------
_POOLS: dict[str, Any] = {}
_POOLS_LOCK = threading.Lock()
POOL_MAX = 16
POOL_TIMEOUT_S = 10.0  # how long a request waits for a connection before StoreUnavailable


def _configure(conn: Any) -> None:
    from pgvector.psycopg import register_vector

    register_vector(conn)


class StorePool:
    """A psycopg_pool ``ConnectionPool`` whose connections are checked when taken (a replica
    outlives a PostgreSQL restart) and whose connection failures are ``StoreUnavailable``
    (retryable, with the store named, password masked) instead of driver errors."""

    def __init__(self, dsn: str, name: str) -> None:
        from psycopg_pool import ConnectionPool

        self.dsn = dsn
        self._pool = ConnectionPool(dsn, min_size=1, max_size=POOL_MAX, kwargs={"autocommit": True},
                                    configure=_configure, check=ConnectionPool.check_connection, open=True,
                                    timeout=POOL_TIMEOUT_S, name=name)

    @contextlib.contextmanager
    def connection(self) -> Iterator[Any]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self._pool.connection() as conn:
                yield conn
        except (psycopg.OperationalError, PoolTimeout) as exc:
            raise StoreUnavailable(f"the PostgreSQL store {redact(self.dsn)} failed: {exc}".strip()
                                   + "; retry when it is reachable", store=redact(self.dsn)) from exc

    def close(self) -> None:
        self._pool.close()


def pool_for(dsn: str) -> StorePool:
    """The process's connection pool for ``dsn`` (autocommit connections with pgvector's
    types registered); the schema is checked once when the pool is made."""
    with _POOLS_LOCK:
        pool = _POOLS.get(dsn)
        if pool is not None:
            return pool
        import psycopg

        try:
            with psycopg.connect(dsn, autocommit=True, connect_timeout=10) as conn:
                ensure_schema(conn)
        except psycopg.OperationalError as exc:
            raise StoreUnavailable(f"cannot reach the PostgreSQL store {redact(dsn)}: {exc}".strip()) from exc
        pool = StorePool(dsn, name=f"ctxroute-{len(_POOLS)}")
        _POOLS[dsn] = pool
        return pool


def close_pool(dsn: str) -> None:
    """Close this process's pool for ``dsn`` (the next use opens a new one)."""
    with _POOLS_LOCK:
        pool = _POOLS.pop(dsn, None)
    if pool is not None:
        pool.close()


def close_pools() -> None:
    """Close every pool of this process (tests call it before stopping their server)."""
    with _POOLS_LOCK:
        pools = list(_POOLS.values())
        _POOLS.clear()
    for pool in pools:
        pool.close()


atexit.register(close_pools)


def redact(dsn: str) -> str:
    """``dsn`` without its password, for messages."""
    import re

    return re.sub(r"(://[^:/@]*):[^@]*@", r"\1:***@", dsn)
