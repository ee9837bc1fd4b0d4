"""Sentence splitting for the chunker (``chunking.py``): a regex splitter that knows
abbreviations (Mr., Dr., e.g., U.S.), initials, decimals, ellipses and CJK punctuation; list
items, table rows, headings and short lines are sentences of their own; hard-wrapped prose
lines are joined; a sentence over the token limit is split at whitespace. Offsets are absolute."""
from __future__ import annotations

import re
from typing import Iterator

from ctxroute.retrievers.layout import _COLUMN_GAP, _lines, _strip, is_table_row
from ctxroute.retrievers.tokens import TokenCounter


# --- sentences --------------------------------------------------------------------
# never end a sentence: titles, Latin abbreviations
_ABBREVIATIONS = frozenset(
    """mr mrs ms messrs dr prof sr jr st mt rev hon gen col lt sgt capt cmdr adm gov sen rep pres
    vs e.g i.e cf al approx ca viz resp jan feb apr jun jul aug sep sept oct nov dec""".split()
)
# end a sentence unless a number follows: "No. 5", "Fig. 3", "pp. 10-12"
_NUMBER_ABBREVIATIONS = frozenset("no nos fig figs vol vols pp eq eqs sec secs ch chap ref refs op".split())
_SENT_END = re.compile(
    r"(?:\.{2,}|…+|[.!?]+)[\"'”’»)\]]*(?=\s)"  # western end followed by whitespace
    r"|[。！？]+[」』”’)）]*"  # CJK ends need no space
    r"|(?<=[a-z0-9)\]])[.!?](?=[A-Z][a-z])"  # "in 1544.The next": text that lost its spaces
)
_INITIALISM = re.compile(r"(?:[A-Za-z]\.)+[A-Za-z]")
_ENUMERATOR = re.compile(r"\(?(?:\d+(?:\.\d+)*|[ivxlcdmIVXLCDM]{1,6}|[A-Za-z])")
_LIST_ITEM = re.compile(r"\s*(?:[-*+•▪◦‣]\s|\d+(?:\.\d+)*[.)]\s|\(?[A-Za-z][.)]\s)")
_MD_HEADING_LINE = re.compile(r" {0,3}(#{1,6})[ \t]+(\S.*?)(?:[ \t]+#+)?[ \t]*$")
_FENCE = re.compile(r"\s*(?:```|~~~)")
_NOISE = re.compile(r"[\s|:\-=*_`~+#]*")
_WRAP_MIN_WIDTH = 40
_WRAP_FRACTION = 0.6


def _is_special_line(line: str) -> bool:
    """List items, table rows (markdown, space-aligned columns or label + amounts) and headings stand alone."""
    return bool(
        _LIST_ITEM.match(line) or _MD_HEADING_LINE.match(line) or _COLUMN_GAP.search(line) or is_table_row(line)
    )


def _units(text: str, start: int, end: int) -> Iterator[tuple[int, int]]:
    """Line-level units: special lines stand alone, hard-wrapped prose lines are joined."""
    in_fence = False
    para: list[tuple[int, int, bool]] = []  # (start, end, special)

    def flush() -> Iterator[tuple[int, int]]:
        if not para:
            return
        width = max(e - s for s, e, _ in para)
        u_start, u_end = para[0][0], para[0][1]
        for (s0, e0, sp0), (s1, e1, sp1) in zip(para, para[1:]):
            join = (
                not sp0
                and not sp1
                and width >= _WRAP_MIN_WIDTH
                and (e0 - s0) >= _WRAP_FRACTION * width
            )
            if join:
                u_end = e1
            else:
                yield u_start, u_end
                u_start, u_end = s1, e1
        yield u_start, u_end
        para.clear()

    for ls, le in _lines(text, start, end):
        s, e = _strip(text, ls, le)
        if s == e:
            yield from flush()
            continue
        line = text[s:e]
        if _FENCE.match(line):
            in_fence = not in_fence
            yield from flush()
            yield s, e
            continue
        if in_fence:
            yield from flush()
            yield s, e
            continue
        para.append((s, e, _is_special_line(line)))
    yield from flush()


