"""Extractive reader (no LLM): the best-supported source sentences, quoted with citations.

Candidates are the sentences of the top retrieved passages (page furniture is not a sentence:
the chunker excludes it), deduplicated by text; headings and fragments are skipped. Each is
scored against the question by a BM25-style overlap (idf over the candidate sentences, stemmed
content tokens) and, when the collection has an embedder, the cosine between question and
sentence; then weighted by whether it holds what the question asks for (a number for "how
much"/"how many"/"what was the revenue", a date for "when") and how many of the question's
key terms (names, multi-word terms, numbers) it contains. Used when no LLM is configured, as
the fallback when the LLM fails, and as an evaluation baseline.
"""
from __future__ import annotations

import math
import re
import time
from collections import Counter
from dataclasses import dataclass

import numpy as np

from ctxroute.pipelines.citations import content_tokens
from ctxroute.pipelines.packing import SentenceMap, SentenceRef
from ctxroute.pipelines.result import CollectionLike, Corpus, StrategyResult
from ctxroute.retrievers.base import Embedder
from ctxroute.retrievers.keyterms import STOPWORDS, extract_keyterms, normalise_term
from ctxroute.retrievers.layout import is_table_row
from ctxroute.types import Chunk, Citation, Route, ScoredChunk


@dataclass(frozen=True)
class ExtractiveConfig:
    k: int = 8  # passages to read
    n_sentences: int = 2  # sentences in the answer
    lexical_weight: float = 0.5  # the rest goes to the embedding cosine
    min_score: float = 0.15  # below this the reader abstains
    relative_cutoff: float = 0.75  # further sentences need at least this share of the best score
    retriever: str = "hybrid"
    k1: float = 1.2
    b: float = 0.75
    missing_type_factor: float = 0.5  # score kept by a sentence without the asked-for type
    keyterm_weight: float = 0.3  # bonus for the share of the question's key terms present


@dataclass(frozen=True)
class ScoredSentence:
    sentence: Chunk
    score: float  # ranks the candidates: the support below, weighted by asked-for type and key terms
    lexical: float
    cosine: float
    support: float = 0.0  # lexical/cosine mix alone: the abstention and cut-off thresholds apply to it


_ASKS_NUMBER = re.compile(
    r"\bhow\s+(?:much|many|large|big|high|low)\b|\bwhat\s+(?:percentage|proportion|share|amount|number|portion|"
    r"fraction|ratio|rate|price|value|total)\b|\b(?:what|which)\s+(?:was|were|is|are)\s+(?:the\s+)?(?:\w+\W+){0,4}?"
    r"(?:revenue|revenues|sales|income|expenses?|margin|cash|costs?|price|earnings|eps|dividends?|debt|assets|"
    r"liabilities|amount|total|figures?|balance|profit|loss|spending|capex|value)\b",
    re.IGNORECASE,
)
_ASKS_DATE = re.compile(r"^\s*when\b|\bwhat\s+(?:date|year|day|month|time)\b|\bin\s+which\s+year\b", re.IGNORECASE)
# an amount, not any digit: "$36,413", "1,577", "12.5 %", "$4.1 billion", "(617)"; a legal
# citation ("18 U.S.C. Section 1350") or a date is not what "how much" asks for
_HAS_NUMBER = re.compile(
    r"[$€£¥]\s*\(?\d|\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?\s*(?:%|percent|per\s*cent|million|billion|thousand|bn\b)"
    r"|\d+\.\d+|\(\d[\d,]*\)",
    re.IGNORECASE,
)
_HAS_DATE = re.compile(
    r"\b(?:1[5-9]\d\d|20\d\d)\b|\b(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\.?\s+\d{1,2}\b|"
    r"\b\d{1,2}\s+(?:jan|feb|mar|apr|may|jun|jul|aug|sep|oct|nov|dec)[a-z]*\b|\b\d{1,2}/\d{1,2}/\d{2,4}\b",
    re.IGNORECASE,
)


def asked_type(question: str) -> str:
    """``"date"``, ``"number"`` or ``""``: what kind of value the question asks for."""
    if _ASKS_DATE.search(question):
        return "date"
    if _ASKS_NUMBER.search(question):
        return "number"
    return ""


_COUNTED = re.compile(r"(?:([A-Za-z.§]+)\s+)?\b\d+(?:\.\d+)?\s+([a-z]{3,})\b")
_NOT_A_QUANTITY = frozenset(
    "section sections note item part exhibit page pages rule chapter article schedule form u.s.c §".split()
)


