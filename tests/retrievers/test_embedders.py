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
    emb = SentenceTransformerEmbedder().load()
    head = "The annual report discusses revenue, costs and the outlook for the coming year. " * 30
    tail = "Penguins huddle together on the Antarctic ice to survive the winter storms."
    windows = emb._windows(head + tail)
    assert len(windows) >= 2 and windows[-1].endswith(tail) and windows[0].startswith("The annual")
    assert emb._windows("short text") == ["short text"]
    windowed = emb.embed([head + tail])[0]
    truncated = SentenceTransformerEmbedder(long_text="truncate").embed([head + tail])[0]
    probe = emb.embed(["penguins on antarctic ice"])[0]
    assert float(windowed @ probe) > float(truncated @ probe)  # the tail counts only with windows
    with pytest.raises(InputError, match="long_text"):
        SentenceTransformerEmbedder(long_text="drop")
