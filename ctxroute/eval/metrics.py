"""Answer, citation and retrieval metrics, and bootstrap confidence intervals.

Text normalisation follows SQuAD: lower-case, drop punctuation and the articles a/an/the,
collapse whitespace. ROUGE-L is the F-measure of the longest common subsequence over
those normalised tokens (beta = 1).
"""
from __future__ import annotations

import re
import string
from collections import Counter
from dataclasses import dataclass
from typing import Iterable, Mapping, Sequence

import numpy as np

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCT = set(string.punctuation) | {"\u2018", "\u2019", "\u201c", "\u201d", "\u2013", "\u2014", "\u2026"}


def normalize_answer(s: str) -> str:
    """SQuAD normalisation: lower-case, no punctuation, no articles, single spaces."""
    s = s.lower()
    s = "".join(" " if ch in _PUNCT else ch for ch in s)
    s = _ARTICLES.sub(" ", s)
    return " ".join(s.split())


def _tokens(s: str) -> list[str]:
    return normalize_answer(s).split()


def exact_match(prediction: str, golds: str | Sequence[str]) -> float:
    golds = [golds] if isinstance(golds, str) else list(golds)
    p = normalize_answer(prediction)
    return float(any(p == normalize_answer(g) for g in golds))


def _f1(pred: list[str], gold: list[str]) -> float:
    if not pred or not gold:
        return float(pred == gold)
    common = Counter(pred) & Counter(gold)
    same = sum(common.values())
    if same == 0:
        return 0.0
    p, r = same / len(pred), same / len(gold)
    return 2 * p * r / (p + r)


def token_f1(prediction: str, golds: str | Sequence[str]) -> float:
    """SQuAD token F1, the best over the gold answers."""
    golds = [golds] if isinstance(golds, str) else list(golds)
    pt = _tokens(prediction)
    return max((_f1(pt, _tokens(g)) for g in golds), default=0.0)


def token_recall(prediction: str, gold: str) -> float:
    """Share of the gold's tokens (as a multiset) that the prediction contains."""
    gt = _tokens(gold)
    if not gt:
        return 0.0
    common = Counter(_tokens(prediction)) & Counter(gt)
    return sum(common.values()) / len(gt)


def _lcs(a: Sequence[str], b: Sequence[str]) -> int:
    if not a or not b:
        return 0
    if len(a) < len(b):
        a, b = b, a
    prev = [0] * (len(b) + 1)
    for x in a:
        cur = [0]
        for j, y in enumerate(b, 1):
            cur.append(prev[j - 1] + 1 if x == y else max(prev[j], cur[j - 1]))
        prev = cur
    return prev[-1]


def rouge_l(prediction: str, golds: str | Sequence[str]) -> float:
    """ROUGE-L F1 (LCS over normalised tokens), the best over the gold answers."""
    golds = [golds] if isinstance(golds, str) else list(golds)
    pt = _tokens(prediction)
    best = 0.0
    for g in golds:
        gt = _tokens(g)
        lcs = _lcs(pt, gt)
        if lcs:
            p, r = lcs / len(pt), lcs / len(gt)
            best = max(best, 2 * p * r / (p + r))
    return best


def contains_answer(prediction: str, golds: str | Sequence[str]) -> float:
    """1.0 when a normalised gold answer occurs in the normalised prediction (as whole tokens)."""
    golds = [golds] if isinstance(golds, str) else list(golds)
    p = f" {normalize_answer(prediction)} "
    return float(any(normalize_answer(g) and f" {normalize_answer(g)} " in p for g in golds))


# --- multiple choice ------------------------------------------------------------------
_MC_PATTERNS = (
    re.compile(r"(?:answer|option|choice)\s*(?:is|:)?\s*[:\-]?\s*\(?\s*([A-Z])\b\)?", re.IGNORECASE),
    re.compile(r"^\s*\(?([A-Z])\)?\s*(?:[.):\]]|$)"),
    re.compile(r"\(([A-Z])\)"),
    re.compile(r"\b([A-Z])\s*[.)]\s"),
)


