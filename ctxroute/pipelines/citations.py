"""Citation parsing and verification.

The model cites prompt sentence ids (``[S12]``, ``[S3, S7]``, ``[S3][S4]``, ``[S3-S5]``).
Each marker is checked: the id must exist in the ``SentenceMap`` (hallucinated ids are
removed with a warning) and the cited sentence must support the claim the marker is
attached to (the answer sentence holding it). Support is the max of a lexical score
(recall of the claim's stemmed content tokens in the cited sentence) and, when an embedder
is given, the cosine between claim and sentence. The cosine only counts when the claim's
new content (tokens beyond the question) appears in the sentence, and a number the claim
adds must appear in the sentence or the support is 0: a fluent claim sharing only the
question's entities cannot pass on similarity alone; and at least half of the claim's names
and numbers must appear in the sentence. Citations below ``min_support`` are
removed and reported as warnings, never silently kept.

Answer text convention: verified markers are rewritten as ``[1]``, ``[2]`` ... numbered by
first appearance and pointing into ``citations`` (``[n]`` -> ``citations[n-1]``); removed
markers are deleted from the text.
"""
from __future__ import annotations

import functools
import re
from dataclasses import dataclass
from typing import Sequence

import numpy as np

from ctxroute.pipelines.packing import SentenceMap
from ctxroute.retrievers.base import Embedder
from ctxroute.types import Citation

