"""The ``postgres`` storage backend: PostgreSQL is the record, pgvector the dense index.

What lives where (schema in ``pg_schema.py``):

- the record, in PostgreSQL: collections (per namespace = tenant) with their config, live
  version and counts; documents with text, metadata, content hash and their chunk hierarchy and
  sentence spans; passages with their vector (pgvector, searched there), a tsvector (Postgres
  full-text search, ``text_retriever``) and their graph key terms;
- per process (a cache, rebuilt from the record whenever the version changes): the loaded
  documents and chunks, the BM25 index (bm25s) and the graph index. A newer version is loaded
  incrementally: documents whose content hash is unchanged are reused, only the others are read.

A write (``commit``) inserts the added documents and passages and deletes the removed ones in
one transaction that also bumps the version; ``write_lock`` is a session-level advisory lock,
so writers on any machine are serialised and a crashed writer's lock goes with its connection.
"""
from __future__ import annotations

import contextlib
import threading
from collections import Counter, OrderedDict
from datetime import timezone
from typing import Any, Iterator

import numpy as np
import psycopg
from psycopg.types.json import Jsonb

from ctxroute.errors import CollectionNotFound, Conflict, ManifestMismatch
from ctxroute.retrievers.backend import Delta
from ctxroute.retrievers.collection_config import CollectionConfig, CollectionInfo, index_text
from ctxroute.retrievers.persist import FORMAT_VERSION, _State
from ctxroute.retrievers.pg_codec import encode_chunks, passage_terms
from ctxroute.retrievers.pg_dense import PgDenseIndex, PgTextRetriever
from ctxroute.retrievers.pg_load import DOC_COLUMNS, build_state, fresh_documents
from ctxroute.retrievers.pg_schema import (
    FTS_CONFIG, SCHEMA, hnsw_above, hnsw_ddl, lock_key, partition, partition_ddl, pool_for,
)

_STATE_CACHE = 16  # loaded versions kept per backend (for incremental reloads and shared reads)


def _iso(ts: Any) -> str:
    return ts.astimezone(timezone.utc).isoformat(timespec="seconds")


def _tag(collection_id: int, seq: int) -> str:
    """The version tag: unique across deletes and re-creates of one name."""
    return f"c{collection_id}v{seq:06d}"


