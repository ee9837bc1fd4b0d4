"""BM25 over passage texts: term counts in scipy sparse matrices, scored with bm25s's formulas
at query time (so the index can grow by segments with exact statistics), PyStemmer stemming.

Scoring variant: ``lucene`` by default (idf = log(1 + (N - df + .5)/(df + .5)), never zero, so
small collections still score common words). ``robertson`` matches rank_bm25's ``BM25Okapi``
ranking (same idf, tf part differs only by the constant factor k1 + 1).
Persistence: ``tf.npz`` (CSC term counts and text lengths), ``terms.json`` and
``sparse_config.json``. Nothing is pickled. Stop-word lists come from bm25s.
"""
from __future__ import annotations

import json
import math
import re
from dataclasses import asdict, dataclass
from functools import cached_property
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import scipy.sparse as sp

from ctxroute.errors import InputError, ManifestMismatch
from ctxroute.retrievers.segments import RowSegments, SegmentedIndex
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
_ARRAYS_FILE = "tf.npz"
_TERMS_FILE = "terms.json"
_SAVE_FORMAT = "tf-1"  # term counts; the bm25s score matrices of format-2 collections are not read


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


class _Terms:
    """One segment of a sparse index: term counts (CSC, texts x terms) and text lengths."""

    __slots__ = ("tf", "terms", "vocab", "lengths")

    def __init__(self, tf: sp.csc_matrix, terms: list[str], lengths: np.ndarray) -> None:
        self.tf = tf
        self.terms = terms
        self.vocab = {t: i for i, t in enumerate(terms)}
        self.lengths = lengths

    @classmethod
    def count(cls, token_lists: Sequence[Sequence[str]]) -> "_Terms":
        vocab: dict[str, int] = {}
        ids = [vocab.setdefault(t, len(vocab)) for toks in token_lists for t in toks]
        lengths = np.fromiter((len(toks) for toks in token_lists), dtype=np.int64, count=len(token_lists))
        rows = np.repeat(np.arange(len(token_lists), dtype=np.int64), lengths)
        tf = sp.coo_matrix((np.ones(len(ids), dtype=np.float32), (rows, np.asarray(ids, dtype=np.int64))),
                           shape=(len(token_lists), len(vocab))).tocsc()
        tf.sum_duplicates()
        return cls(tf, list(vocab), lengths.astype(np.float32))

    @classmethod
    def concat(cls, parts: Sequence[tuple["_Terms", np.ndarray | None]]) -> "_Terms":
        """The rows ``rows`` (None: all) of each part, in order, as one segment; terms left
        without any row are dropped (a fresh build over those rows has the same vocabulary)."""
        vocab: dict[str, int] = {}
        blocks, lengths = [], []
        n_rows = 0
        for part, rows in parts:
            col_map = np.asarray([vocab.setdefault(t, len(vocab)) for t in part.terms], dtype=np.int64)
            m = part.tf.tocsr()
            if rows is not None:
                m = m[rows]
            coo = m.tocoo()
            blocks.append((coo.data, coo.row.astype(np.int64) + n_rows, col_map[coo.col] if coo.nnz else coo.col))
            lengths.append(part.lengths if rows is None else part.lengths[rows])
            n_rows += m.shape[0]
        data = np.concatenate([b[0] for b in blocks]) if blocks else np.zeros(0, np.float32)
        row = np.concatenate([b[1] for b in blocks]) if blocks else np.zeros(0, np.int64)
        col = np.concatenate([b[2] for b in blocks]).astype(np.int64) if blocks else np.zeros(0, np.int64)
        terms = list(vocab)
        used = np.zeros(len(terms), dtype=bool)
        used[col] = True
        if not used.all():
            remap = np.cumsum(used) - 1
            col = remap[col]
            terms = [t for t, u in zip(terms, used) if u]
        tf = sp.coo_matrix((data.astype(np.float32), (row, col)), shape=(n_rows, len(terms))).tocsc()
        return cls(tf, terms, np.concatenate(lengths).astype(np.float32) if lengths else np.zeros(0, np.float32))


