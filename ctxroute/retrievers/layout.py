"""Line-level layout shared by the chunker: span helpers, table rows and tables, heading-like
lines, and the sections of a PDF (one per page, named by the section path in force).

Split from ``chunking.py``. Nothing here rewrites text: everything returns offsets.
"""
from __future__ import annotations

import re
from typing import Iterator

from ctxroute.types import Document

# --- low-level span helpers -------------------------------------------------------
_LINEBREAK = re.compile(r"\r\n|[\n\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")


def _strip(text: str, s: int, e: int) -> tuple[int, int]:
    while s < e and text[s].isspace():
        s += 1
    while e > s and text[e - 1].isspace():
        e -= 1
    return s, e


def _lines(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """(start, end) of each line in text[start:end], line breaks excluded."""
    pos = start
    for m in _LINEBREAK.finditer(text, start, end):
        yield pos, m.start()
        pos = m.end()
    if pos < end:
        yield pos, end


_TABLE_ROW = re.compile(r"\s*\|")
_COLUMN_GAP = re.compile(r"\S(?: {3,}|\t)\S")
# a row of a table as PDF extractors write it: a label, then two or more amounts
# ("Net product sales $ 59,340 $ 63,171", "Interest expense (617) (806)", "Gross margin 43.3 % 42.3 %")
_NUMERIC_ROW = re.compile(r"(?:^|.*?\s)(?>[$€£(\-—–]*\s*\d[\d,]*+(?:\.\d+)?\s*\)?\s*%?\s*){2,}$|.*?(?:\s+[-—–]){2,}\s*$")
_MAX_ROW_CHARS = 400


def is_table_row(line: str) -> bool:
    """A markdown table row or a line ending in two or more amounts (a PDF table row)."""
    if _TABLE_ROW.match(line):
        return True
    line = line.strip()
    return len(line) <= _MAX_ROW_CHARS and bool(_NUMERIC_ROW.fullmatch(line))


_SMALL_WORDS = frozenset("a an and as at by for from in into of on or the to with vs via per".split())
_NUMBERED_HEADING = re.compile(
    r"(?:(?:chapter|part|section|book|appendix|article|act|scene)\s+[\divxlcdm]+\b.*"
    r"|\d+(?:\.\d+)*\.?\s+[^\W\d_].*"
    r"|[IVXLCDM]+\.\s+\S.*)",
    re.IGNORECASE,
)
_MAX_HEADING_CHARS = 80
_MAX_HEADING_WORDS = 12


def _looks_like_heading(line: str) -> bool:
    if len(line) > _MAX_HEADING_CHARS or line[-1] in ".,;:!\"'”’)|":
        return False
    if "|" in line or "\t" in line or _COLUMN_GAP.search(line) or is_table_row(line):
        return False  # a table's header or row, not a heading
    words = line.split()
    if not words or len(words) > _MAX_HEADING_WORDS:
        return False
    if _NUMBERED_HEADING.fullmatch(line):
        return True
    letters = [c for c in line if c.isalpha()]
    if len(letters) < 2:
        return False
    if all(not c.islower() for c in letters) and any(c.isupper() for c in letters):
        return True  # ALL CAPS
    alpha_words = [w for w in words if any(c.isalpha() for c in w)]
    significant = [w for k, w in enumerate(alpha_words) if k == 0 or w.lower() not in _SMALL_WORDS]
    return bool(significant) and all(next(c for c in w if c.isalpha()).isupper() for w in significant)


_PDF_PART = re.compile(r"part\s+[ivx\d]+\b.*", re.IGNORECASE)
_PDF_ITEM = re.compile(r"(?:item|article|chapter)\s+\d+[a-z]?\b.*", re.IGNORECASE)
_PDF_NOTE = re.compile(r"(?:note|section)\s+\d+\b.*", re.IGNORECASE)
_MAX_PDF_HEADING_CHARS = 120
_TOP_LINES = 4
_COLUMN_HEADER = re.compile(
    r"\b(?:months|weeks|quarters?|years?|periods?)\s+ended\b|\bas\s+of\b|^(?:total|increase|decrease|change)\b", re.I
)


def pdf_heading_level(line: str) -> int:
    """1 (part), 2 (item/article/chapter), 3 (other heading) or 0 (not a heading) for a PDF line."""
    if len(line) > _MAX_PDF_HEADING_CHARS or is_table_row(line) or line.startswith(("#", "//", "/*")):
        return 0
    if _PDF_PART.fullmatch(line) and len(line.split()) <= 8:
        return 1
    if _PDF_ITEM.fullmatch(line):
        return 2
    if _PDF_NOTE.fullmatch(line):
        return 3
    if (
        len(line) <= _MAX_HEADING_CHARS
        and _looks_like_heading(line)
        and sum(c.isalpha() for c in line) >= 8
        and len(line.split()) >= 2
        and len(re.findall(r"\d+", line)) < 2
        and not _COLUMN_HEADER.search(line)
        and line[0].isalpha()
        and line[0].isupper()
        and not re.search(r"[☒☐]|\.\s", line)
    ):
        return 3
    return 0


def _pdf_sections(doc: Document, furniture: list[tuple[int, int]]) -> list[tuple[int, int, str]]:
    """One section per page; its heading is the section path in force (part > item > heading) and the page."""
    text = doc.text
    starts = list(doc.page_starts) + [len(text)]
    skip = set(furniture)
    path: dict[int, str] = {}
    out = []
    for i in range(len(doc.page_starts)):
        ps, pe = max(0, starts[i]), min(len(text), max(starts[i], starts[i + 1]))
        s, e = _strip(text, ps, pe)
        if s >= e:
            continue
        first: dict[int, str] | None = None  # the path for the page: after a heading near its top
        seen = 0
        for ls, le in _lines(text, s, e):
            a, b = _strip(text, ls, le)
            if a == b or (a, b) in skip:
                continue
            seen += 1
            level = pdf_heading_level(text[a:b])
            if level:
                path = {k: v for k, v in path.items() if k < level}
                path[level] = " ".join(text[a:b].split())
                if seen <= _TOP_LINES:  # headings at the top of the page name it
                    first = dict(path)
            if first is None and seen == _TOP_LINES:
                first = dict(path)
        shown = first if first is not None else path
        trail = " > ".join(shown[k] for k in sorted(shown))
        out.append((s, e, f"{trail} (page {i + 1})" if trail else f"Page {i + 1}"))
    return out


def _table_header(text: str, spans: list[tuple[int, int, int]], table: list[int], t: int) -> str:
    """The header lines of table ``t``: its leading lines up to its first labelled row (at most 5)."""
    lines: list[str] = []
    for k, tk in enumerate(table):
        if tk != t:
            continue
        line = " ".join(text[spans[k][0]:spans[k][1]].split())
        if is_table_row(line) and re.search(r"[A-Za-z]{3,}", line) and not _TABLE_ROW.match(line):
            break
        lines.append(line)
        if len(lines) >= 5:
            break
    return " ".join(lines)[:200]


def _tables(text: str, spans: list[tuple[int, int, int]]) -> list[int]:
    """Table number of each sentence span (-1: none): runs of >= 2 table rows, with up to
    two short non-row lines right before a run (its column headers) joining the table."""
    rows = [is_table_row(text[a:b]) for a, b, _ in spans]
    out = [-1] * len(spans)
    t = -1
    k = 0
    while k < len(spans):
        if not rows[k]:
            k += 1
            continue
        m = k
        while m < len(spans):
            if rows[m]:
                m += 1
                continue
            # up to two short label lines ("Operating expenses:") inside a table keep it going
            gap = m
            while gap < len(spans) and gap - m < 2 and not rows[gap] and len(text[spans[gap][0]:spans[gap][1]]) <= 80:
                gap += 1
            if gap < len(spans) and gap > m and rows[gap]:
                m = gap
                continue
            break
        if m - k >= 2:
            t += 1
            h = k
            while h > 0 and k - h < 2 and not rows[h - 1] and out[h - 1] < 0 and len(text[spans[h - 1][0]:spans[h - 1][1]]) <= 80:
                h -= 1
            for x in range(h, m):
                out[x] = t
        k = m
    return out