def extract_choice(text: str, n_choices: int = 26) -> str | None:
    """The option letter a model picked: "(B)", "Answer: B", "B.", "the answer is b" -> "B"."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[:n_choices]
    t = text.strip()
    if len(t) == 1 and t.upper() in letters:
        return t.upper()
    for pat in _MC_PATTERNS:
        for m in pat.finditer(t):
            c = m.group(1).upper()
            if c in letters:
                # lower-case single letters only count after an explicit "answer is"
                if m.group(1).islower() and pat is not _MC_PATTERNS[0]:
                    continue
                if c == "A" and pat is _MC_PATTERNS[3] and m.start() > 0:
                    continue  # the article "A." is rare, but "a" mid-sentence is not an option
                return c
    return None


def choice_accuracy(prediction: str, gold: str, choices: Sequence[str]) -> float:
    """1.0 when the extracted letter (or the verbatim choice text) is the gold option.

    ``gold`` may be the letter or the text of the right choice.
    """
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)]
    g = gold.strip()
    if len(g) == 1 and g.upper() in letters:
        gold_letter = g.upper()
    else:
        idx = next((i for i, c in enumerate(choices) if normalize_answer(c) == normalize_answer(g)), None)
        if idx is None:
            return 0.0
        gold_letter = letters[idx]
    got = extract_choice(prediction, len(choices))
    if got is None:
        hits = [letters[i] for i, c in enumerate(choices) if normalize_answer(c) and normalize_answer(c) in normalize_answer(prediction)]
        got = hits[0] if len(hits) == 1 else None
    return float(got == gold_letter)


# --- refusals -------------------------------------------------------------------------
# One detector for the router (answer-side signals), the engine and the judge.
from ctxroute.router.answer import is_refusal  # noqa: E402


def refusal_correct(prediction: str, answerable: bool) -> float:
    """For unanswerable questions: 1.0 when the model refused (lenient detector). For
    answerable ones: 1.0 when it did not refuse (strict detector)."""
    if answerable:
        return float(not is_refusal(prediction))
    return float(is_refusal(prediction, lenient=True))


# --- citations and retrieval --------------------------------------------------------------
Span = tuple[int, int]


def _overlap(a: Span, b: Span) -> int:
    return max(0, min(a[1], b[1]) - max(a[0], b[0]))


def _merge(spans: Iterable[Span]) -> list[Span]:
    out: list[list[int]] = []
    for s, e in sorted(spans):
        if out and s <= out[-1][1]:
            out[-1][1] = max(out[-1][1], e)
        else:
            out.append([s, e])
    return [(s, e) for s, e in out]


@dataclass(frozen=True)
class CitationScores:
    precision: float | None  # share of citations overlapping gold evidence (None: no citations)
    recall: float | None  # share of gold evidence spans touched by some citation (None: no gold)


def citation_scores(cited: Mapping[str, Sequence[Span]], gold: Mapping[str, Sequence[Span]]) -> CitationScores:
    """Citation precision and recall against gold spans, both keyed by document.

    A citation is correct when it overlaps a gold span of its document by at least one
    character; a gold span is covered when some citation overlaps it.
    """
    n_cit = sum(len(v) for v in cited.values())
    n_gold = sum(len(v) for v in gold.values())
    prec = None
    if n_cit:
        good = sum(1 for d, spans in cited.items() for c in spans if any(_overlap(c, g) for g in gold.get(d, ())))
        prec = good / n_cit
    rec = None
    if n_gold:
        cov = sum(1 for d, spans in gold.items() for g in spans if any(_overlap(c, g) for c in cited.get(d, ())))
        rec = cov / n_gold
    return CitationScores(prec, rec)


def span_coverage(cited: Sequence[Span], gold: Sequence[Span]) -> float:
    """Share of gold characters covered by the union of cited spans (one document)."""
    g = _merge(gold)
    total = sum(e - s for s, e in g)
    if not total:
        return 0.0
    c = _merge(cited)
    return sum(_overlap(a, b) for a in g for b in c) / total


def recall_at_k(retrieved: Sequence[tuple[str, Span]], gold: Mapping[str, Sequence[Span]], k: int) -> float | None:
    """Share of gold spans overlapped by at least one of the top-``k`` retrieved (doc, span)."""
    n_gold = sum(len(v) for v in gold.values())
    if not n_gold:
        return None
    top = retrieved[:k]
    cov = sum(1 for d, spans in gold.items() for g in spans if any(rd == d and _overlap(rs, g) for rd, rs in top))
    return cov / n_gold


# --- statistics ---------------------------------------------------------------------------
@dataclass(frozen=True)
class MeanCI:
    mean: float
    low: float
    high: float
    n: int

    def as_dict(self) -> dict[str, float]:
        return {"mean": self.mean, "low": self.low, "high": self.high, "n": self.n}


def bootstrap_ci(values: Sequence[float] | np.ndarray, n: int = 1000, seed: int = 0, alpha: float = 0.05) -> MeanCI:
    """Mean with a percentile bootstrap (1 - alpha) interval; deterministic for a seed.

    ``None``/NaN values are dropped. An empty input gives NaNs with ``n == 0``.
    """
    arr = np.asarray([v for v in values if v is not None], dtype=float)
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return MeanCI(float("nan"), float("nan"), float("nan"), 0)
    mean = float(arr.mean())
    if arr.size == 1:
        return MeanCI(mean, mean, mean, 1)
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, arr.size, size=(n, arr.size))
    means = arr[idx].mean(axis=1)
    lo, hi = np.quantile(means, [alpha / 2, 1 - alpha / 2])
    return MeanCI(mean, float(min(lo, mean)), float(max(hi, mean)), int(arr.size))


def paired_bootstrap_ci(a: Sequence[float], b: Sequence[float], n: int = 1000, seed: int = 0) -> MeanCI:
    """Bootstrap interval of mean(a - b) over paired observations."""
    d = np.asarray(a, dtype=float) - np.asarray(b, dtype=float)
    return bootstrap_ci(d, n=n, seed=seed)


__all__ = [
    "CitationScores",
    "MeanCI",
    "bootstrap_ci",
    "choice_accuracy",
    "citation_scores",
    "contains_answer",
    "exact_match",
    "extract_choice",
    "is_refusal",
    "normalize_answer",
    "paired_bootstrap_ci",
    "recall_at_k",
    "refusal_correct",
    "rouge_l",
    "span_coverage",
    "token_f1",
    "token_recall",
]