def has_type(text: str, kind: str) -> bool:
    """Whether ``text`` holds what a question of ``kind`` asks for: a date, or an amount
    ("$36,413", "12.5 %", "$4.1 billion", "812 millimetres"; not "Section 1350")."""
    if kind == "date":
        return bool(_HAS_DATE.search(text))
    if kind == "number":
        if _HAS_NUMBER.search(text):
            return True
        for m in _COUNTED.finditer(text):
            before, unit = (m.group(1) or "").lower(), m.group(2)
            if before not in _NOT_A_QUANTITY and unit not in STOPWORDS:
                return True  # a count with its unit
        return False
    return True


def question_keyterms(question: str) -> list[str]:
    """The question's key terms that are worth requiring: capitalised names and phrases,
    numbers, and multi-word terms (normalised like the graph index's key terms)."""
    terms: list[str] = []
    for t in extract_keyterms(question, max_terms=12):
        t = re.sub(r"'s\b", "", t).strip()
        if len(t) > 2 and not re.fullmatch(r"(?:1[5-9]|20)\d\ds?", t) and t not in terms:
            terms.append(t)  # years are left out: a table row rarely repeats its column's year
    words = [w.lower() for w in re.findall(r"[A-Za-z][A-Za-z-]+", question)]
    for a, b in zip(words, words[1:]):
        if a not in STOPWORDS and b not in STOPWORDS and len(a) > 2 and len(b) > 2 and f"{a} {b}" not in terms:
            terms.append(f"{a} {b}")
    return terms


def heading_context(heading: str) -> str:
    """The last part of a section path, without its page: "A > B > Gross Margin (page 20)" -> "Gross Margin"."""
    last = heading.split(" > ")[-1]
    return re.sub(r"\s*\(page \d+\)$|^Page \d+$", "", last).strip()


def _norm(text: str) -> str:
    return normalise_term(text)


def _bm25_scores(question: list[str], sentences: list[list[str]], k1: float, b: float) -> np.ndarray:
    n = len(sentences)
    df = Counter(t for toks in sentences for t in set(toks))
    avg = sum(len(t) for t in sentences) / max(1, n)
    q = set(question)
    out = np.zeros(n, dtype=np.float64)
    for i, toks in enumerate(sentences):
        tf = Counter(toks)
        s = 0.0
        for t in q:
            if tf[t]:
                idf = math.log(1.0 + (n - df[t] + 0.5) / (df[t] + 0.5))
                s += idf * tf[t] * (k1 + 1) / (tf[t] + k1 * (1 - b + b * len(toks) / max(avg, 1e-9)))
        out[i] = s
    return out