class SparseIndex(SegmentedIndex):
    """BM25 index over a list of texts; ``search`` returns (position, score), best first.

    The index keeps raw term counts per segment, not precomputed scores, so it can grow by a
    segment (``extended``) and lose rows (``without``) without touching the other texts, and
    still score with the statistics (N, document frequency, average length) of all live texts:
    a segmented index scores exactly like one built from scratch over the same texts.
    ``merged`` folds segments into one. The formulas are bm25s's (``lucene``, ``robertson``,
    ``atire``), which bakes idf into a stored score matrix and so cannot grow in place.
    """

    def __init__(self, config: SparseConfig | None = None) -> None:
        self.config = config or SparseConfig()
        self.tokenize = Tokenizer(self.config)
        self._segs: tuple[_Terms, ...] = ()
        self._rows = RowSegments()
        self._total_len = 0.0

    def __len__(self) -> int:
        return self._rows.n_live

    # --- building -------------------------------------------------------------------
    _APPEND_NEEDS = "built with the same settings"

    @staticmethod
    def _seg_len(seg: _Terms) -> int:
        return int(seg.tf.shape[0])

    def _same_kind(self, other: "SparseIndex") -> bool:
        return other.config == self.config

    def _with(self, segs: Sequence[_Terms], rows: RowSegments) -> "SparseIndex":
        other = SparseIndex.__new__(SparseIndex)
        other.config, other.tokenize = self.config, self.tokenize
        other._segs, other._rows = tuple(segs), rows
        other._total_len = float(sum(
            float(s.lengths.sum()) if rows.live_mask(i) is None else float(s.lengths[rows.live_mask(i)].sum())
            for i, s in enumerate(segs)))
        return other

    def build(self, texts: Sequence[str]) -> "SparseIndex":
        """(Re)build the index from scratch; positions in ``search`` results index ``texts``."""
        built = self._with((), RowSegments()).extended(texts)
        self._segs, self._rows, self._total_len = built._segs, built._rows, built._total_len
        return self

    def extended(self, texts: Sequence[str]) -> "SparseIndex":
        """A new index: this one plus ``texts`` as a new segment (positions continue from
        ``len(self)``). Only ``texts`` are tokenised; this index is unchanged."""
        if not texts:
            return self._with(self._segs, self._rows)
        seg = _Terms.count([self.tokenize(t) for t in texts])
        return self._with((*self._segs, seg), self._rows.appended(len(texts)))

    def merged(self, start: int = 0, stop: int | None = None) -> "SparseIndex":
        """A new index with segments ``start:stop`` (default all) folded into one holding their
        live texts; the same scores, fewer segments."""
        stop = len(self._segs) if stop is None else stop
        if stop - start < 1 or (stop - start == 1 and self._rows.dead[start] is None):
            return self._with(self._segs, self._rows)
        parts = [(self._segs[i], None if self._rows.dead[i] is None else self._rows.live_rows(i))
                 for i in range(start, stop)]
        seg = _Terms.concat(parts)
        segs = (*self._segs[:start], *((seg,) if seg.tf.shape[0] else ()), *self._segs[stop:])
        return self._with(segs, self._rows.merged(start, stop))

    @classmethod
    def joined(cls, parts: Sequence["SparseIndex"], dead: Sequence[np.ndarray | None],
               config: SparseConfig | None = None) -> "SparseIndex":
        """One index over single-segment ``parts`` (as ``part`` gives them), rows marked in
        ``dead`` (a bool mask per part, or None) left out of searches."""
        base = cls(config or (parts[0].config if parts else None))
        if any(p.n_segments != 1 for p in parts):
            raise InputError("SparseIndex.joined takes non-empty single-segment parts")
        for p in parts:
            if p.config != base.config:
                raise ManifestMismatch(f"sparse segments built with {p.config} and {base.config} cannot be joined")
        segs = [p._segs[0] for p in parts]
        sizes = [int(s.tf.shape[0]) for s in segs]
        return base._with(segs, RowSegments(sizes, dead))

    # --- searching ------------------------------------------------------------------
    def _idf(self, df: int, n: int) -> float:
        method = self.config.method
        if method == "lucene":
            return math.log(1 + (n - df + 0.5) / (df + 0.5))
        if method == "robertson":
            return math.log(max((n - df + 0.5) / (df + 0.5), 1.0))
        return math.log(n / df)  # atire

    def scores(self, query: str) -> np.ndarray:
        """BM25 score of every indexed text for ``query`` (zeros when no query term is known)."""
        n = len(self)
        out = np.zeros(n, dtype=np.float32)
        if n == 0 or self._total_len <= 0:
            return out
        avgdl = np.float64(self._total_len / n)
        k1, b = self.config.k1, self.config.b
        weights: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
        for term in self.tokenize(query):
            if not term:
                continue
            if term not in weights:
                postings = []
                df = 0
                for i, seg in enumerate(self._segs):
                    j = seg.vocab.get(term)
                    if j is None:
                        continue
                    lo, hi = seg.tf.indptr[j], seg.tf.indptr[j + 1]
                    rows, tf = seg.tf.indices[lo:hi], seg.tf.data[lo:hi]
                    live = self._rows.live_mask(i)
                    if live is not None:
                        keep = live[rows]
                        rows, tf = rows[keep], tf[keep]
                    if rows.size:
                        postings.append((i, rows, tf))
                        df += rows.size
                parts = []
                if df:
                    idf = np.float32(self._idf(df, n))  # bm25s keeps idf as float32
                    for i, rows, tf in postings:
                        dl = self._segs[i].lengths[rows]
                        if self.config.method == "atire":
                            tfc = (tf * (k1 + 1)) / (tf + k1 * (1 - b + b * dl / avgdl))
                        else:
                            tfc = tf / (k1 * ((1 - b) + b * dl / avgdl) + tf)
                        parts.append((self._rows.positions(i, rows), (idf * tfc).astype(np.float32)))
                weights[term] = parts
            for pos, w in weights[term]:
                out[pos] += w  # positions are distinct within one term
        return out

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

    # --- persistence ----------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write the live texts' term counts as one segment: ``tf.npz`` (CSC arrays and text
        lengths, ``np.savez``, no pickle), ``terms.json`` and ``sparse_config.json``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        one = self.merged() if len(self._segs) > 1 or self._rows.n_dead else self
        meta = {"config": self.config.to_dict(), "n": len(self), "format": _SAVE_FORMAT}
        if one._segs:
            seg = one._segs[0]
            np.savez(directory / _ARRAYS_FILE, indptr=seg.tf.indptr.astype(np.int64),
                     indices=seg.tf.indices.astype(np.int32), counts=seg.tf.data.astype(np.int32),
                     lengths=seg.lengths.astype(np.int32))
            (directory / _TERMS_FILE).write_text(json.dumps(seg.terms, ensure_ascii=False, separators=(",", ":")),
                                                 encoding="utf-8")
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
        n = int(meta["n"])
        if meta.get("format") != _SAVE_FORMAT:
            raise ManifestMismatch(f"sparse index at {directory} is in the bm25s score format of an older "
                                   "ctxroute; rebuild it from the texts", path=str(directory))
        if n:
            with np.load(directory / _ARRAYS_FILE, allow_pickle=False) as z:
                indptr, indices, counts, lengths = z["indptr"], z["indices"], z["counts"], z["lengths"]
            terms = json.loads((directory / _TERMS_FILE).read_text(encoding="utf-8"))
            if len(lengths) != n or len(indptr) != len(terms) + 1:
                raise ManifestMismatch(f"sparse index at {directory} is damaged ({len(lengths)} texts, "
                                       f"{n} expected); rebuild it from the texts", path=str(directory))
            tf = sp.csc_matrix((counts.astype(np.float32), indices, indptr), shape=(n, len(terms)))
            seg = _Terms(tf, [str(t) for t in terms], lengths.astype(np.float32))
            index._segs, index._rows = (seg,), RowSegments((n,))
            index._total_len = float(seg.lengths.sum())
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