def _is_boundary(text: str, unit_start: int, sent_start: int, m: re.Match[str], unit_end: int) -> bool:
    punct = m.group()
    if punct[0] in "。！？":
        return True
    nxt = m.end()
    while nxt < unit_end and text[nxt].isspace():
        nxt += 1
    if nxt >= unit_end:
        return True
    if text[nxt].islower():
        return False  # "approx. ten", '"Really?" he asked', "... and then"
    if punct.startswith(".") and not punct.startswith(".."):
        # the word before the dot
        w = m.start()
        while w > unit_start and not text[w - 1].isspace():
            w -= 1
        token = text[w : m.start()].lstrip("([{\"'“‘")
        lowered = token.lower()
        if lowered in _ABBREVIATIONS:
            return False
        if lowered in _NUMBER_ABBREVIATIONS and text[nxt].isdigit():
            return False
        if len(token) == 1 and token.isalpha():
            return False  # initials: "J. K. Rowling"
        if _INITIALISM.fullmatch(token):
            return False  # "U.S", "e.g", "i.e"
        if w == _strip(text, sent_start, m.start())[0] and _ENUMERATOR.fullmatch(token):
            return False  # "1. Method", "IV. Results"
    return True


def split_sentences(text: str, start: int = 0, end: int | None = None) -> list[tuple[int, int]]:
    """Sentence spans of ``text[start:end]``, absolute and stripped of whitespace."""
    end = len(text) if end is None else end
    spans: list[tuple[int, int]] = []
    for us, ue in _units(text, start, end):
        pos = us
        for m in _SENT_END.finditer(text, us, ue):
            if _is_boundary(text, us, pos, m, ue):
                s, e = _strip(text, pos, m.end())
                if s < e:
                    spans.append((s, e))
                pos = m.end()
        s, e = _strip(text, pos, ue)
        if s < e:
            spans.append((s, e))
    useful = [(s, e) for s, e in spans if not _NOISE.fullmatch(text, s, e)]
    return useful or spans  # keep separator-only lines when nothing else is there


def _split_long(text: str, s: int, e: int, limit: int, counter: TokenCounter) -> list[tuple[int, int, int]]:
    """Split an over-long span at whitespace (or, for one huge word, inside it); (start, end, tokens)."""
    n = counter.count(text[s:e])
    if n <= limit:
        return [(s, e, n)]
    words = [(m.start(), m.end()) for m in re.finditer(r"\S+", text[s:e])]
    pieces: list[tuple[int, int, int]] = []
    cur_start: int | None = None
    cur_end = 0
    running = 0
    for ws, we in words:
        ws, we = ws + s, we + s
        wt = counter.count(text[ws:we])
        if wt > limit:
            if cur_start is not None:
                pieces.extend(_exact(text, cur_start, cur_end, limit, counter))
                cur_start, running = None, 0
            pieces.extend(_hard_split(text, ws, we, limit, counter))
            continue
        if cur_start is not None and running + wt > limit:
            pieces.extend(_exact(text, cur_start, cur_end, limit, counter))
            cur_start, running = None, 0
        if cur_start is None:
            cur_start = ws
        cur_end = we
        running += wt
    if cur_start is not None:
        pieces.extend(_exact(text, cur_start, cur_end, limit, counter))
    return pieces


def _exact(text: str, s: int, e: int, limit: int, counter: TokenCounter) -> list[tuple[int, int, int]]:
    """Verify a packed piece against the exact count; split it in half at whitespace if over."""
    n = counter.count(text[s:e])
    if n <= limit:
        return [(s, e, n)]
    spaces = [m.start() for m in re.finditer(r"\s+", text[s:e])]
    if not spaces:
        return _hard_split(text, s, e, limit, counter)
    mid = s + spaces[len(spaces) // 2]
    left = _strip(text, s, mid)
    right = _strip(text, mid, e)
    return _exact(text, *left, limit, counter) + _exact(text, *right, limit, counter)


def _hard_split(text: str, s: int, e: int, limit: int, counter: TokenCounter) -> list[tuple[int, int, int]]:
    pieces: list[tuple[int, int, int]] = []
    pos = s
    while pos < e:
        width = min(e - pos, limit * 2)
        while True:
            n = counter.count(text[pos : pos + width])
            if n <= limit or width == 1:
                break
            width = max(1, width // 2)
        pieces.append((pos, pos + width, n))
        pos += width
    return pieces


