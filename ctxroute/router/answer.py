"""Answer-side signals: what a first (cheap) answer says about whether to stop or escalate.

Everything here is pure text arithmetic, no LLM call and no model: it runs on a live RAG
answer in the engine and on a recorded answer in replay, so the cascade is fitted and used on
the same signals. The refusal detector moved here from ``ctxroute.eval.metrics`` (which
re-exports it) so the router and the judge agree on what a refusal is.

Signals (``AnswerSignals``):
- ``refused``: the answer says the source does not contain the answer (strict detector);
  ``hedged``: a looser refusal phrase, usually "the text does not say X; however ...";
- ``answer_tokens``: length of the answer in words;
- ``wants_number`` / ``has_number`` (and date, list): whether the question asks for a number
  (how much, how many, what percentage, ...) and whether the answer carries one;
  ``type_missing`` is 1 when the question asks for a type the answer lacks;
- ``question_overlap``: share of the question's content terms repeated in the answer;
- ``context_overlap``: share of the answer's content terms found in the retrieved text (the
  probe's passages; -1 when no retrieved text was given);
- ``question_coverage``: share of the question's content terms found in the retrieved text
  (a pre-answer signal: low coverage suggests "the documents do not say");
- citation signals when the answer came from ctxroute's own pipeline: ``n_citations``,
  ``verified_share`` (verified / all markers; -1 when the answer had no markers) and
  ``support`` (mean support of the verified citations; -1 when none).
"""
from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Iterable, Sequence

# --- refusals -------------------------------------------------------------------------
_NEG = r"(?:does not|doesn't|do not|don't|did not|didn't|cannot|can't|can not|could not|couldn't|is not|isn't|are not|aren't|was not|wasn't|were not|weren't|has not|hasn't|have not|haven't|never)"
_REFUSAL = re.compile(
    _NEG + r"\s+(?:\w+\s+){0,4}?(?:provide|mention|specify|specified|mentioned|contain|include|state|say|disclose|discuss|detail|indicate|address|give|offer|reference|describe|have|be determined|be found|be answered|determine|answer|find|explicitly|clear|available|present|known|identify|suggest|compare|explore|propose|outline|examine|delve|list|focus|report|cover|elaborate|reveal|involve|show|present|analy[sz]e|investigate|evaluate|assess|appear|exist|establish|note|record)"
    r"|\bno (?:information|mention|details?|data|specific|explicit|indication|evidence|reference|record|such)\b"
    r"|\bnot (?:mentioned|provided|specified|stated|available|disclosed|discussed|included|found|given|addressed|described|detailed|indicated|known|clear|possible to determine|enough information|explicitly)\b"
    r"|\bno\s+(?:\w+\s+){0,3}(?:is|are|was|were)\s+(?:proposed|mentioned|provided|described|discussed|given|specified|introduced|reported)\b"
    r"|\binsufficient (?:information|context|data)\b"
    r"|\b(?:unable|impossible) to (?:determine|answer|find|identify|say|tell)\b"
    r"|\bthere (?:is|are|was|were) no\b|\bi don't know\b|\bunanswerable\b|\bcannot answer\b|\bnot answerable\b|\bnone (?:are|is|were|was) mentioned\b"
    r"|\bNOT_FOUND\b|\bNO_INFORMATION\b"
    r"|无法确定|没有提到|未提及|没有具体|没有提供|未提供",
    re.IGNORECASE,
)
_STRONG = re.compile(
    r"no information|no mention|not (?:mentioned|provided|specified|stated|disclosed)|insufficient (?:information|context)|unable to determine"
    r"|cannot be determined|cannot answer|unanswerable|not answerable|i don't know|not enough information|NOT_FOUND|NO_INFORMATION"
    r"|无法确定|没有提到|未提及|没有提供",
    re.IGNORECASE,
)
_REFUSAL_SUBJECT = re.compile(
    r"\b(text|document|documents|context|passage|passages|chunk|chunks|excerpt|excerpts|statement|statements|report|paper|papers|information|article|source|sources|provided|given|book|story|novel|filing|filings)\b",
    re.IGNORECASE,
)


def is_refusal(text: str, *, lenient: bool = False) -> bool:
    """Whether an answer says the source does not contain the answer.

    Strict (default): a refusal phrase ("does not provide", "not mentioned", "no information",
    "cannot be determined", ...) within the first 300 characters and, for the looser
    phrases, a word naming the source ("text", "document", "chunks", "paper", ...), so that
    "Tom did not mention it to Becky" is not a refusal while "The text does not mention ..."
    is. ``lenient=True`` accepts any refusal phrase there: right for questions known to be
    unanswerable, where "Finch did not specify a brand" rejects the question's premise.
    Empty text is not a refusal (it is a failed answer).
    """
    head = text.strip()[:300]
    if not head:
        return False
    if not _REFUSAL.search(head):
        return False
    if lenient:
        return True
    return bool(_STRONG.search(head)) or bool(_REFUSAL_SUBJECT.search(head))


