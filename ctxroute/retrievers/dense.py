"""Dense passage index on FAISS: exact inner product (``IndexFlatIP``) up to
``hnsw_threshold`` vectors, ``IndexHNSWFlat`` with the inner-product metric above it.

On disk the vectors are stored once: ``vectors.npy`` as float16 for the exact index (the
float32 copy in memory is made at load; cosine changes by < 1e-3, the measured recall@10 not
at all), or inside ``dense.faiss`` for HNSW. They are the source of truth: removal rebuilds
the index from them (or marks rows dead in a segmented index), so nothing is ever
re-embedded. FAISS pads missing results with label -1; those are filtered out here so -1
never indexes a passage list.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ctxroute.errors import InputError, ManifestMismatch
from ctxroute.retrievers.segments import RowSegments, SegmentedIndex
from ctxroute.types import Chunk, ScoredChunk

INDEX_FILE = "dense.faiss"
VECTORS_FILE = "vectors.npy"
META_FILE = "dense.json"


_SCAN_PARAMS: Any = None


def _sequential_scan() -> Any:
    """Search parameters that make a flat index scan one query on the calling thread. Its
    default splits one query over OpenMP threads, which on a loaded 2-core machine took
    ~16 ms for 10k vectors instead of ~0.25 ms (measured with faiss 1.15; same results)."""
    global _SCAN_PARAMS
    if _SCAN_PARAMS is None:
        import faiss

        _SCAN_PARAMS = faiss.SearchParameters(sel=faiss.IDSelectorAll())
    return _SCAN_PARAMS


class _Vectors:
    """One segment of a dense index: its float32 rows and their FAISS index (built on demand)."""

    __slots__ = ("vectors", "faiss", "hnsw")

    def __init__(self, vectors: np.ndarray, hnsw: bool, faiss_index: Any = None) -> None:
        self.vectors = vectors
        self.hnsw = hnsw
        self.faiss = faiss_index


class DenseIndex(SegmentedIndex):
    """Inner-product search over L2-normalised float32 vectors (cosine similarity).

    Rows live in segments, each with its own FAISS index (HNSW when the segment holds more
    than ``hnsw_threshold`` rows): ``extended`` adds a segment and ``without`` marks rows dead
    (skipped in searches through a FAISS ID selector), both returning a new index and leaving
    this one as it was; ``merged`` folds segments into one. ``add``/``remove`` change the index
    in place as before.
    """

    def __init__(self, dim: int, hnsw_threshold: int = 50_000, *, hnsw_m: int = 32, ef_search: int = 128) -> None:
        if dim < 1:
            raise InputError(f"dense index dim must be >= 1, got {dim}", dim=dim)
        if hnsw_threshold < 1:
            raise InputError(f"hnsw_threshold must be >= 1, got {hnsw_threshold}", hnsw_threshold=hnsw_threshold)
        self.dim = dim
        self.hnsw_threshold = hnsw_threshold
        self.hnsw_m = hnsw_m
        self.ef_search = ef_search
        self._segs: tuple[_Vectors, ...] = ()
        self._rows = RowSegments()
        self._live: np.ndarray | None = None

    def __len__(self) -> int:
        return self._rows.n_live

    @property
    def vectors(self) -> np.ndarray:
        """The live vectors (read-only), one row per position; concatenated on first use."""
        if self._live is None:
            parts = [s.vectors if self._rows.dead[i] is None else s.vectors[self._rows.live_rows(i)]
                     for i, s in enumerate(self._segs)]
            live = parts[0] if len(parts) == 1 else (np.concatenate(parts) if parts
                                                     else np.zeros((0, self.dim), dtype=np.float32))
            self._live = live
        view = self._live.view()
        view.flags.writeable = False
        return view

    def vector(self, position: int) -> np.ndarray:
        """The vector at one live position (no concatenation)."""
        [(seg, rows)] = self._rows.locate([position])
        return self._segs[seg].vectors[int(rows[0])]

    @property
    def kind(self) -> str:
        """``hnsw`` when a segment is searched through HNSW, else ``flat``."""
        return "hnsw" if any(s.hnsw for s in self._segs) else "flat"

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

    def _segment(self, vectors: np.ndarray) -> _Vectors:
        return _Vectors(vectors, hnsw=len(vectors) > self.hnsw_threshold)

    def _faiss(self, seg: _Vectors) -> Any:
        if seg.faiss is None:
            import faiss

            if not seg.hnsw:  # faiss, not numpy: BLAS threads collapse on a busy CPU (4.6 ms vs 0.85)
                index = faiss.IndexFlatIP(self.dim)
            else:
                index = faiss.IndexHNSWFlat(self.dim, self.hnsw_m, faiss.METRIC_INNER_PRODUCT)
                index.hnsw.efConstruction = max(40, self.hnsw_m * 2)
                index.hnsw.efSearch = self.ef_search
            if len(seg.vectors):
                index.add(seg.vectors)
            seg.faiss = index
        return seg.faiss

    _APPEND_NEEDS = "of the same dimension"

    @staticmethod
    def _seg_len(seg: _Vectors) -> int:
        return len(seg.vectors)

    def _same_kind(self, other: "DenseIndex") -> bool:
        return other.dim == self.dim

    def _with(self, segs: Sequence[_Vectors], rows: RowSegments) -> "DenseIndex":
        other = DenseIndex(self.dim, self.hnsw_threshold, hnsw_m=self.hnsw_m, ef_search=self.ef_search)
        other._segs, other._rows = tuple(segs), rows
        return other

    @staticmethod
    def _as_stored(arr: np.ndarray) -> np.ndarray:
        # vectors are stored as float16: keep exactly those values in memory too, so a loaded
        # collection searches the same as the one that wrote it
        return arr.astype(np.float16).astype(np.float32)

    # --- new indexes (this one unchanged) -------------------------------------------
    def extended(self, vectors: np.ndarray, *, build: bool = True) -> "DenseIndex":
        """This index plus ``vectors`` as a new segment (positions continue from ``len(self)``);
        ``build=False`` leaves the segment's FAISS index to its first search."""
        arr = self._check(vectors)
        if arr.shape[0] == 0:
            return self._with(self._segs, self._rows)
        seg = self._segment(self._as_stored(arr))
        if build:
            self._faiss(seg)
        return self._with((*self._segs, seg), self._rows.appended(len(arr)))

    def merged(self, start: int = 0, stop: int | None = None) -> "DenseIndex":
        """Segments ``start:stop`` (default all) folded into one of their live rows."""
        stop = len(self._segs) if stop is None else stop
        if stop - start < 1 or (stop - start == 1 and self._rows.dead[start] is None):
            return self._with(self._segs, self._rows)
        parts = [self._segs[i].vectors if self._rows.dead[i] is None else self._segs[i].vectors[self._rows.live_rows(i)]
                 for i in range(start, stop)]
        seg = self._segment(np.ascontiguousarray(np.concatenate(parts)))
        mid = (seg,) if len(seg.vectors) else ()  # no live row left: no segment
        for s in mid:
            self._faiss(s)
        return self._with((*self._segs[:start], *mid, *self._segs[stop:]), self._rows.merged(start, stop))

    @classmethod
    def of_vectors(cls, dim: int, vectors: np.ndarray, hnsw_threshold: int = 50_000) -> "DenseIndex":
        """One segment holding ``vectors`` (as stored: float16 values), its FAISS index built on
        the first search only: for a commit that needs the rows, not a search structure (the
        postgres store searches with pgvector)."""
        return cls(dim, hnsw_threshold).extended(vectors, build=False)

    @classmethod
    def joined(cls, parts: Sequence["DenseIndex"], dead: Sequence[np.ndarray | None], dim: int,
               hnsw_threshold: int | None = None) -> "DenseIndex":
        """One index over single-segment ``parts``, rows marked in ``dead`` left out."""
        if any(p.n_segments != 1 for p in parts):
            raise InputError("DenseIndex.joined takes non-empty single-segment parts")
        first = parts[0] if parts else None
        base = cls(dim, hnsw_threshold or (first.hnsw_threshold if first else 50_000),
                   hnsw_m=first.hnsw_m if first else 32, ef_search=first.ef_search if first else 128)
        segs = [p._segs[0] for p in parts]
        return base._with(segs, RowSegments([len(s.vectors) for s in segs], dead))

    # --- in place -------------------------------------------------------------------
    def add(self, vectors: np.ndarray) -> None:
        """Append rows in place (to the last segment); positions continue from ``len(self)``."""
        arr = self._check(vectors)
        if arr.shape[0] == 0:
            return
        arr = self._as_stored(arr)
        if not self._segs:
            seg = self._segment(arr.copy())
            self._segs, self._rows = (seg,), RowSegments((len(arr),))
        else:
            last = self._segs[-1]
            grown = self._segment(np.concatenate([last.vectors, arr]))
            if last.faiss is not None and grown.hnsw == last.hnsw:
                last.faiss.add(arr)
                grown.faiss = last.faiss
            self._segs = (*self._segs[:-1], grown)
            last_dead = self._rows.dead[-1]
            if last_dead is not None:
                last_dead = np.concatenate([last_dead, np.zeros(len(arr), bool)])
            self._rows = RowSegments((*self._rows.sizes[:-1], len(grown.vectors)), (*self._rows.dead[:-1], last_dead))
        self._live = None
        self._faiss(self._segs[-1])

    def remove(self, positions: Sequence[int]) -> None:
        """Drop rows at ``positions`` in place (later rows shift down), rebuilt as one segment."""
        if not len(positions):
            return
        merged = self.without(positions).merged()
        self._segs, self._rows, self._live = merged._segs, merged._rows, None

    # --- searching ------------------------------------------------------------------
    def search(self, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        """(position, inner product) of the ``k`` nearest rows, best first."""
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}", k=k)
        query = self._check(vector)
        if query.shape[0] != 1:
            raise InputError(f"search takes one query vector, got {query.shape[0]}")
        if len(self) == 0:
            return []
        hits: list[tuple[int, float]] = []
        for i, seg in enumerate(self._segs):
            n_live = int(self._rows.offsets[i + 1] - self._rows.offsets[i])
            if n_live == 0:
                continue
            index = self._faiss(seg)
            live = self._rows.live_mask(i)
            if live is None and seg.hnsw:
                scores, labels = index.search(query, min(k, n_live))
            elif live is None:
                scores, labels = index.search(query, min(k, n_live), params=_sequential_scan())
            else:
                import faiss

                bitmap = np.packbits(live, bitorder="little")
                sel = faiss.IDSelectorBitmap(len(live), faiss.swig_ptr(bitmap))
                params = (faiss.SearchParametersHNSW(sel=sel, efSearch=self.ef_search) if seg.hnsw
                          else faiss.SearchParameters(sel=sel))
                scores, labels = index.search(query, min(k, n_live), params=params)
            rows = labels[0]
            ok = (rows >= 0) & (rows < len(seg.vectors))  # FAISS pads with -1 when it finds fewer than k
            if live is not None:
                ok &= live[np.where(ok, rows, 0)]
            pos = self._rows.positions(i, rows[ok])
            hits.extend(zip(pos.tolist(), scores[0][ok].tolist()))
        hits.sort(key=lambda h: (-h[1], h[0]))  # ties by position: the same order however segmented
        return [(int(p), float(s)) for p, s in hits[:k]]

    # --- persistence ----------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the live vectors once, as one segment (``vectors.npy`` float16, or
        ``dense.faiss`` for HNSW) and ``dense.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        one = self.merged() if len(self._segs) > 1 or self._rows.n_dead else self
        seg = one._segs[0] if one._segs else self._segment(np.zeros((0, self.dim), dtype=np.float32))
        if seg.hnsw:
            import faiss

            faiss.write_index(self._faiss(seg), str(directory / INDEX_FILE))
        else:
            np.save(directory / VECTORS_FILE, seg.vectors.astype(np.float16), allow_pickle=False)
        meta = {"dim": self.dim, "hnsw_threshold": self.hnsw_threshold, "hnsw_m": self.hnsw_m,
                "ef_search": self.ef_search, "n": len(seg.vectors), "kind": "hnsw" if seg.hnsw else "flat",
                "dtype": one.storage_dtype}
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
        faiss_index = None
        if meta.get("kind") == "hnsw":
            import faiss

            faiss_index = faiss.read_index(str(directory / INDEX_FILE))
            faiss_index.hnsw.efSearch = index.ef_search
            vectors = faiss_index.reconstruct_n(0, faiss_index.ntotal) if faiss_index.ntotal else None
            vectors = np.ascontiguousarray(vectors if vectors is not None else np.zeros((0, index.dim)),
                                           dtype=np.float32)
        else:
            vectors = np.ascontiguousarray(np.load(directory / VECTORS_FILE, allow_pickle=False), dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[1] != index.dim or len(vectors) != int(meta["n"]):
            raise ManifestMismatch(f"dense vectors at {directory} have shape {vectors.shape}, "
                                   f"expected ({meta['n']}, {index.dim}); re-ingest the collection")
        if len(vectors):
            seg = _Vectors(vectors, hnsw=meta.get("kind") == "hnsw", faiss_index=faiss_index)
            index._segs, index._rows = (seg,), RowSegments((len(vectors),))
            index._faiss(seg)
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