_MARKER = re.compile(r"\[\s*([Ss]\d+(?:\s*(?:[,;]|-|–|and)\s*[Ss]?\d+)*)\s*\]")
_ID = re.compile(r"[Ss]?(\d+)")
_TOKEN = re.compile(r"\d+(?:[.,]\d+)*|[^\W\d_]+", re.UNICODE)
_SENT_END = re.compile(r"(?<=[.!?])\s+(?=[A-Z0-9\"'(\[])|\n+")
_REFUSAL = re.compile(
    r"\b(NOT_FOUND|NO_INFORMATION|do(?:es)? not (?:contain|mention|provide|say|include|specify)|"
    r"(?:is|are) not (?:mentioned|provided|stated|specified|given)|no information|"
    r"cannot be (?:determined|found|answered)|not (?:found|available) in the)",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class CitationConfig:
    """``min_support`` in 0..1: the least support a cited sentence must give its claim."""

    min_support: float = 0.35
    use_embeddings: bool = True
    max_range: int = 10  # [S3-S9] expands to at most this many ids
    short_claim_tokens: int = 3
    # opt-in: when the model cites nothing, attach each claim to its best-supporting context
    # sentence if that support reaches attribute_min_support (Citation.origin="attributed")
    attribute_uncited: bool = False
    attribute_min_support: float = 0.5
    max_attributions: int = 5


@dataclass(frozen=True)
class Marker:
    start: int
    end: int
    ids: tuple[str, ...]


@dataclass(frozen=True)
class VerifiedText:
    """The answer with verified, renumbered markers, its citations and the warnings."""

    text: str
    citations: tuple[Citation, ...]
    warnings: tuple[str, ...]
    n_cited: int  # citations the model made (id, claim) before verification
    n_removed: int


def _expand(body: str, max_range: int) -> tuple[str, ...]:
    ids: list[str] = []
    for part in re.split(r"\s*(?:[,;]|and)\s*", body):
        bounds = [int(m.group(1)) for m in _ID.finditer(part)]
        if len(bounds) == 2 and re.search(r"-|–", part):
            lo, hi = bounds
            if lo <= hi and hi - lo < max_range:
                ids.extend(f"S{i}" for i in range(lo, hi + 1))
                continue
        ids.extend(f"S{b}" for b in bounds)
    return tuple(dict.fromkeys(ids))


def parse_markers(text: str, *, max_range: int = 10) -> list[Marker]:
    """Every citation marker in ``text``, in order, with the sentence ids it names."""
    return [Marker(m.start(), m.end(), _expand(m.group(1), max_range)) for m in _MARKER.finditer(text)]


def strip_markers(text: str) -> str:
    return _tidy(_MARKER.sub("", text))


def _tidy(text: str) -> str:
    text = re.sub(r"[ \t]+([.,;:!?])", r"\1", text)
    return re.sub(r"[ \t]{2,}", " ", text).strip()


@functools.cache
def _stopwords() -> frozenset[str]:
    from sklearn.feature_extraction._stop_words import ENGLISH_STOP_WORDS

    return frozenset(ENGLISH_STOP_WORDS)


@functools.cache
def _stemmer():  # type: ignore[no-untyped-def]
    import Stemmer

    return Stemmer.Stemmer("english")


def content_tokens(text: str) -> list[str]:
    """Lower-cased, stemmed content tokens (stop words dropped; numbers kept)."""
    stop = _stopwords()
    words = [w.lower() for w in _TOKEN.findall(text)]
    words = [w for w in words if w not in stop and (len(w) > 1 or w.isdigit())]
    return list(_stemmer().stemWords(words))


_ANSWER_WORDS = frozenset({"yes", "no", "true", "fals", "correct", "incorrect"})


def novel_tokens(claim: str, question: str = "") -> list[str]:
    """The claim's content tokens that the question does not already hold (its new content)."""
    q = set(content_tokens(question)) if question else set()
    return [t for t in content_tokens(claim) if t not in q and t not in _ANSWER_WORDS]


def lexical_support(claim: str, source: str, question: str = "") -> float:
    """Share of the claim's new content tokens (beyond the question) found in the source; of all
    its tokens when it adds none (e.g. "Yes"). 0 when the claim has no content tokens."""
    tokens = set(novel_tokens(claim, question)) or set(content_tokens(claim))
    if not tokens:
        return 0.0
    src = set(content_tokens(source))
    return len(tokens & src) / len(tokens)


def _claims(text: str) -> list[tuple[int, int]]:
    """Spans of the answer's sentences (a claim is the sentence a marker sits in)."""
    spans: list[tuple[int, int]] = []
    pos = 0
    for m in _SENT_END.finditer(text):
        spans.append((pos, m.start()))
        pos = m.end()
    spans.append((pos, len(text)))
    return [(a, b) for a, b in spans if text[a:b].strip()] or [(0, len(text))]


def is_refusal(text: str) -> bool:
    return bool(_REFUSAL.search(text))


def abstention(text: str) -> tuple[bool, str]:
    """(abstained, reason) for a model answer. ``NOT_FOUND: reason`` is the explicit form."""
    stripped = strip_markers(text).strip()
    m = re.match(r"^\W*(NOT_FOUND|NO_INFORMATION)\b\W*(.*)", stripped, re.DOTALL)
    if m:
        return True, m.group(2).strip() or "the documents do not contain the answer"
    if not stripped:
        return True, "the model returned an empty answer"
    return False, ""


def verify_citations(
    text: str,
    sentence_map: SentenceMap,
    *,
    embedder: Embedder | None = None,
    config: CitationConfig = CitationConfig(),
    question: str = "",
) -> VerifiedText:
    """Check every marker in ``text`` against ``sentence_map``; see the module docstring.

    A claim with fewer than ``short_claim_tokens`` content tokens (e.g. "Yes [S3]" or
    "12.4% [S3]") is checked together with the ``question`` it answers.
    """
    markers = parse_markers(text, max_range=config.max_range)
    claims = _claims(text)
    warnings: list[str] = []

    def claim_of(pos: int) -> str:
        idx = next((i for i, (a, b) in enumerate(claims) if a <= pos <= b), len(claims) - 1)
        claim = strip_markers(text[claims[idx][0] : claims[idx][1]])
        # a marker standing alone (e.g. on its own line) supports the previous sentence
        while len(content_tokens(claim)) == 0 and idx > 0:
            idx -= 1
            claim = strip_markers(text[claims[idx][0] : claims[idx][1]])
        return claim

    pairs: list[tuple[int, str, str]] = []  # (marker index, sid, claim)
    for mi, marker in enumerate(markers):
        claim = claim_of(marker.start)
        for sid in marker.ids:
            if sid not in sentence_map:
                warnings.append(f"citation [{sid}] removed: no sentence with that id was in the context (hallucinated id)")
                continue
            pairs.append((mi, sid, claim))

    def checked(claim: str) -> str:  # a short claim is embedded together with its question
        if question and len(content_tokens(claim)) < config.short_claim_tokens:
            return f"{question.strip()} {claim}"
        return claim

    scores = _support_scores(
        [(checked(c), sentence_map.text(s)) for _, s, c in pairs], embedder if config.use_embeddings else None, question
    )
    kept: dict[int, list[str]] = {}
    numbering: dict[tuple[str, str], int] = {}
    citations: list[Citation] = []
    for (mi, sid, claim), score in zip(pairs, scores):
        if score < config.min_support:
            short = claim if len(claim) <= 80 else claim[:77] + "..."
            warnings.append(
                f"citation [{sid}] removed: support {score:.2f} < min_support {config.min_support:.2f} for claim {short!r}"
            )
            continue
        key = (sid, claim)
        if key not in numbering:
            ref = sentence_map.refs[sid]
            doc = sentence_map.documents[ref.doc_id]
            citations.append(
                Citation(
                    doc_id=ref.doc_id,
                    start=ref.start,
                    end=ref.end,
                    quote=doc.text[ref.start : ref.end],
                    supports=round(float(score), 4),
                    sentence_id=sid,
                    title=doc.title,
                    page=doc.page_at(ref.start),
                    claim=claim,
                )
            )
            numbering[key] = len(citations)
        kept.setdefault(mi, []).append(f"[{numbering[key]}]")

    if config.attribute_uncited and not markers and not abstention(text)[0]:
        return _attribute(text, claims, sentence_map, embedder if config.use_embeddings else None, config, question)

    out: list[str] = []
    pos = 0
    for mi, marker in enumerate(markers):
        out.append(text[pos : marker.start])
        out.append("".join(dict.fromkeys(kept.get(mi, []))))
        pos = marker.end
    out.append(text[pos:])
    n_cited = sum(len(m.ids) for m in markers)
    return VerifiedText(
        text=_tidy("".join(out)),
        citations=tuple(citations),
        warnings=tuple(warnings),
        n_cited=n_cited,
        n_removed=n_cited - len([1 for (mi, sid, c), s in zip(pairs, scores) if s >= config.min_support]),
    )


def _is_number(token: str) -> bool:
    return any(ch.isdigit() for ch in token)


_WORD = re.compile(r"[^\W_]+(?:[.,][^\W_]+)*", re.UNICODE)


def key_terms(claim: str) -> set[str]:
    """Names and numbers of a claim (capitalised words after its first word, tokens with
    digits), stemmed like ``content_tokens``."""
    words = [m.group() for m in _WORD.finditer(strip_markers(claim))]
    keys = [w for i, w in enumerate(words) if any(ch.isdigit() for ch in w) or (i > 0 and w[:1].isupper())]
    return set(content_tokens(" ".join(keys)))


def _key_terms_ok(claim: str, source: str, min_share: float = 0.5) -> bool:
    """At least ``min_share`` of the claim's names and numbers appear in the source (a
    claim about the Nimbus division cannot be supported by a sentence about Fjord)."""
    keys = key_terms(claim)
    if not keys:
        return True
    return len(keys & set(content_tokens(source))) / len(keys) >= min_share


def _gate(claim: str, source: str, question: str) -> bool:
    """May the embedding vouch for this pair? Only when the claim's new content (tokens not
    already in the question) shows up in the source. Stops a fluent claim that merely shares
    the question's entities (a hallucinated name or figure) from passing on cosine alone."""
    novel = novel_tokens(claim, question)
    if not novel:
        return True
    src = set(content_tokens(source))
    return any(t in src for t in novel)


def _support_scores(
    pairs: Sequence[tuple[str, str]], embedder: Embedder | None, question: str = ""
) -> list[float]:
    """Support of each (claim, source) pair: max(lexical recall, gated embedding cosine);
    0 when a number the claim adds (beyond the question) is missing from the source, or when
    fewer than half of the claim's names and numbers appear in it."""
    if not pairs:
        return []
    lexical = [lexical_support(claim, source, question) for claim, source in pairs]
    gates = [_gate(claim, source, question) for claim, source in pairs]
    numbers_ok = [
        {t for t in novel_tokens(c, question) if _is_number(t)} <= set(content_tokens(src)) and _key_terms_ok(c, src)
        for c, src in pairs
    ]
    cos = [0.0] * len(pairs)
    if embedder is not None and any(gates):
        claims = sorted({c for (c, _), g in zip(pairs, gates) if g})
        sources = sorted({s for (_, s), g in zip(pairs, gates) if g})
        vecs = np.asarray(embedder.embed(claims + sources), dtype=np.float32)
        c_idx = {c: i for i, c in enumerate(claims)}
        s_idx = {s: len(claims) + i for i, s in enumerate(sources)}
        for i, ((claim, source), g) in enumerate(zip(pairs, gates)):
            if g:
                cos[i] = min(1.0, max(0.0, float(np.dot(vecs[c_idx[claim]], vecs[s_idx[source]]))))
    return [max(lex, c) if ok else 0.0 for lex, c, ok in zip(lexical, cos, numbers_ok)]


def _attribute(
    text: str,
    claims: list[tuple[int, int]],
    sentence_map: SentenceMap,
    embedder: Embedder | None,
    config: CitationConfig,
    question: str,
) -> VerifiedText:
    """Post-hoc attribution for an answer without markers (see CitationConfig.attribute_uncited)."""
    sids = list(sentence_map.refs)
    sources = {sid: sentence_map.text(sid) for sid in sids}
    citations: list[Citation] = []
    out: list[str] = []
    pos = 0
    seen_claims: set[str] = set()
    for a, b in claims:
        claim = " ".join(text[a:b].split())
        # only claims that add something beyond the question, once each, at most max_attributions
        if not sids or not novel_tokens(claim, question) or claim in seen_claims:
            continue
        if len(citations) >= config.max_attributions:
            break
        seen_claims.add(claim)
        checked = f"{question.strip()} {claim}" if question and len(content_tokens(claim)) < config.short_claim_tokens else claim
        lex = sorted(((lexical_support(checked, sources[sid]), sid) for sid in sids), reverse=True)[:10]
        scores = _support_scores([(checked, sources[sid]) for _, sid in lex], embedder, question)
        best_score, best_sid = max(zip(scores, (sid for _, sid in lex)), default=(0.0, ""))
        if best_score < config.attribute_min_support:
            continue
        ref = sentence_map.refs[best_sid]
        doc = sentence_map.documents[ref.doc_id]
        citations.append(
            Citation(doc_id=ref.doc_id, start=ref.start, end=ref.end, quote=doc.text[ref.start : ref.end],
                     supports=round(float(best_score), 4), sentence_id=best_sid, title=doc.title,
                     page=doc.page_at(ref.start), claim=claim, origin="attributed")
        )
        cut = b - 1 if text[b - 1] in ".!?" else b
        out.append(text[pos:cut])
        out.append(f" [{len(citations)}]")
        pos = cut
    out.append(text[pos:])
    warnings: tuple[str, ...] = ()
    if citations:
        warnings = (
            f"the model cited no sentence; ctxroute attributed {len(citations)} claim(s) to their best-supporting "
            "source sentence (origin=attributed): the quote shows where the claim's words come from, not that "
            "the model read it there",
        )
    return VerifiedText(text=_tidy("".join(out)), citations=tuple(citations), warnings=warnings, n_cited=0, n_removed=0)
