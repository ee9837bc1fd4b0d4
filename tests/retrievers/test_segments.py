"""Append-only segments of the files backend: a write adds one segment and a small manifest,
removals are tombstones, compaction (automatic and explicit) gives what a fresh ingest gives."""
from __future__ import annotations

import dataclasses
import json
import os
import random
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers import segments as segments_mod
from ctxroute.retrievers.chunking import ChunkingConfig
from ctxroute.retrievers.codec import DOCUMENTS_FILE, write_chunks, write_documents
from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
from ctxroute.retrievers.dense import DenseIndex
from ctxroute.retrievers.derive import next_state
from ctxroute.retrievers.documents import document_from_text
from ctxroute.retrievers.embedders import HashingEmbedder
from ctxroute.retrievers.files_backend import FilesBackend
from ctxroute.retrievers.segments import RowSegments, SegmentInfo, compaction_plan
from ctxroute.retrievers.sparse import SparseIndex
from ctxroute.types import Document

from tests.retrievers.test_collection import CountingEmbedder

WORDS = ("lease rent tenant deposit notice landlord pets payment transfer bank revenue margin profit loss "
         "chlorophyll photosynthesis carbon sugar energy printing press Gutenberg Mainz books Europe knowledge "
         "court appeal ruling contract breach damages invoice shipment warehouse freight customs tariff").split()
QUERIES = ["tenant deposit notice", "photosynthesis carbon energy", "Gutenberg printing books", "invoice freight",
           "court ruling damages", "revenue margin profit", "bank transfer payment", "Mainz Europe"]
RETRIEVERS = ("bm25", "dense", "graph", "hybrid")


def _doc(i: int, seed: int = 0) -> Document:
    rng = random.Random(i * 7919 + seed)
    sentences = [" ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 14))).capitalize() + "."
                 for _ in range(rng.randint(4, 12))]
    return document_from_text(" ".join(sentences), title=f"Doc {i}", doc_id=f"d{i}")


def _config(emb: HashingEmbedder, **kw: object) -> CollectionConfig:
    return CollectionConfig.for_embedder(emb, chunking=ChunkingConfig(passage_tokens=24), **kw)  # type: ignore[arg-type]


def _manifest(path: Path) -> dict:
    return json.loads((path / "versions" / (path / "CURRENT").read_text().strip() / "manifest.json").read_text())


def _results(col, k: int = 8) -> dict:
    return {(q, r): [(h.chunk.id, round(h.score, 5)) for h in col.search(q, k, r)] for q in QUERIES for r in RETRIEVERS}


@pytest.fixture()
def store(tmp_path: Path) -> CollectionStore:
    return CollectionStore(tmp_path / "collections")


def test_a_write_adds_one_segment_and_rewrites_nothing(store: CollectionStore) -> None:
    emb = HashingEmbedder(64)
    col = store.create("append", _config(emb), emb)
    col.add_documents([_doc(i) for i in range(20)])
    seg_root = col.path / "segments"
    before = {p.name: {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in p.rglob("*")} for p in seg_root.iterdir()}
    col.add_documents([_doc(100)])
    after = {p.name: {f.name: (f.stat().st_ino, f.stat().st_mtime_ns) for f in p.rglob("*")} for p in seg_root.iterdir()}
    new = set(after) - set(before)
    assert len(new) == 1 and all(after[n] == before[n] for n in before)  # old segments untouched
    [new_name] = new
    new_docs = [json.loads(line)["id"] for line in
                __import__("gzip").open(seg_root / new_name / DOCUMENTS_FILE, "rt").read().splitlines()]
    assert new_docs == ["d100"]  # the segment holds only what the write added
    manifest = _manifest(col.path)
    assert [s["name"] for s in manifest["segments"]][-1] == new_name and manifest["counts"]["documents"] == 21
    big = sum(f.stat().st_size for f in (seg_root / sorted(before)[0]).rglob("*") if f.is_file())
    small = sum(f.stat().st_size for f in (seg_root / new_name).rglob("*") if f.is_file())
    assert small < big / 4


