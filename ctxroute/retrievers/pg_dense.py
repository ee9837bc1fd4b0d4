"""Search in PostgreSQL: pgvector for the dense index and Postgres full-text search as an
optional sparse candidate generator.

``PgDenseIndex`` has ``DenseIndex``'s interface (``len``, ``dim``, ``kind``, ``vectors``,
``search``), so ``DenseRetriever`` and ``Collection`` use it unchanged. Its rows are the
passages of one loaded version, in the collection's order; ``search`` runs
``ORDER BY embedding <#> q LIMIT k`` on the collection's partition and maps each row back to
its position. A row another writer added after this version was loaded is not a position of
this version and is skipped (a reader refreshes before it reads; see ``Collection.refresh``).

Exact up to ``hnsw_above(hnsw_threshold)`` passages (like the files backend's flat FAISS index;
the planner is told not to use an index), HNSW above it with ``hnsw.ef_search`` raised to 2k so that a
large k is not cut at pgvector's default of 40 candidates.
"""
from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np

from ctxroute.errors import InputError, ManifestMismatch
from ctxroute.retrievers.pg_schema import FTS_CONFIG, SCHEMA, hnsw_above, partition
from ctxroute.types import Chunk, ScoredChunk

EF_SEARCH_MAX = 1000


class PgDenseIndex:
    """Inner-product search over one version's passage vectors, run by pgvector."""

    def __init__(self, pool: Any, collection_id: int, dim: int, hnsw_threshold: int,
                 positions: Mapping[tuple[str, int], int], vectors: np.ndarray | None = None) -> None:
        self.pool = pool
        self.collection_id = int(collection_id)
        self.dim = int(dim)
        self.hnsw_threshold = int(hnsw_threshold)
        self.positions = positions  # (doc_id, passage number in the document) -> position
        self._vectors = vectors  # fetched on first use (writers need them to derive the next version)

    def __len__(self) -> int:
        return len(self.positions)

    @property
    def kind(self) -> str:
        return "hnsw" if len(self) > hnsw_above(self.hnsw_threshold) else "flat"

    @property
    def storage_dtype(self) -> str:
        return "float32 (pgvector)"

    @property
    def vectors(self) -> np.ndarray:
        """The vectors in position order, read from PostgreSQL once (float32)."""
        if self._vectors is None:
            out = np.zeros((len(self), self.dim), dtype=np.float32)
            seen = 0
            with self.pool.connection() as conn:
                cur = conn.execute(f"SELECT doc_id, pos, embedding FROM {SCHEMA}.passages WHERE collection_id = %s",
                                   (self.collection_id,), binary=True)
                for doc_id, pos, emb in cur:
                    i = self.positions.get((doc_id, pos))
                    if i is not None:
                        out[i] = emb.to_numpy()
                        seen += 1
            if seen != len(self):
                raise ManifestMismatch(
                    f"PostgreSQL holds vectors for {seen} of the {len(self)} passages of this version "
                    "(another writer changed the collection); refresh the collection and retry")
            self._vectors = out
        view = self._vectors.view()
        view.flags.writeable = False
        return view

    def search(self, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """(position, inner product) of the ``k`` nearest passages, best first."""
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}", k=k)
        query = np.asarray(vector, dtype=np.float32).reshape(-1)
        if query.shape[0] != self.dim:
            raise InputError(f"expected a query vector of dimension {self.dim}, got shape {np.shape(vector)}; "
                             "embed with the collection's embedder", shape=str(np.shape(vector)))
        if len(self) == 0:
            return []
        from pgvector import Vector

        k = min(k, len(self))
        with self.pool.connection() as conn, conn.transaction():
            rows = conn.execute(self._plan(conn, k), {"q": Vector(query), "k": k}).fetchall()
        out = []
        for doc_id, pos, distance in rows:  # <#> is the negative inner product
            i = self.positions.get((doc_id, pos))
            if i is not None:
                out.append((i, -float(distance)))
        return out

    def _plan(self, conn: Any, k: int) -> str:
        """Fix the plan for this transaction; the query (parameters ``q``, ``k``)."""
        if self.kind == "flat":  # exact, as the files backend below its threshold
            conn.execute("SET LOCAL enable_indexscan = off")
        else:  # the HNSW index, whatever the (possibly stale) table statistics say
            conn.execute("SET LOCAL enable_seqscan = off")
            conn.execute(f"SET LOCAL hnsw.ef_search = {min(EF_SEARCH_MAX, max(40, 2 * k))}")
        # the collection's own partition (a WHERE on collection_id would steer the planner to the
        # primary key instead of the HNSW index); the distance computed once, sorted by its alias;
        # the cast to the typed vector only where the HNSW index (made on it) must match
        cast = f"::vector({self.dim})" if self.kind == "hnsw" else ""
        return (f"SELECT doc_id, pos, embedding{cast} <#> %(q)s{cast} AS d FROM {partition(self.collection_id)} "
                "ORDER BY d LIMIT %(k)s")

    def explain(self, vector: np.ndarray, k: int = 10) -> str:
        """PostgreSQL's plan for ``search(vector, k)`` (EXPLAIN), for operators and tests."""
        from pgvector import Vector

        with self.pool.connection() as conn, conn.transaction():
            sql = self._plan(conn, k)
            rows = conn.execute("EXPLAIN " + sql, {"q": Vector(np.asarray(vector, dtype=np.float32).reshape(-1)),
                                                   "k": k}).fetchall()
        return "\n".join(r[0] for r in rows)


class PgTextRetriever:
    """Postgres full-text search (``tsvector`` of each passage's index text, English config)
    as a sparse candidate generator: any query word may match (the plain query's terms are
    OR-ed), ranked by ``ts_rank_cd``. Not BM25: use it to find candidates in a collection too
    large for a replica's in-memory BM25, not as a drop-in for ``bm25``."""

    name = "fts"

    def __init__(self, pool: Any, collection_id: int, positions: Mapping[tuple[str, int], int],
                 passages: Sequence[Chunk]) -> None:
        self.pool = pool
        self.collection_id = int(collection_id)
        self.positions = positions
        self.passages = passages

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]:
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}", k=k)
        sql = (f"WITH q AS (SELECT nullif(replace(plainto_tsquery('{FTS_CONFIG}', %(t)s)::text, '&', '|'), '')"
               f"::tsquery AS q) SELECT doc_id, pos, ts_rank_cd(tsv, q.q) AS r FROM {SCHEMA}.passages, q "
               f"WHERE collection_id = %(c)s AND q.q IS NOT NULL AND tsv @@ q.q ORDER BY r DESC, doc_id, pos "
               f"LIMIT %(k)s")
        with self.pool.connection() as conn:
            rows = conn.execute(sql, {"t": query, "c": self.collection_id, "k": k}).fetchall()
        hits = [(self.positions.get((d, p)), float(r)) for d, p, r in rows]
        return [ScoredChunk(self.passages[i], score, self.name, ranks={self.name: rank}, scores={self.name: score})
                for rank, (i, score) in enumerate(((i, s) for i, s in hits if i is not None), start=1)]
