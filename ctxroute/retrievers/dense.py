"""Dense passage index on FAISS: exact inner product (``IndexFlatIP``) up to
``hnsw_threshold`` vectors, ``IndexHNSWFlat`` with the inner-product metric above it.

The stored float32 vectors (``vectors.npy``) are the source of truth: removal rebuilds the
FAISS index from them, so nothing is ever re-embedded. FAISS pads missing results with
label -1; those are filtered out here so -1 never indexes a passage list.
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

    def _new_faiss(self, n: int) -> Any:
        import faiss

        if n > self.hnsw_threshold:
            index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
            index.hnsw.efConstruction = max(40, self.hnsw_m * 2)
            index.hnsw.efSearch = self.ef_search
            return index
        return faiss.IndexFlatIP(self.dim)

    def _rebuild(self) -> None:
        index = self._new_faiss(len(self))
        if len(self):
            index.add(self._vectors)
        self._index = index

    def add(self, vectors: np.ndarray) -> None:
        """Append rows; their positions continue from ``len(self)``."""
        arr = self._check(vectors)
        if arr.shape[0] == 0:
            return
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
        """Write ``dense.faiss`` (faiss.write_index), ``vectors.npy`` and ``dense.json``."""
        import faiss

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        if self._index is None:
            self._rebuild()
        np.save(directory / VECTORS_FILE, self._vectors, allow_pickle=False)
        faiss.write_index(self._index, str(directory / INDEX_FILE))
        meta = {"dim": self.dim, "hnsw_threshold": self.hnsw_threshold, "hnsw_m": self.hnsw_m,
                "ef_search": self.ef_search, "n": len(self), "kind": self.kind}
        (directory / META_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, dim: int | None = None) -> "DenseIndex":
        import faiss

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
        index._vectors = np.ascontiguousarray(
            np.load(directory / VECTORS_FILE, allow_pickle=False).astype(np.float32, copy=False)
        )
        if index._vectors.ndim != 2 or index._vectors.shape[1] != index.dim:
            raise ManifestMismatch(f"{directory / VECTORS_FILE} has shape {index._vectors.shape}, "
                                   f"expected (n, {index.dim}); re-ingest the collection")
        faiss_index = faiss.read_index(str(directory / INDEX_FILE))
        if faiss_index.ntotal != len(index) or faiss_index.d != index.dim:
            index._rebuild()  # the vectors are the source of truth
        else:
            if hasattr(faiss_index, "hnsw"):
                faiss_index.hnsw.efSearch = index.ef_search
            index._index = faiss_index
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
