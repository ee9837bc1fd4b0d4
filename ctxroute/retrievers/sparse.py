"""BM25 over passage texts, on ``bm25s`` (sparse score matrix), with PyStemmer stemming.

Scoring variant: ``lucene`` by default (idf = log(1 + (N - df + .5)/(df + .5)), never zero, so
small collections still score common words). ``robertson`` matches rank_bm25's ``BM25Okapi``
ranking (same idf, tf part differs only by the constant factor k1 + 1).
Persistence: bm25s's own ``save`` (``np.save(allow_pickle=False)`` arrays + JSON vocab/params),
plus ``sparse_config.json``. Nothing is pickled.
"""
from __future__ import annotations

import json
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ctxroute.errors import InputError, ManifestMismatch
from ctxroute.types import Chunk, ScoredChunk

_TOKEN = re.compile(r"\w+", re.UNICODE)
_NUMBER = re.compile(r"(?<![\w.,])(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?![\w]|[.,]\d)")


def _canonical_number(m: re.Match[str]) -> str:
    """``1,577.0`` -> ``1577``; ``2.50`` -> ``2_5`` (one token; "_" is a word character)."""
    t = m.group().replace(",", "")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    t = t.lstrip("0") or "0"
    return t.replace(".", "_") if not t.startswith(".") else "0" + t.replace(".", "_")
_METHODS = ("robertson", "lucene", "atire")
_CONFIG_FILE = "sparse_config.json"


@dataclass(frozen=True)
class SparseConfig:
    """BM25 settings. ``stemmer`` is a PyStemmer language or None; ``stopwords`` is a bm25s
    stop-word list name ("en", "en_plus", "german", ...) or None."""

    stemmer: str | None = "english"
    stopwords: str | None = "en"
    k1: float = 1.5
    b: float = 0.75
    method: str = "lucene"
    # numbers as one canonical token: "$1,577", "1577" and "1,577.0" -> "1577", "2.29" -> "2_29";
    # indexes saved before this setting existed read as False (their tokens split "1,577" in two)
    numbers: bool = True

    def __post_init__(self) -> None:
        if self.method not in _METHODS:
            raise InputError(f"BM25 method {self.method!r} is not one of {_METHODS}", method=self.method)
        if self.k1 < 0 or not 0 <= self.b <= 1:
            raise InputError(f"BM25 needs k1 >= 0 and 0 <= b <= 1, got k1={self.k1}, b={self.b}", k1=self.k1, b=self.b)
        if self.stemmer is not None:
            import Stemmer

            if self.stemmer not in Stemmer.algorithms():
                raise InputError(
                    f"unknown stemmer {self.stemmer!r}; use one of Stemmer.algorithms() or None",
                    stemmer=self.stemmer,
                )
        if self.stopwords is not None:
            _stopword_list(self.stopwords)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "SparseConfig":
        kwargs = {k: data[k] for k in ("stemmer", "stopwords", "k1", "b", "method", "numbers") if k in data}
        kwargs.setdefault("numbers", False)  # saved before number tokens existed
        return cls(**kwargs)


def _stopword_list(name: str) -> frozenset[str]:
    import bm25s.stopwords as sw

    attr = {"en": "STOPWORDS_EN", "en_plus": "STOPWORDS_EN_PLUS", "english": "STOPWORDS_EN"}.get(
        name.lower(), f"STOPWORDS_{name.upper()}"
    )
    words = getattr(sw, attr, None)
    if words is None:
        known = sorted(n.removeprefix("STOPWORDS_").lower() for n in dir(sw) if n.startswith("STOPWORDS_"))
        raise InputError(f"unknown stop-word list {name!r}; use one of {known} or None", stopwords=name)
    return frozenset(words)


class Tokenizer:
    """Lower-cased word tokens, stop words dropped, then stemmed. Same for passages and queries."""

    def __init__(self, config: SparseConfig) -> None:
        self.config = config
        self._stop = _stopword_list(config.stopwords) if config.stopwords else frozenset()

    @cached_property
    def _stemmer(self) -> Any:
        if self.config.stemmer is None:
            return None
        import Stemmer

        return Stemmer.Stemmer(self.config.stemmer)

    def __call__(self, text: str) -> list[str]:
        if self.config.numbers:
            text = _NUMBER.sub(_canonical_number, text)
        words = [w for w in _TOKEN.findall(text.lower()) if w not in self._stop]
        if self._stemmer is not None:
            words = self._stemmer.stemWords(words)
        return words