class PostgresBackend:
    """Collections of one ``namespace`` (a tenant) in the PostgreSQL database at ``dsn``."""

    kind = "postgres"

    def __init__(self, dsn: str, namespace: str = "default") -> None:
        self.dsn = dsn
        self.namespace = namespace
        self.pool = pool_for(dsn)  # one per process and DSN; creates the schema when missing
        self._states: OrderedDict[str, _State] = OrderedDict()
        self._ids: dict[str, int] = {}
        self._lock = threading.Lock()

    # --- small reads ----------------------------------------------------------------
    def location(self, name: str) -> str:
        from psycopg.conninfo import conninfo_to_dict

        info = conninfo_to_dict(self.dsn)
        return f"postgresql://{info.get('host', 'localhost')}/{info.get('dbname', '')}/{self.namespace}/{name}"

    def _row(self, conn: Any, name: str, columns: str, lock: bool = False) -> Any:
        return conn.execute(f"SELECT {columns} FROM {SCHEMA}.collections WHERE namespace = %s AND name = %s"
                            + (" FOR UPDATE" if lock else ""), (self.namespace, name)).fetchone()

    def exists(self, name: str) -> bool:
        return self.current(name) is not None

    def current(self, name: str) -> str | None:
        with self.pool.connection() as conn:
            row = self._row(conn, name, "id, seq")
        return None if row is None else _tag(*row)

    def read_config(self, name: str) -> CollectionConfig:
        with self.pool.connection() as conn:
            row = self._row(conn, name, "config")
        if row is None:
            raise CollectionNotFound(name)
        return CollectionConfig.from_dict(row[0])

    def list(self) -> list[CollectionInfo]:
        with self.pool.connection() as conn:
            rows = conn.execute(
                f"SELECT name, version, n_docs, n_passages, n_tokens, config->>'embedder_name', "
                f"(config->>'embedder_dim')::int, updated_at FROM {SCHEMA}.collections WHERE namespace = %s "
                "ORDER BY name", (self.namespace,)).fetchall()
        return [CollectionInfo(name=r[0], version=r[1], n_docs=r[2], n_passages=r[3], total_tokens=r[4],
                               embedder_name=r[5], embedder_dim=r[6], updated_at=_iso(r[7]),
                               path=self.location(r[0])) for r in rows]

    def manifest(self, name: str) -> dict[str, Any]:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = self._row(conn, name, "id, seq, version, config, embedding, n_docs, n_passages, n_tokens, "
                                        "created_at, updated_at")
            if row is None:
                raise CollectionNotFound(name)
            cid, seq, version, config, embedding, n_docs, n_passages, n_tokens, created, updated = row
            docs = conn.execute(
                f"SELECT doc_id, hash, title, source, format, coalesce(metadata->>'extractor', ''), length(text), "
                f"n_tokens, n_sections, n_passages, n_sentences FROM {SCHEMA}.documents WHERE collection_id = %s "
                "ORDER BY ord", (cid,)).fetchall()
        table = {d[0]: {"hash": d[1], "title": d[2], "source": d[3], "format": d[4], "extractor": d[5],
                        "chars": d[6], "tokens": d[7], "sections": d[8], "passages": d[9], "sentences": d[10]}
                 for d in docs}
        return {
            "format_version": FORMAT_VERSION, "name": name, "version": version, "version_tag": _tag(cid, seq),
            "created_at": _iso(created), "updated_at": _iso(updated), "config": config,
            "embedder": {"name": config["embedder_name"], "dim": config["embedder_dim"]},
            "extractors": dict(Counter(d[5] for d in docs if d[5])),
            "dense": {"dtype": "float32 (pgvector)",
                      "kind": "hnsw" if n_passages > hnsw_above(config.get("hnsw_threshold", 50_000)) else "flat"},
            "embedding": embedding, "counts": {"documents": n_docs, "passages": n_passages, "tokens": n_tokens},
            "documents": table, "store": self.location(name),
        }

    # --- lifecycle ------------------------------------------------------------------
    def create(self, name: str, config: CollectionConfig, state: _State) -> _State:
        with self.pool.connection() as conn, conn.transaction():
            row = conn.execute(
                f"INSERT INTO {SCHEMA}.collections (namespace, name, config, version, embedding, created_at, "
                "updated_at) VALUES (%s, %s, %s, %s, %s, %s, %s) ON CONFLICT (namespace, name) DO NOTHING "
                "RETURNING id, seq",
                (self.namespace, name, Jsonb(config.to_dict()), state.version, Jsonb(dict(state.embedding)),
                 state.created_at, state.updated_at)).fetchone()
            if row is None:
                raise Conflict(f"collection {name!r} already exists; open it, or delete it with "
                               f"`ctxroute collections rm {name}`", name=name)
            conn.execute(partition_ddl(row[0]))
        state.version_dir = _tag(*row)
        state.dense = PgDenseIndex(self.pool, row[0], config.embedder_dim, config.hnsw_threshold, {},
                                   np.zeros((0, config.embedder_dim), np.float32))
        self._remember(name, row[0], state)
        return state

    def delete(self, name: str) -> None:
        with self.pool.connection() as conn, conn.transaction():
            row = self._row(conn, name, "id", lock=True)
            if row is None:
                raise CollectionNotFound(name)
            conn.execute(f"DROP TABLE IF EXISTS {partition(row[0])}")
            conn.execute(f"DELETE FROM {SCHEMA}.collections WHERE id = %s", (row[0],))
        with self._lock:
            self._states.pop(name, None)

    @contextlib.contextmanager
    def write_lock(self, name: str) -> Iterator[None]:
        key = lock_key(self.namespace, name)
        with self.pool.connection() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                if self._row(conn, name, "id") is None:
                    raise CollectionNotFound(name)
                yield
            finally:
                # a broken connection cannot unlock, and needs not: the server releases the
                # lock with the session (the pool then drops the connection)
                with contextlib.suppress(psycopg.Error):
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    # --- writing --------------------------------------------------------------------
    def commit(self, name: str, config: CollectionConfig, base: _State, state: _State, delta: Delta) -> _State:
        vectors = np.asarray(delta.vectors, dtype=np.float32).astype(np.float16).astype(np.float32)
        n_new = sum(len(dc.passages) for _, dc in delta.added)
        if vectors.shape != (n_new, config.embedder_dim):
            raise ManifestMismatch(f"commit of {name!r}: {n_new} new passages but vectors of shape {vectors.shape}")
        from pgvector import Vector

        with self.pool.connection() as conn, conn.transaction():
            row = self._row(conn, name, "id, seq, next_ord", lock=True)
            if row is None:
                raise CollectionNotFound(name)
            cid, seq, next_ord = row
            if base.version_dir != _tag(cid, seq):
                raise Conflict(f"collection {name!r} changed since this writer loaded it ({base.version_dir} -> "
                               f"{_tag(cid, seq)}); write under write_lock after a refresh", name=name)
            if delta.removed:
                conn.execute(f"DELETE FROM {SCHEMA}.documents WHERE collection_id = %s AND doc_id = ANY(%s)",
                             (cid, sorted(delta.removed)))
            cur = conn.cursor()
            doc_rows, passage_rows = [], []
            row_of_vector = 0
            for i, (doc, dc) in enumerate(delta.added):
                doc_rows.append((cid, doc.id, next_ord + i, state.hashes[doc.id], doc.title, doc.source, doc.format,
                                 list(doc.page_starts), Jsonb(dict(doc.metadata)), doc.text,
                                 int(dc.document.n_tokens), len(dc.sections), len(dc.passages), len(dc.sentences),
                                 encode_chunks(dc)))
                for pos, (p, terms) in enumerate(zip(dc.passages, passage_terms(state.graph, doc.id))):
                    passage_rows.append((cid, doc.id, pos, Vector(vectors[row_of_vector]), index_text(doc, p),
                                         terms))
                    row_of_vector += 1
            if doc_rows:
                cur.executemany(
                    f"INSERT INTO {SCHEMA}.documents (collection_id, doc_id, ord, hash, title, source, format, "
                    "page_starts, metadata, text, n_tokens, n_sections, n_passages, n_sentences, chunks) "
                    "VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)", doc_rows)
            if passage_rows:
                cur.executemany(
                    f"INSERT INTO {SCHEMA}.passages (collection_id, doc_id, pos, embedding, tsv, terms) "
                    f"VALUES (%s, %s, %s, %s, to_tsvector('{FTS_CONFIG}', %s), %s)", passage_rows)
            if len(state.passages) > hnsw_above(config.hnsw_threshold):
                conn.execute(hnsw_ddl(cid, config.embedder_dim))  # once, when the collection first needs it
            n_tokens = sum(int(state.chunks[d].document.n_tokens) for d in state.docs)
            conn.execute(
                f"UPDATE {SCHEMA}.collections SET seq = seq + 1, version = %s, embedding = %s, n_docs = %s, "
                "n_passages = %s, n_tokens = %s, next_ord = %s, updated_at = %s WHERE id = %s",
                (state.version, Jsonb(dict(state.embedding)), len(state.docs), len(state.passages), n_tokens,
                 next_ord + len(delta.added), state.updated_at, cid))
        state.version_dir = _tag(cid, seq + 1)
        state.dense = PgDenseIndex(self.pool, cid, config.embedder_dim, config.hnsw_threshold,
                                   _positions(state), np.array(state.dense.vectors, dtype=np.float32))
        state.retrievers.clear()
        self._remember(name, cid, state)
        return state

    # --- loading --------------------------------------------------------------------
    def load(self, name: str, config: CollectionConfig) -> _State:
        with self.pool.connection() as conn, conn.transaction():
            conn.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
            row = self._row(conn, name, "id, seq, version, embedding, created_at, updated_at")
            if row is None:
                raise CollectionNotFound(name)
            cid, seq, version, embedding, created, updated = row
            tag = _tag(cid, seq)
            with self._lock:
                cached = self._states.get(name)
            if cached is not None and cached.version_dir == tag:
                return cached
            if cached is not None and self._ids.get(name) != cid:
                cached = None  # deleted and created again since
            listing = conn.execute(f"SELECT doc_id, hash FROM {SCHEMA}.documents WHERE collection_id = %s "
                                   "ORDER BY ord", (cid,)).fetchall()
            fetch = [d for d, h in listing if cached is None or cached.hashes.get(d) != h]
            rows = conn.execute(f"SELECT {DOC_COLUMNS} FROM {SCHEMA}.documents WHERE collection_id = %s "
                                "AND doc_id = ANY(%s)", (cid, fetch)).fetchall() if fetch else []
            terms_rows = conn.execute(
                f"SELECT doc_id, pos, terms FROM {SCHEMA}.passages WHERE collection_id = %s AND doc_id = ANY(%s)",
                (cid, fetch)).fetchall() if fetch else []
        dense = PgDenseIndex(self.pool, cid, config.embedder_dim, config.hnsw_threshold, {})
        state = build_state(config, listing, cached, fresh_documents(rows, terms_rows, name), version=version,
                            version_dir=tag, created_at=_iso(created), updated_at=_iso(updated),
                            embedding=dict(embedding), dense=dense)
        dense.positions = _positions(state)
        self._remember(name, cid, state)
        return state

    def text_retriever(self, name: str, state: _State) -> PgTextRetriever:
        """Postgres full-text search over ``state``'s passages (a collection of this backend)."""
        dense = state.dense
        if not isinstance(dense, PgDenseIndex):
            raise ManifestMismatch(f"collection {name!r} was not loaded from this PostgreSQL store")
        return PgTextRetriever(self.pool, dense.collection_id, dense.positions, state.passages)

    def _remember(self, name: str, cid: int, state: _State) -> None:
        with self._lock:
            self._states[name] = state
            self._ids[name] = cid
            self._states.move_to_end(name)
            while len(self._states) > _STATE_CACHE:
                old, _ = self._states.popitem(last=False)
                self._ids.pop(old, None)


def _positions(state: _State) -> dict[tuple[str, int], int]:
    out: dict[tuple[str, int], int] = {}
    for doc_id in state.docs:
        base = len(out)
        for pos in range(len(state.chunks[doc_id].passages)):
            out[(doc_id, pos)] = base + pos
    return out