# --- what the question asks for -------------------------------------------------------
_WANTS_NUMBER = re.compile(
    r"\b(how (?:much|many|long|large|big|old|often|far)|what (?:is|was|were|are) the (?:total|amount|number|value|percentage|ratio|rate|margin|price|cost|size|revenue|growth)"
    r"|what (?:percentage|percent|amount|number|proportion|share|ratio|fraction)|how did .* (?:change|grow|decline)|by what (?:percentage|amount|factor)"
    r"|\b(?:total|amount|revenue|income|margin|ratio|percentage|capex|expenditure|eps|earnings per share|cash flow|dividends?)\b)",
    re.IGNORECASE,
)
_WANTS_DATE = re.compile(r"\b(when|what (?:year|date|month|day|time)|which (?:year|date|month|quarter))\b", re.IGNORECASE)
_WANTS_LIST = re.compile(r"\b(list|name (?:all|the|every)|which (?:\w+ ){0,2}(?:are|were)|what are the|enumerate|identify (?:all|the))\b", re.IGNORECASE)
_NUMBER = re.compile(r"(?<![\w.])[$€£]?\d[\d,]*(?:\.\d+)?\s*(?:%|percent|million|billion|thousand|bn|m\b|k\b)?", re.IGNORECASE)
_YEAR_OR_DATE = re.compile(
    r"\b(1[5-9]\d\d|20\d\d)\b|\b(january|february|march|april|may|june|july|august|september|october|november|december|q[1-4])\b",
    re.IGNORECASE,
)
_LIST_SHAPE = re.compile(r"(?:^|\n)\s*(?:[-*•]|\d+[.)])\s+|,.*,|;.*;", re.MULTILINE)
_MARKER = re.compile(r"\[\s*[Ss]?\d+(?:\s*(?:[,;]|-|–|and)\s*[Ss]?\d+)*\s*\]")  # [3], [S3, S7], [S3-S5]
_WORD = re.compile(r"[^\W_]+(?:[.,'][^\W_]+)*", re.UNICODE)


