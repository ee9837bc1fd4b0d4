"""Key-term extraction without an LLM: the graph index links passages through these.

Three kinds of term, all normalised (lowercase, whitespace collapsed):
- capitalised phrases: names and titles ("Northern Division", "Bank of England");
- numbers with units, amounts and years ("12.5%", "$3.2 million", "40 km", "1997");
- content-word bigrams that occur at least twice ("interest rate").
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass

from bm25s.stopwords import STOPWORDS_EN_PLUS

STOPWORDS: frozenset[str] = frozenset(STOPWORDS_EN_PLUS) | frozenset(
    {
        "also", "however", "although", "though", "yet", "may", "might", "must", "shall", "could",
        "would", "should", "can", "will", "one", "two", "three", "many", "much", "every", "each",
        "upon", "within", "without", "whether", "among", "according", "including", "said", "says",
        "like", "new", "first", "last", "next", "well", "even", "still", "thus", "therefore",
        "mr", "mrs", "ms", "dr", "i", "chapter", "section", "figure", "table",
    }
)

# Words that may sit inside a capitalised phrase ("Bank of England", "Procter & Gamble").
_CONNECTORS = frozenset({"of", "the", "and", "&", "de", "da", "del", "der", "van", "von", "for", "la", "le"})

_CAP_WORD = r"(?:[A-Z][\w'’.-]*[\w]|[A-Z])"
_CAP_PHRASE = re.compile(
    rf"{_CAP_WORD}(?:\s+(?:(?:of|the|and|&|de|da|del|der|van|von|for|la|le)\s+)*{_CAP_WORD})*"
)
_SENTENCE_START = re.compile(r"(?:^|[.!?:;\"“”()\[\]\n]|\n\s*[-*•\d]+[.)]?)\s*$")

_SCALE = r"(?:million|billion|trillion|thousand|hundred|bn|mn|m|k)"
_UNIT = (
    r"(?:%|percent|per\s+cent|percentage\s+points?|km/h|km²|km2|km|kilometres|kilometers|miles|mi|"
    r"metres|meters|m²|m2|m|cm|mm|kg|g|tonnes|tons|t|lbs|lb|ft|feet|inches|acres|hectares|ha|"
    r"°c|°f|degrees|mph|gb|mb|tb|mw|gw|kw|kwh|twh|usd|eur|gbp|dollars|euros|pounds|yen|"
    r"hours|days|years|months|weeks|minutes|seconds|people|employees|shares|points|votes|seats)"
)
_NUMBER = r"\d{1,3}(?:,\d{3})+(?:\.\d+)?|\d+(?:\.\d+)?"
_MONEY = re.compile(rf"[$€£¥]\s?(?:{_NUMBER})(?:\s?{_SCALE}\b)?", re.IGNORECASE)
_QUANTITY = re.compile(rf"(?<![\w.$€£¥])(?:{_NUMBER})\s?(?:{_SCALE}\s+)?{_UNIT}(?![\w])", re.IGNORECASE)
_YEAR = re.compile(r"(?<![\w.,$€£¥])(?:1[5-9]\d\d|20\d\d)s?(?![\w.,]\d)")
_WORD = re.compile(r"[A-Za-z][A-Za-z'’-]*[A-Za-z]|[A-Za-z]")
_CLAUSE_BREAK = re.compile(r"[.,;:!?()\[\]\"“”\n]")

_WEIGHT_PHRASE = 2.0  # multi-word capitalised phrase
_WEIGHT_NAME = 1.5  # single capitalised word
_WEIGHT_NUMBER = 1.5
_WEIGHT_BIGRAM = 1.0


def normalise_term(term: str) -> str:
    """Lowercase, collapse whitespace, canonical numbers ("12.5 per cent" -> "12.5%")."""
    t = " ".join(term.lower().replace("’", "'").split())
    t = re.sub(r"\s*(?:per\s+cent|percent)\b", "%", t)
    t = re.sub(r"(\d)\s+%", r"\1%", t)
    t = re.sub(r"([$€£¥])\s+(\d)", r"\1\2", t)
    t = re.sub(r"(?<=\d),(?=\d{3}\b)", "", t)
    return t


@dataclass(frozen=True)
class _Candidate:
    term: str
    weight: float
    position: int


def _capitalised(text: str) -> list[_Candidate]:
    out: list[_Candidate] = []
    # single words seen capitalised mid-sentence: lets a sentence-initial "Smith" count
    mid_sentence: set[str] = set()
    found: list[tuple[int, list[str], bool]] = []
    for m in _CAP_PHRASE.finditer(text):
        words = m.group(0).split()
        initial = bool(_SENTENCE_START.search(text[max(0, m.start() - 12) : m.start()]))
        found.append((m.start(), words, initial))
        if not initial and len(words) == 1:
            mid_sentence.add(words[0].lower())
    for pos, words, initial in found:
        # strip stopwords and connectors at both ends ("The Northern Division" -> "Northern Division")
        while words and (words[0].lower() in STOPWORDS or words[0].lower() in _CONNECTORS):
            words = words[1:]
            initial = False
        while words and (words[-1].lower() in STOPWORDS or words[-1].lower() in _CONNECTORS):
            words = words[:-1]
        if not words:
            continue
        if len(words) == 1:
            w = words[0].strip(".'’-").lower()
            if len(w) < 2 or w in STOPWORDS or w.isdigit():
                continue
            if initial and w not in mid_sentence:
                continue
            out.append(_Candidate(normalise_term(w), _WEIGHT_NAME, pos))
        else:
            out.append(_Candidate(normalise_term(" ".join(words).rstrip(".")), _WEIGHT_PHRASE, pos))
    return out


def _numbers(text: str) -> list[_Candidate]:
    out: list[_Candidate] = []
    taken: list[tuple[int, int]] = []
    for pattern in (_MONEY, _QUANTITY, _YEAR):
        for m in pattern.finditer(text):
            if any(s < m.end() and m.start() < e for s, e in taken):
                continue
            taken.append((m.start(), m.end()))
            out.append(_Candidate(normalise_term(m.group(0)), _WEIGHT_NUMBER, m.start()))
    return out


def _bigrams(text: str) -> list[_Candidate]:
    out: list[_Candidate] = []
    for clause_match in re.finditer(r"[^.,;:!?()\[\]\"“”\n]+", text):
        words = [(m.group(0), clause_match.start() + m.start()) for m in _WORD.finditer(clause_match.group(0))]
        for (a, pa), (b, _) in zip(words, words[1:]):
            if not (a[0].islower() and b[0].islower()):
                continue
            if len(a) < 3 or len(b) < 3 or a in STOPWORDS or b in STOPWORDS:
                continue
            out.append(_Candidate(normalise_term(f"{a} {b}"), _WEIGHT_BIGRAM, pa))
    return out


def extract_keyterms(text: str, *, max_terms: int = 20) -> list[str]:
    """Up to ``max_terms`` normalised key terms of ``text``, most salient first.

    Salience is frequency times a weight per kind (phrases > names, numbers > bigrams);
    bigrams must occur at least twice. Ties keep first-occurrence order.
    """
    if max_terms <= 0 or not text:
        return []
    scores: Counter[str] = Counter()
    first: dict[str, int] = {}
    bigram_counts: Counter[str] = Counter()
    for cand in _capitalised(text) + _numbers(text):
        scores[cand.term] += cand.weight
        first.setdefault(cand.term, cand.position)
    for cand in _bigrams(text):
        bigram_counts[cand.term] += 1
        first.setdefault(cand.term, cand.position)
    for term, n in bigram_counts.items():
        if n >= 2:
            scores[term] += n * _WEIGHT_BIGRAM
    ranked = sorted(scores, key=lambda t: (-scores[t], first[t]))
    return ranked[:max_terms]


def query_ngrams(text: str, *, max_n: int = 4) -> set[str]:
    """Every normalised 1..max_n word n-gram of ``text`` (not crossing clause breaks), plus
    its numbers: the candidates to look up among an index's key terms for a query."""
    grams: set[str] = {c.term for c in _numbers(text)}
    for clause in _CLAUSE_BREAK.split(text):
        words = [normalise_term(m.group(0)) for m in _WORD.finditer(clause)]
        for n in range(1, max_n + 1):
            for i in range(len(words) - n + 1):
                gram = words[i : i + n]
                if gram[0] in STOPWORDS or gram[-1] in STOPWORDS:
                    continue
                grams.add(" ".join(gram))
    return grams
