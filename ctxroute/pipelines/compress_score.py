"""The compressor's per-sentence signals, each a pure function of texts, offsets and hits.

- :func:`passage_scores`: the retrieval score of the passages that hold a sentence
  (``collection.search``: the fused bm25 + dense + graph score, divided by the best hit's);
- :func:`lexical_scores`: the IDF-weighted share of the question's content terms a sentence
  contains (``ctxroute.router.answer.content_terms``: stemmed, stop words dropped), IDF counted
  over the sentences in scope; terms the question puts in quotes ("Expiration Date") weigh
  ``quote_boost`` x more: a quoted phrase is what the question is about;
- :func:`lead_scores`: a prior on a document's opening (title, parties, dates, abstract), 1 at
  the first token falling linearly to 0 at ``lead_tokens``;
- :func:`hit_ranks`: the rank of the best hit holding a sentence (the order weak units follow);
- :func:`dense_scores`: the embedding match of the retrieved passages' sentences (optional).

:func:`ctxroute.pipelines.compress.select_sentences` adds them up with the config's weights.
"""
from __future__ import annotations

import bisect
import math
import re
from typing import Iterable, Protocol, Sequence

import numpy as np

from ctxroute.pipelines.result import Corpus
from ctxroute.router.answer import _WORD, _stem_fn, _stopwords, content_terms  # one definition of a term
from ctxroute.types import Chunk, Document, ScoredChunk

_DIGIT = re.compile(r"\d")
# straight or curly double quotes around 2-80 characters; single quotes are apostrophes too often
_QUOTED = re.compile(r'"([^"\n]{2,80})"|\u201c([^\u201d\n]{2,80})\u201d')


class DocLike(Protocol):
    """What the scorers read of one document: ``doc`` and its ``sentences`` in offset order
    (``ctxroute.pipelines.compress.DocSentences``)."""

    doc: Document
    sentences: Sequence[Chunk]


def passage_scores(hits: Sequence[ScoredChunk], docs: Sequence[DocLike]) -> dict[str, np.ndarray]:
    """Per document, each sentence's best hit score (divided by the top hit's score)."""
    out = {d.doc.id: np.zeros(len(d.sentences), dtype=np.float64) for d in docs}
    if not hits:
        return out
    top = max(h.score for h in hits) or 1.0
    starts = {d.doc.id: [s.start for s in d.sentences] for d in docs}
    ends = {d.doc.id: [s.end for s in d.sentences] for d in docs}
    for h in hits:
        c = h.chunk
        if c.doc_id not in out:
            continue
        lo = bisect.bisect_right(ends[c.doc_id], c.start)
        hi = bisect.bisect_left(starts[c.doc_id], c.end)
        if hi > lo:
            arr = out[c.doc_id]
            arr[lo:hi] = np.maximum(arr[lo:hi], max(0.0, h.score) / top)
    return out


def held_by(starts: Sequence[int], chunk: Chunk) -> range:
    """Indexes of the sentences (by their sorted ``starts``) that ``chunk`` holds: those starting
    inside it (a passage is whole sentences, so it starts where its first one does)."""
    return range(bisect.bisect_left(starts, chunk.start), bisect.bisect_left(starts, chunk.end))


def hit_ranks(hits: Sequence[ScoredChunk], docs: Sequence[DocLike]) -> dict[str, np.ndarray]:
    """Per document, the rank (0 = top) of the best hit holding each sentence; ``inf`` for
    sentences no hit holds."""
    out = {d.doc.id: np.full(len(d.sentences), np.inf) for d in docs}
    starts = {d.doc.id: [s.start for s in d.sentences] for d in docs}
    for r, h in enumerate(hits):
        c = h.chunk
        if c.doc_id not in out:
            continue
        held = held_by(starts[c.doc_id], c)
        arr = out[c.doc_id]
        arr[held.start:held.stop] = np.minimum(arr[held.start:held.stop], r)
    return out


def _terms_of(vocab: Iterable[str], prefixes: set[str] | None = None) -> dict[str, str]:
    """Surface word -> content term, by the rules of ``content_terms`` (stop words and 1-letter
    words dropped, numbers without thousands separators, the rest stemmed in one batch).
    ``prefixes``: stem only words starting with one of these (3-letter) prefixes: a stem keeps
    its word's first letters, so no other word can share a stem with the question's terms."""
    stop = _stopwords()
    out: dict[str, str] = {}
    plain: list[str] = []
    for w in vocab:
        if _DIGIT.search(w):
            out[w] = w.replace(",", "")
            continue
        v = w.replace("'", "") if "'" in w else w
        if len(v) >= 2 and (prefixes is None or v[:3] in prefixes) and v not in stop:
            plain.append(w)
    stems = _stem_fn()([w.replace("'", "") for w in plain])
    out.update(zip(plain, stems))
    return out