@lru_cache(maxsize=1)
def _stopwords() -> frozenset[str]:
    from ctxroute.retrievers.keyterms import STOPWORDS

    extra = {"text", "document", "documents", "according", "provided", "mentioned", "based", "context", "does", "did",
             "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "chunks", "chunk", "passage", "passages"}
    return frozenset(STOPWORDS) | frozenset(extra)


@lru_cache(maxsize=1)
def _stem_fn():  # type: ignore[no-untyped-def]
    """A function stemming a list of words at once (PyStemmer, a bm25s dependency)."""
    try:
        import Stemmer

        return Stemmer.Stemmer("english").stemWords
    except ImportError:  # pragma: no cover - PyStemmer is a dependency
        return lambda ws: list(ws)


def content_terms(text: str) -> set[str]:
    """Stemmed, lower-cased content words (stop words and 1-character words dropped; numbers
    kept without their thousands separators)."""
    stop = _stopwords()
    out: set[str] = set()
    words: set[str] = set()
    for w in _WORD.findall(text.lower()):
        if any(ch.isdigit() for ch in w):
            out.add(w.replace(",", ""))
            continue
        w = w.replace("'", "")
        if len(w) >= 2 and w not in stop:
            words.add(w)
    out.update(_stem_fn()(list(words)))
    return out


def term_share(terms: set[str], pool: set[str]) -> float:
    """Share of ``terms`` present in ``pool`` (1.0 for an empty ``terms``)."""
    if not terms:
        return 1.0
    return len(terms & pool) / len(terms)


@dataclass(frozen=True)
class AnswerSignals:
    refused: int
    hedged: int
    answer_tokens: int
    wants_number: int
    has_number: int
    wants_date: int
    has_date: int
    wants_list: int
    type_missing: int
    question_overlap: float
    context_overlap: float  # -1: no retrieved text given
    question_coverage: float  # -1: no retrieved text given
    n_citations: int = 0
    verified_share: float = -1.0  # -1: the answer carried no citation markers
    support: float = -1.0  # -1: no verified citation
    empty: int = 0

    def as_dict(self) -> dict[str, float]:
        return {k: float(v) for k, v in asdict(self).items()}

    def vector(self) -> list[float]:
        """The fitted cascade's answer features (ANSWER_FEATURE_NAMES order). Citation signals
        are left out: recorded answers of other systems carry none, so the fit could not use them."""
        ref = float(self.refused)
        coverage = float(self.question_coverage) if self.question_coverage >= 0 else 0.5
        tokens = math.log1p(self.answer_tokens)
        return [
            ref,
            float(self.hedged and not self.refused),
            tokens,
            float(self.type_missing),
            float(self.wants_number),
            float(self.wants_date),
            float(self.question_overlap),
            float(self.context_overlap) if self.context_overlap >= 0 else 0.5,
            coverage,
            float(self.empty),
            # a refusal means different things for different questions: a refused question
            # about a reported figure usually means retrieval missed it, a refused question
            # whose terms the retrieved text lacks often means the documents do not say
            ref * float(self.wants_number),
            ref * float(self.wants_date),
            ref * coverage,
            ref * tokens,
        ]


ANSWER_FEATURE_NAMES: tuple[str, ...] = (
    "ans_refused",
    "ans_hedged",
    "ans_log_tokens",
    "ans_type_missing",
    "q_wants_number",
    "q_wants_date",
    "ans_question_overlap",
    "ans_context_overlap",
    "ans_question_coverage",
    "ans_empty",
    "refused_x_wants_number",
    "refused_x_wants_date",
    "refused_x_coverage",
    "refused_x_log_tokens",
)


def question_wants(question: str) -> tuple[bool, bool, bool]:
    """(number, date, list) the question asks for."""
    return bool(_WANTS_NUMBER.search(question)), bool(_WANTS_DATE.search(question)), bool(_WANTS_LIST.search(question))


def answer_signals(
    question: str,
    answer: str,
    *,
    context: Sequence[str] | str | None = None,
    n_citations: int = 0,
    n_markers: int | None = None,
    supports: Iterable[float] = (),
    context_terms: set[str] | None = None,
    known_refusal: bool = False,
) -> AnswerSignals:
    """Signals from one answer. ``context`` is the retrieved text (passages) the answer was
    meant to come from, or a stand-in for it (the router's probe passages); ``n_markers`` the
    citation markers the answer wrote (verified or not), ``n_citations`` how many verified;
    ``context_terms`` (``content_terms`` of the context) saves recomputing them per answer;
    ``known_refusal``: the answer is a refusal whatever its wording (the pipeline abstained, or a
    person labelled it so), for the refusals the text detector misses."""
    text = _MARKER.sub(" ", answer or "")
    head = text.strip()
    refused = known_refusal or is_refusal(head)
    hedged = refused or is_refusal(head, lenient=True)
    wn, wd, wl = question_wants(question)
    body = _REFUSAL.sub(" ", head) if refused else head
    has_num = bool(_NUMBER.search(body))
    has_date = bool(_YEAR_OR_DATE.search(body))
    has_list = bool(_LIST_SHAPE.search(body))
    missing = (wn and not has_num) or (wd and not has_date and not has_num) or (wl and not has_list)
    q_terms = content_terms(question)
    a_terms = content_terms(head)
    if context is None and context_terms is None:
        ctx_overlap = -1.0
        coverage = -1.0
    else:
        pool = context_terms if context_terms is not None else content_terms(context if isinstance(context, str) else "\n".join(context or ()))
        new_terms = a_terms - q_terms
        ctx_overlap = term_share(new_terms, pool) if new_terms else 1.0
        coverage = term_share(q_terms, pool)
    sup = [float(s) for s in supports]
    if n_markers is None:
        n_markers = n_citations
    return AnswerSignals(
        refused=int(refused),
        hedged=int(hedged),
        answer_tokens=len(head.split()),
        wants_number=int(wn),
        has_number=int(has_num),
        wants_date=int(wd),
        has_date=int(has_date),
        wants_list=int(wl),
        type_missing=int(bool(missing) and not refused),
        question_overlap=round(term_share(q_terms, a_terms), 4) if q_terms else 0.0,
        context_overlap=round(ctx_overlap, 4),
        question_coverage=round(coverage, 4),
        n_citations=int(n_citations),
        verified_share=round(n_citations / n_markers, 4) if n_markers else -1.0,
        support=round(sum(sup) / len(sup), 4) if sup else -1.0,
        empty=int(not head),
    )


__all__ = [
    "ANSWER_FEATURE_NAMES",
    "AnswerSignals",
    "answer_signals",
    "content_terms",
    "is_refusal",
    "question_wants",
    "term_share",
]
