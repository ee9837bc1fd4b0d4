"""Page furniture: running headers, footers and page numbers of paged documents (PDFs).

Detected per document from its exact page map: a short line among the first or last two
lines of a page is furniture when it recurs in the same region on many pages, either word for
word or with its numbers counting up with the pages ("Page 12 of 40", "Form 10-Q | 12"), or
when it is a bare page number. The result is a
list of character spans to *exclude* from sentences and passages; the text itself is never
rewritten, so every other offset stays exact.
"""
from __future__ import annotations

import re
from collections import Counter, defaultdict

from ctxroute.types import Document

_REGION_LINES = 2  # lines at the top and the bottom of each page that may be furniture
_MAX_CHARS = 120
_MIN_PAGES = 3
_MIN_SHARE = 0.3  # of the document's pages (alternating even/odd headers each reach ~0.5)
_MIN_SHARE_COUNTING = 0.1
_PAGE_NUMBER = re.compile(
    r"(?:page\s+)?(?:\d{1,4}|[ivxlc]{1,6})(?:\s*(?:of|/)\s*\d{1,4})?|[-–—]\s*\d{1,4}\s*[-–—]", re.IGNORECASE
)
_LINE = re.compile(r"[^\n]+")


def _key(line: str) -> str:
    return re.sub(r"\d+", "#", " ".join(line.lower().split()))


def _region_lines(text: str, start: int, end: int) -> list[tuple[int, int, str]]:
    """(start, end, where) of the first and last non-blank lines of ``text[start:end]``."""
    lines = []
    for m in _LINE.finditer(text, start, end):
        s, e = m.start(), m.end()
        while s < e and text[s].isspace():
            s += 1
        while e > s and text[e - 1].isspace():
            e -= 1
        if s < e:
            lines.append((s, e))
    top = [(s, e, "top") for s, e in lines[:_REGION_LINES]]
    bottom = [(s, e, "bottom") for s, e in lines[-_REGION_LINES:] if (s, e, "top") not in top]
    return top + bottom


def furniture_spans(doc: Document) -> list[tuple[int, int]]:
    """Sorted (start, end) spans of page furniture in ``doc.text``; ``[]`` for unpaged documents."""
    starts = list(doc.page_starts)
    n = len(starts)
    if n < _MIN_PAGES:
        return []
    text = doc.text
    bounds = starts + [len(text)]
    exact: dict[tuple[str, str], set[int]] = defaultdict(set)
    # digits masked: each of the line's numbers minus the page index ("Page 7 of 40" on page
    # index 6 gives offset 1 for its first number); a running footer keeps one offset, other lines do not
    masked: dict[tuple[str, str], Counter[int]] = defaultdict(Counter)
    candidates: list[tuple[int, int, str, str, int]] = []
    for i in range(n):
        for s, e, where in _region_lines(text, bounds[i], bounds[i + 1]):
            if e - s > _MAX_CHARS:
                continue
            line = " ".join(text[s:e].lower().split())
            exact[(where, line)].add(i)
            k = _key(line)
            for j, num in enumerate(re.findall(r"\d+", line)[:4]):
                masked[(where, f"{j}:{k}")][int(num[:6]) - i] += 1
            candidates.append((s, e, where, line, i))
    need = max(_MIN_PAGES, _MIN_SHARE * n)
    # a line whose number counts up with the pages is a running header even when only one part
    # of the document carries it ("Notes to Financial Statements 12" on the notes' pages)
    need_counting = max(_MIN_PAGES, _MIN_SHARE_COUNTING * n)
    out: set[tuple[int, int]] = set()
    for s, e, where, line, _ in candidates:
        k = _key(line)
        counting = not line.endswith((".", ":", ";", ",")) and any(  # prose is not a running footer
            masked[(where, f"{j}:{k}")].most_common(1)[0][1] >= need_counting for j in range(min(4, k.count("#")))
        )
        if len(exact[(where, line)]) >= need or counting or _PAGE_NUMBER.fullmatch(line):
            out.add((s, e))
    return sorted(out)


def split_around(start: int, end: int, spans: list[tuple[int, int]]) -> list[tuple[int, int]]:
    """The parts of ``[start, end)`` outside ``spans`` (sorted, non-overlapping)."""
    out: list[tuple[int, int]] = []
    pos = start
    for s, e in spans:
        if e <= pos or s >= end:
            continue
        if s > pos:
            out.append((pos, s))
        pos = max(pos, e)
    if pos < end:
        out.append((pos, end))
    return out