def quoted_terms(question: str) -> set[str]:
    """Content terms inside double quotes in the question."""
    out: set[str] = set()
    for m in _QUOTED.finditer(question):
        out |= content_terms(m.group(1) or m.group(2))
    return out


def lexical_scores(question: str, texts: Sequence[str], *, quote_boost: float = 1.0) -> np.ndarray:
    """IDF-weighted share of the question's content terms each text contains (quoted terms
    weigh ``quote_boost`` x). Each distinct word is stemmed once, so 100k tokens take one regex
    pass and set intersections."""
    q = content_terms(question)
    if not q or not texts:
        return np.zeros(len(texts), dtype=np.float64)
    boosted = quoted_terms(question) if quote_boost != 1.0 else set()
    words = [set(_WORD.findall(t.lower())) for t in texts]
    vocab: set[str] = set().union(*words)
    hit = {w: t for w, t in _terms_of(vocab, {t[:3] for t in q}).items() if t in q}
    keys = hit.keys()
    has = [{hit[w] for w in (ws & keys)} for ws in words]
    n = len(texts)
    df = {t: sum(1 for h in has if t in h) for t in q}
    idf = {t: math.log(1.0 + n / (1.0 + df[t])) * (quote_boost if t in boosted else 1.0) for t in q}
    total = sum(idf.values()) or 1.0
    return np.asarray([sum(idf[t] for t in h) / total for h in has], dtype=np.float64)


def lead_scores(n_tokens: Sequence[int], lead_tokens: int) -> np.ndarray:
    """1 at a document's first token, falling linearly to 0 at ``lead_tokens`` (by the tokens
    before each sentence)."""
    if lead_tokens <= 0 or not n_tokens:
        return np.zeros(len(n_tokens), dtype=np.float64)
    before = np.concatenate(([0], np.cumsum(np.asarray(n_tokens[:-1], dtype=np.float64))))
    return np.clip(1.0 - before / float(lead_tokens), 0.0, None)


def dense_scores(question: str, corpus: Corpus, docs: Sequence[DocLike],
                 hits: Sequence[ScoredChunk]) -> dict[str, np.ndarray] | None:
    """Cosine of the question with each sentence of the retrieved passages (0 elsewhere), by
    ``collection.sentence_vectors``; ``None`` when the collection has no sentence encoder."""
    coll = corpus.collection
    vectors = getattr(coll, "sentence_vectors", None)
    encoder = getattr(coll, "query_embedder", None) or getattr(coll, "embedder", None)
    if not callable(vectors) or encoder is None:
        return None
    by_doc = {d.doc.id: d for d in docs}
    starts = {d.doc.id: [s.start for s in d.sentences] for d in docs}  # once per document, not per hit
    want: list[tuple[str, int]] = []
    for h in hits:
        if h.chunk.doc_id in by_doc:
            want.extend((h.chunk.doc_id, i) for i in held_by(starts[h.chunk.doc_id], h.chunk))
    want = list(dict.fromkeys(want))
    out = {d.doc.id: np.zeros(len(d.sentences)) for d in docs}
    if not want:
        return out
    q = np.asarray(encoder.embed([question]), dtype=np.float32)[0]
    v = np.asarray(vectors([by_doc[did].sentences[i].text_of(by_doc[did].doc) for did, i in want]), dtype=np.float32)
    denom = np.linalg.norm(v, axis=1) * (np.linalg.norm(q) or 1.0)
    cos = (v @ q) / np.where(denom == 0, 1.0, denom)
    for (did, i), c in zip(want, cos):
        out[did][i] = float(c)
    return out


def smooth_neighbours(s: np.ndarray, window: int, decay: float) -> np.ndarray:
    """Each sentence gets at least ``decay ** d`` x the score of a sentence ``d <= window`` away."""
    smooth = s.copy()
    for w in range(1, window + 1):
        share = decay**w
        smooth[w:] = np.maximum(smooth[w:], share * s[:-w])
        smooth[:-w] = np.maximum(smooth[:-w], share * s[w:])
    return smooth


__all__ = [
    "dense_scores",
    "held_by",
    "hit_ranks",
    "lead_scores",
    "lexical_scores",
    "passage_scores",
    "quoted_terms",
    "smooth_neighbours",
]