def test_segmented_collection_searches_like_a_fresh_one_and_compacts_to_it(store: CollectionStore) -> None:
    emb = HashingEmbedder(64)
    seg = store.create("seg", _config(emb), emb)
    for i in range(7):  # one segment per write
        seg.add_documents([_doc(2 * i), _doc(2 * i + 1)])
    seg.add_documents([_doc(3, seed=1)])  # replaces d3: a tombstone in its old segment and a new row set
    seg.remove_document("d6")
    assert seg._state.sparse.n_segments == seg._state.dense.n_segments == len(seg._state.segments) == 8
    manifest = _manifest(seg.path)
    assert [s["dead"] for s in manifest["segments"] if s["dead"]] == [["d3"], ["d6"]]

    live = seg.documents()
    fresh = store.create("fresh", _config(emb), emb)
    fresh.add_documents(live)  # a fresh ingest of the live documents, in the same order
    assert [p.id for p in fresh.passages()] == [p.id for p in seg.passages()]
    assert seg.version == fresh.version
    want = _results(fresh)
    assert _results(seg) == want  # exact BM25 statistics across segments, dead rows skipped
    reopened = store.open("seg", emb)
    assert reopened._state.sparse.n_dead == seg._state.sparse.n_dead > 0
    assert _results(reopened) == want

    seg.compact()
    assert len(seg._state.segments) == seg._state.sparse.n_segments == 1 and seg._state.sparse.n_dead == 0
    assert seg.version == fresh.version and _results(seg) == want
    manifest = _manifest(seg.path)
    assert len(manifest["segments"]) == 1 and manifest["segments"][0]["dead"] == []
    assert _results(store.open("seg", emb)) == want
    # the compacted segment's files hold what a fresh ingest's do
    sdir = seg.path / "segments" / manifest["segments"][0]["name"]
    fdir = fresh.path / "segments" / _manifest(fresh.path)["segments"][0]["name"]
    for name in ("documents.jsonl.gz", "chunks.npz", "vectors.npy"):
        a, b = sdir / name, fdir / name
        if name.endswith(".npy"):
            np.testing.assert_array_equal(np.load(a), np.load(b))
        else:
            assert a.stat().st_size == b.stat().st_size
    seg.add_documents([_doc(50)])  # old segments are pruned once no kept version lists them
    seg.add_documents([_doc(51)])
    listed = {s["name"] for s in _manifest(seg.path)["segments"]}
    assert {p.name for p in (seg.path / "segments").iterdir()} == listed


def test_automatic_compaction_bounds_segments_and_dead_rows(store: CollectionStore) -> None:
    emb = HashingEmbedder(64)
    col = store.create("auto", _config(emb), emb)
    col.add_documents([_doc(i) for i in range(30)])
    counts = []
    for i in range(30, 50):
        stats = col.add_documents([_doc(i)])
        counts.append(len(col._state.segments))
        assert len(col._state.segments) <= segments_mod.MAX_SEGMENTS
    assert max(counts) == segments_mod.MAX_SEGMENTS and min(counts) < segments_mod.MAX_SEGMENTS  # it merged
    assert "merge" in stats.seconds or counts[-1] <= segments_mod.MAX_SEGMENTS
    assert col._state.segments[0].doc_ids == tuple(f"d{i}" for i in range(30))  # the large base was kept
    # more than 20% dead rows: everything folds into one segment
    for i in range(0, 12):
        col.remove_document(f"d{i}")
    dead_fraction = sum(s.n_dead_rows for s in col._state.segments) / sum(s.n_rows for s in col._state.segments)
    assert dead_fraction <= segments_mod.MAX_DEAD_FRACTION
    fresh = store.create("auto-fresh", _config(emb), emb)
    fresh.add_documents(col.documents())
    assert _results(col) == _results(fresh) and col.version == fresh.version