class ExtractiveReader:
    route = Route.EXTRACTIVE

    def __init__(self, config: ExtractiveConfig = ExtractiveConfig(), embedder: Embedder | None = None) -> None:
        self.config = config
        self.embedder = embedder

    def score(self, question: str, corpus: Corpus, hits: list[ScoredChunk]) -> list[ScoredSentence]:
        """Candidate sentences of the hits' passages, best first."""
        seen: set[tuple[str, int]] = set()
        seen_text: set[str] = set()
        cands: list[Chunk] = []
        texts: list[str] = []
        toks: list[list[str]] = []
        ctx_toks: list[list[str]] = []  # plus the section path's last part: context a table row lacks
        for h in hits:
            doc = corpus.document(h.chunk.doc_id)
            for s in corpus.sentences(h.chunk.doc_id):
                if s.end > h.chunk.start and s.start < h.chunk.end and (s.doc_id, s.start) not in seen:
                    seen.add((s.doc_id, s.start))
                    text = s.text_of(doc)
                    key = " ".join(text.lower().split())
                    if key in seen_text:
                        continue  # the same words twice (a running header, a repeated line) are one candidate
                    seen_text.add(key)
                    tokens = content_tokens(text)
                    # headings and fragments are not answers
                    if text.lstrip().startswith("#") or text.strip("#*| \t") == s.heading or len(tokens) < 3:
                        continue
                    cands.append(s)
                    texts.append(text)
                    # the section path is context a short sentence (a table row) lacks
                    toks.append(tokens)
                    ctx_toks.append(tokens + content_tokens(heading_context(s.heading)))
        if not cands:
            return []
        q = content_tokens(question)
        qset = set(q)

        def lexical_of(tokens: list[list[str]]) -> tuple[np.ndarray, np.ndarray]:
            bm = _bm25_scores(q, tokens, self.config.k1, self.config.b)
            # normalise by the best possible score (every question term matched once)
            recall = np.array([len(qset & set(t)) / len(qset) if qset else 0.0 for t in tokens])
            return 0.5 * (bm / bm.max() if bm.max() > 0 else bm) * recall + 0.5 * recall, recall

        plain, _ = lexical_of(toks)  # the support thresholds see the sentence alone
        lexical, recall = lexical_of(ctx_toks)
        # a table row is short: judge it by how much of its label the question names
        # ("Total gross margin $ 36,413" for "What was the gross margin ...?")
        for i, t in enumerate(texts):
            if is_table_row(t):
                label = {w for w in content_tokens(re.sub(r"[\d$€£¥%(),.]+", " ", t))}
                if label and qset:
                    precision = len(label & qset) / len(label)
                    lexical[i] = max(lexical[i], 0.5 * precision + 0.5 * recall[i])
        embedder = self.embedder or getattr(corpus.collection, "embedder", None)
        sentence_vectors = getattr(corpus.collection, "sentence_vectors", None)
        if self.embedder is None and sentence_vectors is not None:
            # the collection's cached, torch-free encoders: the question vector is the one
            # retrieval just made, a sentence read before is not embedded again
            qvec = np.asarray(corpus.collection.query_embedder.embed([question]), dtype=np.float32)[0]
            cos = np.clip(np.asarray(sentence_vectors(texts), dtype=np.float32) @ qvec, 0.0, 1.0)
            w = self.config.lexical_weight
        elif embedder is not None:
            vecs = np.asarray(embedder.embed([question] + texts), dtype=np.float32)
            cos = np.clip(vecs[1:] @ vecs[0], 0.0, 1.0)
            w = self.config.lexical_weight
        else:
            cos = np.zeros(len(cands))
            w = 1.0
        support = w * plain + (1 - w) * cos
        score = w * lexical + (1 - w) * cos
        kind = asked_type(question)
        if kind:
            score = score * np.array([1.0 if has_type(t, kind) else self.config.missing_type_factor for t in texts])
        terms = question_keyterms(question)
        if terms and self.config.keyterm_weight:
            normed = [_norm(t) for t in texts]
            share = np.array([sum(term in n for term in terms) / len(terms) for n in normed])
            score = score * (1.0 + self.config.keyterm_weight * share) / (1.0 + self.config.keyterm_weight)
        order = np.argsort(-score, kind="stable")
        return [ScoredSentence(cands[i], float(score[i]), float(lexical[i]), float(cos[i]), float(support[i]))
                for i in order]

    def run(
        self, question: str, collection: CollectionLike | Corpus, *, hits: list[ScoredChunk] | None = None
    ) -> StrategyResult:
        corpus = Corpus.of(collection)
        t0 = time.perf_counter()
        hits = corpus.hits(question, self.config.k, self.config.retriever, hits)
        ranked = self.score(question, corpus, hits)
        elapsed = (time.perf_counter() - t0) * 1000.0
        floor = max(self.config.min_score, self.config.relative_cutoff * ranked[0].support) if ranked else 0.0
        best = [r for r in ranked[: self.config.n_sentences] if r.support >= floor]
        if not best:
            top = f"{ranked[0].support:.2f}" if ranked else "none"
            return StrategyResult(
                route=Route.EXTRACTIVE,
                text="NOT_FOUND: no sentence in the retrieved passages matches the question",
                sentence_map=SentenceMap.empty(),
                abstained=True,
                abstain_reason=f"best sentence score {top} < min_score {self.config.min_score}",
                timings_ms={"retrieve": elapsed, "llm": 0.0},
                hits=tuple(hits),
            )
        best.sort(key=lambda r: (corpus.doc_ids().index(r.sentence.doc_id) if r.sentence.doc_id in corpus.doc_ids() else 0,
                                 r.sentence.start))
        refs: dict[str, SentenceRef] = {}
        cites: list[Citation] = []
        parts: list[str] = []
        for n, r in enumerate(best, 1):
            s = r.sentence
            doc = corpus.document(s.doc_id)
            quote = doc.text[s.start : s.end]
            sid = f"S{n}"
            refs[sid] = SentenceRef(sid, s.doc_id, s.start, s.end)
            cites.append(
                Citation(doc_id=s.doc_id, start=s.start, end=s.end, quote=quote, supports=round(r.support, 4),
                         sentence_id=sid, title=doc.title, page=doc.page_at(s.start), claim=" ".join(quote.split()),
                         origin="extractive")
            )
            parts.append(f"{' '.join(quote.split())} [{n}]")
        smap = SentenceMap(refs=refs, documents={c.doc_id: corpus.document(c.doc_id) for c in cites})
        return StrategyResult(
            route=Route.EXTRACTIVE,
            text=" ".join(parts),
            sentence_map=smap,
            citations=tuple(cites),
            timings_ms={"retrieve": elapsed, "llm": 0.0},
            hits=tuple(hits),
        )
