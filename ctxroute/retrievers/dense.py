"""Dense passage index on FAISS: exact inner product (``IndexFlatIP``) up to
``hnsw_threshold`` vectors, ``IndexHNSWFlat`` with the inner-product metric above it.

On disk the vectors are stored once: ``vectors.npy`` as float16 for the exact index (the
float32 copy in memory is made at load; cosine changes by < 1e-3, the measured recall@10 not
at all), or inside ``dense.faiss`` for HNSW. They are the source of truth: removal rebuilds
the index from them, so nothing is ever re-embedded. FAISS pads missing results with label
-1; those are filtered out here so -1 never indexes a passage list.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ctxroute.errors import InputError, ManifestMismatch
from ctxroute.types import Chunk, ScoredChunk

INDEX_FILE = "dense.faiss"
VECTORS_FILE = "vectors.npy"
META_FILE = "dense.json"


class DenseIndex:
    """Inner-product search over L2-normalised float32 vectors (cosine similarity)."""

    def __init__(self, dim: int, hnsw_threshold: int = 50_000, *, hnsw_m: int = 32, ef_search: int = 128) -> None:
        if dim < 1:
            raise InputError(f"dense index dim must be >= 1, got {dim}", dim=dim)
        if hnsw_threshold < 1:
            raise InputError(f"hnsw_threshold must be >= 1, got {hnsw_threshold}", hnsw_threshold=hnsw_threshold)
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self._vectors = np.zeros((0, dim), dtype=np.float32)
        self._index: Any = None

    def __len__(self) -> int:
        return int(self._vectors.shape[0])

    @property
    def vectors(self) -> np.ndarray:
        """The stored vectors (read-only view), one row per position."""
        view = self._vectors.view()
        view.flags.writeable = False
        return view

    @property
    def kind(self) -> str:
        return "hnsw" if len(self) > self.hnsw_threshold else "flat"

    def _check(self, vectors: np.ndarray) -> np.ndarray:
        arr = np.ascontiguousarray(np.asarray(vectors, dtype=np.float32))
        if arr.ndim == 1:
            arr = arr.reshape(1, -1)
        if arr.ndim != 2 or arr.shape[1] != self.dim:
            raise InputError(
                f"expected vectors of shape (n, {self.dim}), got {tuple(np.shape(vectors))}; "
                "embed with the collection's embedder",
                shape=str(np.shape(vectors)),
            )
        return arr

    @property
    def storage_dtype(self) -> str:
        """How the vectors are kept on disk."""
        return "float32 (in dense.faiss)" if self.kind == "hnsw" else "float16"

    def _rebuild(self) -> None:
        import faiss

        if self.kind != "hnsw":  # faiss, not numpy: BLAS threads collapse on a busy CPU (4.6 ms vs 0.85)
            index = faiss.IndexFlatIP(self.dim)
        else:
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = max(40, self.hnsw_m * 2)
            index.hnsw.efSearch = self.ef_search
        if len(self):
            index.add(self._vectors)
        self._index = index

    def add(self, vectors: np.ndarray) -> None:
        """Append rows; their positions continue from ``len(self)``."""
        arr = self._check(vectors)
        if arr.shape[0] == 0:
            return
        # vectors are stored as float16: keep exactly those values in memory too, so a loaded
        # collection searches the same as the one that wrote it
        arr = arr.astype(np.float16).astype(np.float32)
        before = self.kind
        self._vectors = np.concatenate([self._vectors, arr]) if len(self) else arr.copy()
        if self._index is None or self.kind != before:
            self._rebuild()
        else:
            self._index.add(arr)

    def remove(self, positions: Sequence[int]) -> None:
        """Drop rows at ``positions`` (later rows shift down) and rebuild from stored vectors."""
        if not len(positions):
            return
        keep = np.ones(len(self), dtype=bool)
        keep[np.asarray(list(positions), dtype=np.int64)] = False
        self._vectors = np.ascontiguousarray(self._vectors[keep])
        self._rebuild()

    def search(self, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """(position, inner product) of the ``k`` nearest rows, best first."""
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}", k=k)
        query = self._check(vector)
        if query.shape[0] != 1:
            raise InputError(f"search takes one query vector, got {query.shape[0]}")
        if len(self) == 0:
            return []
        if self._index is None:
            self._rebuild()
        scores, labels = self._index.search(query, min(k, len(self)))
        return [
            (int(label), float(score))
            for label, score in zip(labels[0], scores[0])
            if 0 <= label < len(self)  # FAISS pads with -1 when it finds fewer than k
        ]

    def save(self, directory: Path) -> None:
        """Write the vectors once (``vectors.npy`` float16, or ``dense.faiss`` for HNSW) and ``dense.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._index is None:
            self._rebuild()
        if self.kind == "hnsw":
            import faiss

            faiss.write_index(self._index, str(directory / INDEX_FILE))
        else:
            np.save(directory / VECTORS_FILE, self._vectors.astype(np.float16), allow_pickle=False)
        meta = {"dim": self.dim, "hnsw_threshold": self.hnsw_threshold, "hnsw_m": self.hnsw_m,
                "ef_search": self.ef_search, "n": len(self), "kind": self.kind, "dtype": self.storage_dtype}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, dim: int | None = None) -> "DenseIndex":
        directory = Path(directory)
        meta = json.loads((directory / META_FILE).read_text(encoding="utf-8"))
        if dim is not None and int(meta["dim"]) != dim:
            raise ManifestMismatch(
                f"dense index at {directory} has dimension {meta['dim']} but the embedder gives {dim}; "
                "re-ingest the collection with this embedder or configure the original one",
                stored=int(meta["dim"]), requested=dim,
            )
        index = cls(int(meta["dim"]), int(meta["hnsw_threshold"]), hnsw_m=int(meta["hnsw_m"]),
                    ef_search=int(meta["ef_search"]))
        if meta.get("kind") == "hnsw":
            import faiss

            faiss_index = faiss.read_index(str(directory / INDEX_FILE))
            faiss_index.hnsw.efSearch = index.ef_search
            vectors = faiss_index.reconstruct_n(0, faiss_index.ntotal) if faiss_index.ntotal else None
            index._vectors = np.ascontiguousarray(vectors if vectors is not None
                                                  else np.zeros((0, index.dim)), dtype=np.float32)
            index._index = faiss_index
        else:
            index._vectors = np.ascontiguousarray(np.load(directory / VECTORS_FILE, allow_pickle=False),
                                                  dtype=np.float32)
        if index._vectors.ndim != 2 or index._vectors.shape[1] != index.dim or len(index) != int(meta["n"]):
            raise ManifestMismatch(f"dense vectors at {directory} have shape {index._vectors.shape}, "
                                   f"expected ({meta['n']}, {index.dim}); re-ingest the collection")
        if index._index is None:
            index._rebuild()
        return index


class DenseRetriever:
    """Embeds the query with ``embedder`` and searches ``index`` (rows aligned with ``passages``)."""

    name = "dense"

    def __init__(self, index: DenseIndex, embedder: Any, passages: Sequence[Chunk]) -> None:
        if len(index) != len(passages):
            raise InputError(
                f"dense index holds {len(index)} vectors but {len(passages)} passages were given; "
                "build the index from exactly these passages",
            )
        if int(embedder.dim) != index.dim:
            raise ManifestMismatch(
                f"embedder {embedder.name!r} gives dimension {embedder.dim} but the index has {index.dim}; "
                "use the embedder the collection was built with",
            )
        self.index = index
        self.embedder = embedder
        self.passages = passages

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]:
        if len(self.index) == 0:
            return []
        vector = self.embedder.embed([query])
        hits = self.index.search(vector[0], k)
        return [
            ScoredChunk(self.passages[i], score, self.name, ranks={self.name: rank}, scores={self.name: score})
            for rank, (i, score) in enumerate(hits, start=1)
        ]
