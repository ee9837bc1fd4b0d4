from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ctxroute.errors import InputError, ManifestMismatch
from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.dense import DenseIndex, DenseRetriever
from ctxroute.retrievers.embedders import HashingEmbedder
from ctxroute.types import Chunk, Level


def _unit(n: int, dim: int, seed: int = 0) -> np.ndarray:
    v = np.random.default_rng(seed).normal(size=(n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def test_flat_search_matches_bruteforce() -> None:
    vecs = _unit(50, 16)
    index = DenseIndex(16)
    index.add(vecs[:20])
    index.add(vecs[20:])
    q = _unit(1, 16, seed=9)[0]
    expected = np.argsort(-(vecs @ q))[:5]
    hits = index.search(q, 5)
    assert [i for i, _ in hits] == [int(i) for i in expected]
    # vectors are kept at float16 precision: scores agree with float32 to ~1e-3
    assert hits[0][1] == pytest.approx(float(vecs[expected[0]] @ q), abs=2e-3)
    assert index.kind == "flat"


def test_vectors_are_stored_once_as_float16(tmp_path: Path) -> None:
    vecs = _unit(30, 16)
    index = DenseIndex(16)
    index.add(vecs)
    index.save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dense.json", "vectors.npy"]  # no dense.faiss copy
    stored = np.load(tmp_path / "vectors.npy", allow_pickle=False)
    assert stored.dtype == np.float16 and stored.shape == (30, 16)
    loaded = DenseIndex.load(tmp_path, dim=16)
    np.testing.assert_array_equal(loaded.vectors, index.vectors)  # what was searched before saving
    q = _unit(1, 16, seed=4)[0]
    assert loaded.search(q, 30) == index.search(q, 30)
    np.testing.assert_allclose(loaded.vectors, vecs, atol=1e-3)


def test_k_larger_than_n_never_yields_minus_one() -> None:
    index = DenseIndex(8)
    index.add(_unit(3, 8))
    hits = index.search(_unit(1, 8, 5)[0], 10)
    assert sorted(i for i, _ in hits) == [0, 1, 2]
    assert all(i >= 0 for i, _ in hits)


def test_hnsw_path_returns_no_padding(tmp_path: Path) -> None:
    # HNSW can return fewer than k results on tiny graphs: -1 labels must be dropped
    vecs = _unit(40, 8)
    index = DenseIndex(8, hnsw_threshold=10)
    index.add(vecs)
    assert index.kind == "hnsw"
    q = vecs[7]
    hits = index.search(q, 100)
    assert hits[0][0] == 7 and all(0 <= i < 40 for i, _ in hits)
    index.save(tmp_path)
    assert not (tmp_path / "vectors.npy").exists()  # the HNSW index file holds the only copy
    loaded = DenseIndex.load(tmp_path)
    assert loaded.kind == "hnsw" and loaded.search(q, 1)[0][0] == 7
    np.testing.assert_array_equal(loaded.vectors, index.vectors)


def test_crossing_threshold_switches_to_hnsw() -> None:
    index = DenseIndex(8, hnsw_threshold=5)
    index.add(_unit(5, 8))
    assert index.kind == "flat"
    index.add(_unit(2, 8, 3))
    assert index.kind == "hnsw" and len(index) == 7


def test_empty_index_and_bad_shapes() -> None:
    index = DenseIndex(4)
    assert index.search(np.ones(4, dtype=np.float32), 3) == []
    index.add(np.zeros((0, 4), dtype=np.float32))
    assert len(index) == 0
    with pytest.raises(InputError, match=r"\(n, 4\)"):
        index.add(np.ones((2, 5), dtype=np.float32))
    with pytest.raises(InputError):
        index.search(np.ones(4, dtype=np.float32), 0)


def test_remove_rebuilds_from_stored_vectors(tmp_path: Path) -> None:
    vecs = _unit(6, 8)
    index = DenseIndex(8)
    index.add(vecs)
    index.remove([1, 3])
    assert len(index) == 4
    np.testing.assert_array_equal(index.vectors, vecs[[0, 2, 4, 5]].astype(np.float16).astype(np.float32))
    assert index.search(vecs[4], 1)[0][0] == 2  # positions shift down
    index.save(tmp_path)
    assert np.load(tmp_path / "vectors.npy", allow_pickle=False).shape == (4, 8)
    loaded = DenseIndex.load(tmp_path, dim=8)
    assert loaded.search(vecs[5], 1)[0][0] == 3
    with pytest.raises(ManifestMismatch, match="dimension 8"):
        DenseIndex.load(tmp_path, dim=16)


def test_dense_retriever() -> None:
    texts = ["the notice period is thirty days", "payment is due monthly", "photosynthesis in plants"]
    passages = [Chunk(f"p{i}", "d", Level.PASSAGE, 0, len(t), None, i) for i, t in enumerate(texts)]
    emb = HashingEmbedder(dim=128)
    index = DenseIndex(emb.dim)
    index.add(emb.embed(texts))
    retriever = DenseRetriever(index, emb, passages)
    assert isinstance(retriever, Retriever)
    hits = retriever.retrieve("payment due", k=10)
    assert hits[0].chunk.id == "p1" and hits[0].retriever == "dense" and hits[0].ranks["dense"] == 1
    assert len(hits) == 3
    with pytest.raises(ManifestMismatch):
        DenseRetriever(index, HashingEmbedder(dim=64), passages)


def test_of_vectors_defers_faiss_and_searches_like_add() -> None:
    rng = np.random.default_rng(3)
    vecs = rng.normal(size=(300, 16)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    lazy = DenseIndex.of_vectors(16, vecs)
    assert all(seg.faiss is None for seg in lazy._segs)  # nothing built for a commit that only needs rows
    np.testing.assert_array_equal(lazy.vectors, vecs.astype(np.float16).astype(np.float32))
    built = DenseIndex(16)
    built.add(vecs)
    assert lazy.search(vecs[7], 5) == built.search(vecs[7], 5)
    assert len(DenseIndex.of_vectors(16, np.zeros((0, 16), np.float32))) == 0