def test_old_snapshots_are_unchanged_by_later_writes(store: CollectionStore) -> None:
    emb = HashingEmbedder(64)
    col = store.create("snap", _config(emb), emb)
    col.add_documents([_doc(i) for i in range(6)])
    bm25, dense = col.retriever("bm25"), col.retriever("dense")
    before = {q: ([h.chunk.id for h in bm25.retrieve(q, 5)], [h.chunk.id for h in dense.retrieve(q, 5)])
              for q in QUERIES}
    col.add_documents([_doc(i, seed=9) for i in range(6, 12)])
    col.remove_document("d1")
    col.add_documents([_doc(2, seed=3)])
    after = {q: ([h.chunk.id for h in bm25.retrieve(q, 5)], [h.chunk.id for h in dense.retrieve(q, 5)])
             for q in QUERIES}
    assert after == before  # a reader holding the old retrievers sees the old version


def test_files_backend_compact_and_cli(store: CollectionStore, tmp_path: Path) -> None:
    emb = HashingEmbedder(64)
    col = store.create("cli", _config(emb), emb)
    col.add_documents([_doc(i) for i in range(10)])
    for i in range(10, 13):
        col.add_documents([_doc(i)])
    col.remove_document("d10")  # a tombstone, well under 20% of the rows
    backend = store.backend
    assert isinstance(backend, FilesBackend)
    summary = backend.compact("cli")
    assert summary["segments_before"] == 4 and summary["segments_after"] == 1 and summary["dead_rows_dropped"] > 0
    assert backend.compact("cli")["segments_after"] == 1  # nothing left to do
    assert not col.refresh() or len(col._state.segments) == 1
    env = {**os.environ, "CTXROUTE_HOME": str(tmp_path), "CTXROUTE_STORE": "", "COLUMNS": "200"}
    env.pop("CTXROUTE_STORE")
    col.add_documents([_doc(20)])
    proc = subprocess.run([sys.executable, "-m", "ctxroute", "collections", "compact", "cli"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "2 segments -> 1" in proc.stdout
    assert len(_manifest(col.path)["segments"]) == 1
    shown = subprocess.run([sys.executable, "-m", "ctxroute", "collections", "show", "cli"], env=env,
                           capture_output=True, text=True, timeout=120)
    assert shown.returncode == 0 and "segments 1  tombstones 0" in shown.stdout, shown.stderr
    proc = subprocess.run([sys.executable, "-m", "ctxroute", "collections", "compact", "nope"], env=env,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode != 0 and "nope" in proc.stdout + proc.stderr


def _write_format2(path: Path, col) -> None:
    """The layout a2d4028 wrote (format 2): one directory per version with every document;
    the same codec, vector and graph files, bm25s score arrays under sparse/."""
    st = col._state
    vdir = path / "versions" / "v000009"
    vdir.mkdir(parents=True)
    write_documents(vdir / DOCUMENTS_FILE, st.docs.values(), st.hashes)
    write_chunks(vdir, [st.chunks[d] for d in st.docs])
    (vdir / "sparse").mkdir()
    (vdir / "sparse" / "sparse_config.json").write_text(json.dumps({"config": col.config.sparse.to_dict(),
                                                                   "n": len(st.passages), "vocab": True}))
    st.dense.save(vdir)
    st.graph.save(vdir)
    manifest = {"format_version": 2, "name": path.name, "version": st.version, "created_at": st.created_at,
                "updated_at": st.updated_at, "config": col.config.to_dict(),
                "embedder": {"name": col.config.embedder_name, "dim": col.config.embedder_dim},
                "dense": {"dtype": "float16", "kind": "flat"}, "embedding": {"dtypes": ["float32"]},
                "counts": {"documents": len(st.docs), "passages": len(st.passages), "tokens": 1}}
    (vdir / "manifest.json").write_text(json.dumps(manifest))
    (path / "CURRENT").write_text("v000009\n")


def test_format2_collection_is_migrated_on_open_without_reembedding(tmp_path: Path) -> None:
    emb = CountingEmbedder(64)
    source = CollectionStore(tmp_path / "src").create("old", _config(emb), emb)
    source.add_documents([_doc(i) for i in range(5)])
    want = _results(source)
    store = CollectionStore(tmp_path / "collections")
    _write_format2(tmp_path / "collections" / "old", source)
    assert [i.name for i in store.list()] == ["old"]  # listed before it is migrated
    emb.seen.clear()
    col = store.open("old", emb)
    assert emb.seen == [] or all(q in QUERIES for q in emb.seen)  # nothing re-embedded
    assert col.version == source.version and _results(col) == want
    manifest = _manifest(col.path)
    assert manifest["format_version"] == 3 and len(manifest["segments"]) == 1
    col.add_documents([_doc(7)])
    assert len(store.open("old", emb)) == 6
    assert not (col.path / "versions" / "v000009").exists() or len(list((col.path / "versions").iterdir())) <= 2


def test_format1_is_still_refused(tmp_path: Path) -> None:
    emb = HashingEmbedder(64)
    store = CollectionStore(tmp_path)
    col = store.create("f1", _config(emb), emb)
    col.add_documents([_doc(1)])
    mpath = col.path / "versions" / (col.path / "CURRENT").read_text().strip() / "manifest.json"
    manifest = json.loads(mpath.read_text())
    manifest["format_version"] = 1
    mpath.write_text(json.dumps(manifest))
    with pytest.raises(ManifestMismatch, match="format version 1 but this code reads 3"):
        store.open("f1", emb)


# --- units ------------------------------------------------------------------------------
def test_row_segments_map_positions_through_dead_rows() -> None:
    rows = RowSegments((3, 4, 2))
    assert rows.n_live == 9
    cut = rows.without([1, 4, 5])  # seg0 row1, seg1 rows 1 and 2
    assert cut.n_live == 6 and rows.n_live == 9  # the original is unchanged
    assert [(s, r.tolist()) for s, r in cut.locate(range(6))] == [(0, [0, 2]), (1, [0, 3]), (2, [0, 1])]
    assert cut.positions(1, np.array([0, 3])).tolist() == [2, 3]
    merged = cut.merged(0, 2)
    assert merged.sizes == (4, 2) and merged.n_dead == 0
    assert RowSegments((2,)).without([0, 1]).merged(0, 1).sizes == ()


def test_sparse_and_dense_segments_equal_one_build() -> None:
    rng = np.random.default_rng(0)
    texts = [" ".join(rng.choice(WORDS, size=int(rng.integers(0, 20)))) for _ in range(120)]
    vecs = rng.normal(size=(120, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    sparse, dense = SparseIndex().build(texts[:50]), DenseIndex(16, hnsw_threshold=40)
    dense = dense.extended(vecs[:50])
    for a in range(50, 120, 35):
        sparse, dense = sparse.extended(texts[a:a + 35]), dense.extended(vecs[a:a + 35])
    gone = list(range(0, 120, 9))
    sparse, dense = sparse.without(gone), dense.without(gone)
    keep = [i for i in range(120) if i % 9]
    ref_sparse = SparseIndex().build([texts[i] for i in keep])
    ref_dense = DenseIndex(16, hnsw_threshold=10_000)
    ref_dense.add(vecs[keep])
    assert dense.kind == "hnsw" and dense.n_segments == 3  # the 50-row base went HNSW
    for q in QUERIES:
        np.testing.assert_allclose(sparse.scores(q), ref_sparse.scores(q), rtol=1e-6)
        np.testing.assert_array_equal(sparse.merged().scores(q), ref_sparse.scores(q))
    for v in vecs[:10]:
        exact = [p for p, _ in ref_dense.search(v, 5)]
        assert [p for p, _ in dense.merged().without([]).search(v, 5)][:1] == exact[:1]
        assert set(p for p, _ in dense.search(v, 5)) & set(exact)
    np.testing.assert_array_equal(dense.vectors, ref_dense.vectors)


def test_compaction_plan_is_size_tiered() -> None:
    def seg(n: int, dead: int = 0) -> SegmentInfo:
        ids = tuple(f"x{n}-{i}" for i in range(n))
        return SegmentInfo(ids, (1,) * n, frozenset(ids[:dead]))

    assert compaction_plan([seg(100)] + [seg(1)] * 7) is None  # 8 segments: fine
    assert compaction_plan([seg(100)] + [seg(1)] * 8) == (1, 9)  # the small ones merge, the base stays
    assert compaction_plan([seg(5)] + [seg(1)] * 8) == (0, 9)  # the small ones outweigh the base
    assert compaction_plan([seg(100, dead=30), seg(1)]) == (0, 2)  # > 20% dead: everything
    assert compaction_plan([]) is None


def test_reused_vectors_stay_right_through_replacements(store: CollectionStore) -> None:
    """The text -> passage map that spares re-embedding is carried from version to version;
    after replacements and removals every passage still has its own text's vector."""
    from ctxroute.retrievers.collection_config import index_text

    emb = CountingEmbedder(64)
    col = store.create("reuse", _config(emb), emb)
    col.add_documents([_doc(1), _doc(2)])
    col.add_documents([document_from_text(_doc(1).text, title="Doc 1", doc_id="d1-copy")])  # reuses d1's vectors
    col.add_documents([dataclasses.replace(_doc(1, seed=5), id="d1")])  # replace d1
    col.remove_document("d2")
    emb.seen.clear()
    col.add_documents([dataclasses.replace(_doc(2), id="d2-back")])  # d2's text again: its vectors are gone
    st = col._state
    for i, p in enumerate(st.passages):
        want = emb.embed([index_text(st.docs[p.doc_id], p)])[0]
        np.testing.assert_allclose(st.dense.vectors[i], want.astype(np.float16).astype(np.float32), atol=1e-6)


def test_refresh_reads_only_the_new_segments(store: CollectionStore, monkeypatch: pytest.MonkeyPatch) -> None:
    """A handle that another writer got ahead of catches up by reading the segments committed
    since its version (and applying their tombstones), and ends up equal to a fresh open."""
    from ctxroute.retrievers import persist

    emb = HashingEmbedder(64)
    mine = store.create("refresh", _config(emb), emb)
    mine.add_documents([_doc(i) for i in range(6)])
    mine._state.passage_with_text("warm")  # build the lookups, so they are carried too
    theirs = store.open("refresh", emb)
    theirs.add_documents([_doc(10), dataclasses.replace(_doc(2, seed=4), id="d2")])  # one add, one replace
    theirs.remove_document("d4")
    reads: list[str] = []
    real = persist._read_segment_docs
    monkeypatch.setattr(persist, "_read_segment_docs", lambda sdir, entry: reads.append(sdir.name) or real(sdir, entry))
    assert mine.refresh()
    assert len(reads) == 1  # only the segment the other writer added
    fresh = store.open("refresh", emb)
    assert mine.version == fresh.version and [p.id for p in mine.passages()] == [p.id for p in fresh.passages()]
    assert _results(mine) == _results(fresh)
    assert mine._state.segments == fresh._state.segments
    mine.add_documents([_doc(11)])  # and writes on from there
    theirs.compact()  # a compacted version does not extend ours: read whole
    reads.clear()
    assert mine.refresh() and _results(mine) == _results(store.open("refresh", emb))
    assert len(mine._state.segments) == 1


class _BackendDense:
    """A backend's own dense index (like pgvector's): searchable, its vectors readable, no segments."""

    def __init__(self, inner: DenseIndex) -> None:
        self.inner, self.dim, self.hnsw_threshold = inner, inner.dim, inner.hnsw_threshold

    def __len__(self) -> int:
        return len(self.inner)

    @property
    def vectors(self) -> np.ndarray:
        return self.inner.vectors

    def search(self, vector: np.ndarray, k: int = 10) -> list[tuple[int, float]]:
        return self.inner.search(vector, k)


def test_derive_with_a_backends_own_dense_index_keeps_sparse_incremental(store: CollectionStore) -> None:
    """What the postgres backend does: its states carry a dense index without segments. The
    next state still grows the sparse index by segments (merging past the bound) and rebuilds
    an in-memory dense index from the vectors for the backend to swap."""
    from ctxroute.retrievers.chunking import chunk_document
    from ctxroute.retrievers.collection_config import content_hash, index_text

    emb = HashingEmbedder(64)
    col = store.create("pg-like", _config(emb), emb)
    col.add_documents([_doc(i) for i in range(4)])
    st = dataclasses.replace(col._state, dense=_BackendDense(col._state.dense), segments=[], retrievers={})
    for i in range(4, 16):
        doc = _doc(i)
        dc = chunk_document(doc, col.config.chunking)
        docs, chunks, hashes = dict(st.docs), dict(st.chunks), dict(st.hashes)
        docs[doc.id], chunks[doc.id], hashes[doc.id] = doc, dc, content_hash(doc.text)
        vectors = emb.embed([index_text(doc, p) for p in dc.passages])
        nxt = next_state(col.config, st, docs, chunks, hashes, removed=set(), added=[(doc, dc)],
                         new_vectors=vectors, progress=None, seconds={})
        assert len(nxt.dense) == len(nxt.passages) == len(nxt.sparse)
        assert nxt.sparse.n_segments <= segments_mod.MAX_SEGMENTS
        st = dataclasses.replace(nxt, dense=_BackendDense(nxt.dense), retrievers={})  # the backend swaps it
    fresh = store.create("pg-like-fresh", _config(emb), emb)
    fresh.add_documents([st.docs[d] for d in st.docs])
    for q in QUERIES:
        assert st.sparse.search(q, 8) == fresh._state.sparse.search(q, 8)


def test_compact_on_a_backend_without_segments_folds_only_memory(store: CollectionStore) -> None:
    """A backend that keeps no segments (postgres) gets no commit from ``Collection.compact``:
    this process's indexes fold, the recorded version stays."""
    from ctxroute.retrievers.collection import Collection

    class NoSegments:  # the files backend minus ``compact``
        def __init__(self, inner: FilesBackend) -> None:
            self.inner, self.kind = inner, "other"

        def __getattr__(self, name: str):
            if name in ("compact", "load_since"):
                raise AttributeError(name)
            return getattr(self.inner, name)

    emb = HashingEmbedder(64)
    store.create("mem", _config(emb), emb)
    backend = NoSegments(store.backend)
    col = Collection(backend, "mem", _config(emb), emb, backend.load("mem", _config(emb)))
    col.add_documents([_doc(i) for i in range(6)])
    for i in range(6, 9):
        col.add_documents([_doc(i)])
    want, tag = _results(col), store.current("mem")
    assert col._state.sparse.n_segments == 4
    col.compact()
    assert col._state.sparse.n_segments == col._state.dense.n_segments == 1
    assert store.current("mem") == tag and col._state.version_dir == tag and not col.refresh()
    assert _results(col) == want


def test_live_files_count_the_manifest_and_every_listed_segment(store: CollectionStore) -> None:
    emb = HashingEmbedder(dim=32)
    col = store.create("sizes", _config(emb), emb)
    col.add_documents([_doc(1)])
    col.add_documents([_doc(2)])
    sizes = col.backend.live_files(col.name)
    seg_dirs = [p for p in (col.path / "segments").iterdir() if p.is_dir()]
    assert len(seg_dirs) == 2 and sizes["vectors.npy"] == sum((d / "vectors.npy").stat().st_size for d in seg_dirs)
    on_disk = sum(f.stat().st_size for d in seg_dirs for f in d.rglob("*") if f.is_file())
    assert sum(sizes.values()) - sizes["manifest.json"] == on_disk