class SparseIndex:
    """BM25 index over a list of texts; ``search`` returns (position, score), best first."""

    def __init__(self, config: SparseConfig | None = None) -> None:
        self.config = config or SparseConfig()
        self.tokenize = Tokenizer(self.config)
        self._bm25: Any = None
        self._n = 0

    def __len__(self) -> int:
        return self._n

    def build(self, texts: Sequence[str]) -> "SparseIndex":
        """(Re)build the index from scratch; positions in ``search`` results index ``texts``."""
        self._n = len(texts)
        if not texts:
            self._bm25 = None
            return self
        import bm25s

        corpus = [self.tokenize(t) for t in texts]
        if not any(corpus):  # only stop words (e.g. "a"): no vocabulary, every score is 0
            self._bm25 = None
            return self
        bm25 = bm25s.BM25(k1=self.config.k1, b=self.config.b, method=self.config.method)
        bm25.index(corpus, show_progress=False)
        self._bm25 = bm25
        return self

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every indexed text for ``query`` (zeros when no query term is known)."""
        if self._bm25 is None:
            return np.zeros(self._n, dtype=np.float32)
        vocab = self._bm25.vocab_dict
        ids = [vocab[t] for t in self.tokenize(query) if t in vocab and t != ""]
        if not ids:
            return np.zeros(self._n, dtype=np.float32)
        return np.asarray(self._bm25.get_scores_from_ids(ids), dtype=np.float32)

    def search(self, query: str, k: int = 10) -> list[tuple[int, float]]:
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}", k=k)
        scores = self.scores(query)
        if scores.size == 0:
            return []
        k = min(k, scores.size)
        if k < scores.size:  # top k without sorting every score; ties at the cut all kept, so
            top = np.argpartition(-scores, k - 1)[:k]  # the order equals a stable full sort's
            cut = scores[top].min()
            top = np.flatnonzero(scores >= cut) if cut > 0 else np.flatnonzero(scores > 0)
        else:
            top = np.arange(scores.size)
        order = top[np.lexsort((top, -scores[top]))][:k]
        return [(int(i), float(scores[i])) for i in order if scores[i] > 0]

    def save(self, directory: Path) -> None:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        meta = {"config": self.config.to_dict(), "n": self._n, "vocab": self._bm25 is not None}
        if self._bm25 is not None:
            self._bm25.save(str(directory), allow_pickle=False, show_progress=False)
        (directory / _CONFIG_FILE).write_text(json.dumps(meta, indent=2), encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, config: SparseConfig | None = None) -> "SparseIndex":
        """Load a saved index; when ``config`` is given it must match the saved one."""
        directory = Path(directory)
        meta = json.loads((directory / _CONFIG_FILE).read_text(encoding="utf-8"))
        saved = SparseConfig.from_dict(meta["config"])
        if config is not None and config != saved:
            raise ManifestMismatch(
                f"sparse index at {directory} was built with {saved}, but {config} was requested; "
                "rebuild the index or use the stored settings",
                saved=str(saved),
                requested=str(config),
            )
        index = cls(saved)
        index._n = int(meta["n"])
        if index._n and meta.get("vocab", True):
            import bm25s

            index._bm25 = bm25s.BM25.load(str(directory), mmap=False, allow_pickle=False, show_progress=False)
        return index


class SparseRetriever:
    """Retriever over passages with a ``SparseIndex`` built on their texts (same order)."""

    name = "bm25"

    def __init__(self, index: SparseIndex, passages: Sequence[Chunk]) -> None:
        if len(index) != len(passages):
            raise InputError(
                f"sparse index holds {len(index)} texts but {len(passages)} passages were given; "
                "build the index from exactly these passages",
            )
        self.index = index
        self.passages = passages

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]:
        hits = self.index.search(query, k)
        return [
            ScoredChunk(self.passages[i], score, self.name, ranks={self.name: rank}, scores={self.name: score})
            for rank, (i, score) in enumerate(hits, start=1)
        ]
