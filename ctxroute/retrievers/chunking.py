"""Hierarchical chunking: document > section > passage > sentence.

Every chunk carries absolute character offsets into ``Document.text``. Offsets are produced
while splitting (regex ``finditer`` and index arithmetic), never recovered with ``str.find``,
so a repeated paragraph gets two different spans and ``doc.text[c.start:c.end]`` is always
the chunk's text.

- Sections: markdown/HTML ``#`` headings; one per page for PDFs; for plain text, short
  standalone heading-like lines (Title Case, ALL CAPS, "2.3 Results", "Chapter IV"), with
  over-long sections regrouped at blank lines into parts of about ``section_tokens``.
- Sentences: a regex splitter that knows abbreviations (Mr., Dr., e.g., U.S.), initials,
  decimals, ellipses and CJK punctuation; list items, table rows, headings and short lines
  are sentences of their own; hard-wrapped prose lines are joined. A sentence longer than
  ``max_sentence_tokens`` is split at whitespace.
- Passages: consecutive sentences of one section packed up to ``passage_tokens``, with
  ``overlap_sentences`` whole sentences shared between neighbours.
"""
from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from typing import Any, Mapping

from ctxroute.errors import InputError
from ctxroute.retrievers.furniture import furniture_spans, split_around
from ctxroute.retrievers.layout import (  # noqa: F401 - is_table_row, pdf_heading_level: public here too
    _LINEBREAK,
    _lines,
    _looks_like_heading,
    _pdf_sections,
    _strip,
    _table_header,
    _tables,
    is_table_row,
    pdf_heading_level,
)
from ctxroute.retrievers.sentences import (  # noqa: F401 - split_sentences: public here too
    _FENCE, _MD_HEADING_LINE, _split_long, split_sentences,
)
from ctxroute.retrievers.tokens import TokenCounter, get_counter
from ctxroute.types import Chunk, Document, Level


@dataclass(frozen=True)
class ChunkingConfig:
    """How documents are split; stored in the collection manifest.

    A sentence is never longer than ``min(max_sentence_tokens, passage_tokens)`` tokens.
    """

    passage_tokens: int = 256  # target passage size in tokens
    overlap_sentences: int = 1  # overlap between consecutive passages, whole sentences
    max_sentence_tokens: int = 200  # a longer "sentence" is split at whitespace
    encoding: str = "cl100k_base"
    section_tokens: int = 2000  # plain text: over-long sections are regrouped at blank lines

    def __post_init__(self) -> None:
        for name, low in (("passage_tokens", 8), ("max_sentence_tokens", 4), ("section_tokens", 64)):
            value = getattr(self, name)
            if not isinstance(value, int) or value < low:
                raise InputError(f"ChunkingConfig.{name}={value!r}: must be an integer >= {low}", **{name: value})
        if not isinstance(self.overlap_sentences, int) or self.overlap_sentences < 0:
            raise InputError(
                f"ChunkingConfig.overlap_sentences={self.overlap_sentences!r}: must be an integer >= 0",
                overlap_sentences=self.overlap_sentences,
            )

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "ChunkingConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InputError(
                f"unknown chunking settings {unknown}; known: {sorted(known)} (was the index built by a newer version?)",
                unknown=unknown,
            )
        return cls(**dict(data))


@dataclass(frozen=True)
class DocumentChunks:
    """The hierarchy of one document; every chunk's offsets index ``document`` text."""

    document: Chunk
    sections: tuple[Chunk, ...]
    passages: tuple[Chunk, ...]
    sentences: tuple[Chunk, ...]

    def all(self) -> tuple[Chunk, ...]:
        return (self.document, *self.sections, *self.passages, *self.sentences)


# --- sections ---------------------------------------------------------------------
def _md_heading_lines(text: str) -> list[tuple[int, int, str]]:
    """(line start, line end, title) of ``#`` heading lines outside code fences."""
    out: list[tuple[int, int, str]] = []
    in_fence = False
    for ls, le in _lines(text, 0, len(text)):
        line = text[ls:le]
        if _FENCE.match(line):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        m = _MD_HEADING_LINE.match(line)
        if m:
            out.append((ls, le, m.group(2).strip()))
    return out


def _text_heading_lines(text: str) -> list[tuple[int, int, str]]:
    """Heuristic headings of plain text: standalone short heading-like lines after a blank line."""
    out: list[tuple[int, int, str]] = []
    lines = list(_lines(text, 0, len(text)))
    prev_blank = True
    for i, (ls, le) in enumerate(lines):
        s, e = _strip(text, ls, le)
        if s == e:
            prev_blank = True
            continue
        line = text[s:e]
        m = _MD_HEADING_LINE.match(text, ls, le)
        if m:
            out.append((ls, le, m.group(2).strip()))
        elif prev_blank and i + 1 < len(lines) and _looks_like_heading(line):
            out.append((ls, le, line))
        prev_blank = False
    return out


def _sections_from_headings(
    text: str, headings: list[tuple[int, int, str]], preamble_title: str
) -> list[tuple[int, int, str]]:
    """(start, end, heading) sections split at heading lines; heading-only sections merge forward."""
    bounds: list[tuple[int, str, int]] = []  # (start, title, heading line end)
    if not headings or _strip(text, 0, headings[0][0])[0] < _strip(text, 0, headings[0][0])[1]:
        bounds.append((0, preamble_title, 0))
    bounds.extend((ls, title, le) for ls, le, title in headings)
    raw: list[tuple[int, int, str, bool]] = []
    for i, (b, title, hend) in enumerate(bounds):
        nb = bounds[i + 1][0] if i + 1 < len(bounds) else len(text)
        s, e = _strip(text, b, nb)
        if s == e:
            continue
        body_empty = hend > b and _strip(text, hend, nb)[0] == _strip(text, hend, nb)[1]
        raw.append((s, e, title, body_empty))
    merged: list[tuple[int, int, str]] = []
    pending: int | None = None
    for s, e, title, body_empty in raw:
        start = s if pending is None else pending
        if body_empty:
            if pending is None:
                pending = s
            continue
        merged.append((start, e, title))
        pending = None
    if pending is not None:  # trailing heading-only sections
        last_end = raw[-1][1]
        if merged:
            ps, _, pt = merged[-1]
            merged[-1] = (ps, last_end, pt)
        else:
            merged.append((pending, last_end, raw[-1][2]))
    return merged


_BLANK_LINE = re.compile(r"\n[ \t\r\x0b\x0c]*\n")


def _pieces_between(text: str, s: int, e: int, separator: re.Pattern[str]) -> list[tuple[int, int]]:
    out: list[tuple[int, int]] = []
    pos = s
    for m in separator.finditer(text, s, e):
        ps, pe = _strip(text, pos, m.start())
        if ps < pe:
            out.append((ps, pe))
        pos = m.end()
    ps, pe = _strip(text, pos, e)
    if ps < pe:
        out.append((ps, pe))
    return out


def _paragraph_groups(
    text: str, s: int, e: int, heading: str, limit: int, counter: TokenCounter
) -> list[tuple[int, int, str]]:
    """Regroup an over-long plain-text section into parts of about ``limit`` tokens, cutting at
    blank lines, else at line breaks, else at sentence ends."""
    pieces: list[tuple[int, int, int]] = []
    for ps, pe in _pieces_between(text, s, e, _BLANK_LINE):
        n = counter.count(text[ps:pe])
        if n <= limit:
            pieces.append((ps, pe, n))
            continue
        for ls, le in _pieces_between(text, ps, pe, _LINEBREAK):
            m = counter.count(text[ls:le])
            if m <= limit:
                pieces.append((ls, le, m))
            else:  # cut at sentence starts; pieces stay contiguous so dropped noise ("|") stays inside
                cuts = [ls] + [a for a, _ in split_sentences(text, ls, le)[1:]] + [le]
                for a, b in zip(cuts, cuts[1:]):
                    a, b = _strip(text, a, b)
                    if a < b:
                        pieces.append((a, b, counter.count(text[a:b])))
    groups: list[tuple[int, int]] = []
    g_start, g_end, g_tokens = pieces[0][0], pieces[0][1], 0
    for ps, pe, n in pieces:
        if g_tokens and g_tokens + n > limit:
            groups.append((g_start, g_end))
            g_start, g_tokens = ps, 0
        g_end = pe
        g_tokens += n
    groups.append((g_start, g_end))
    if len(groups) == 1:
        return [(s, e, heading)]
    n_groups = len(groups)
    label = heading or "Part"
    return [(gs, ge, f"{label} ({i}/{n_groups})") for i, (gs, ge) in enumerate(groups, start=1)]


def _sections(
    doc: Document, config: ChunkingConfig, counter: TokenCounter, furniture: list[tuple[int, int]] = ()
) -> list[tuple[int, int, str]]:
    text = doc.text
    if doc.format == "pdf" and doc.page_starts:
        return _pdf_sections(doc, list(furniture))
    if doc.format in ("md", "html"):
        return _sections_from_headings(text, _md_heading_lines(text), doc.title)
    sections = _sections_from_headings(text, _text_heading_lines(text), doc.title)
    out = []
    for s, e, heading in sections:
        if (e - s) > config.section_tokens * 2 and counter.count(text[s:e]) > config.section_tokens:
            out.extend(_paragraph_groups(text, s, e, heading, config.section_tokens, counter))
        else:
            out.append((s, e, heading))
    return out


# --- passages ---------------------------------------------------------------------
def _pack(
    tokens: list[int], gaps: list[int], budget: int, overlap: int, table: list[int] | None = None
) -> list[tuple[int, int]]:
    """Index ranges [i, j) of sentences per passage: greedy up to ``budget`` with overlap.

    ``gaps[k]`` is the token count of the whitespace between sentence k-1 and k. ``table[k]``
    numbers the table sentence k belongs to (-1: none): a table that fits in ``budget`` is
    never cut; a passage ends before it instead, and the table starts the next one (no overlap).
    """
    out: list[tuple[int, int]] = []
    n = len(tokens)
    table = table if table is not None else [-1] * n
    first: dict[int, int] = {}
    size: dict[int, int] = {}
    for k, t in enumerate(table):
        if t >= 0:
            if t not in first:
                first[t] = k
                size[t] = tokens[k]
            else:
                size[t] += gaps[k] + tokens[k]
    i = 0
    while i < n:
        j = i + 1
        total = tokens[i]
        while j < n and total + gaps[j] + tokens[j] <= budget:
            total += gaps[j] + tokens[j]
            j += 1
        if j < n and table[j] >= 0 and table[j] == table[j - 1]:
            b = first[table[j]]
            if b > i and size[table[j]] <= budget:
                j = b  # end before the table rather than cut it
        out.append((i, j))
        if j >= n:
            break
        i = j if (table[j] >= 0 and first[table[j]] == j) else max(i + 1, j - overlap)
    return out


def chunk_document(doc: Document, config: ChunkingConfig = ChunkingConfig()) -> DocumentChunks:
    """Split ``doc`` into its section, passage and sentence chunks (offsets absolute)."""
    counter = get_counter(config.encoding)
    text = doc.text
    max_sentence = min(config.max_sentence_tokens, config.passage_tokens)
    document = Chunk(
        id=f"{doc.id}:d",
        doc_id=doc.id,
        level=Level.DOCUMENT,
        start=0,
        end=len(text),
        parent_id=None,
        ordinal=0,
        n_tokens=counter.count(text),
        heading=doc.title,
    )
    sections: list[Chunk] = []
    passages: list[Chunk] = []
    sentences: list[Chunk] = []
    furniture = furniture_spans(doc) if doc.page_starts else []
    s_ord = 0
    for ss, se, heading in _sections(doc, config, counter, furniture):
        spans: list[tuple[int, int, int]] = []
        for ps_, pe_ in split_around(ss, se, furniture) if furniture else [(ss, se)]:
            for a, b in split_sentences(text, ps_, pe_):
                spans.extend(_split_long(text, a, b, max_sentence, counter))
        if not spans:
            continue  # a page of furniture only
        section = Chunk(
            id=f"{doc.id}:s{s_ord}",
            doc_id=doc.id,
            level=Level.SECTION,
            start=ss,
            end=se,
            parent_id=document.id,
            ordinal=s_ord,
            n_tokens=counter.count(text[ss:se]),
            heading=heading,
        )
        s_ord += 1
        sections.append(section)
        for a, b, n in spans:
            sentences.append(
                Chunk(
                    id=f"{doc.id}:t{len(sentences)}",
                    doc_id=doc.id,
                    level=Level.SENTENCE,
                    start=a,
                    end=b,
                    parent_id=section.id,
                    ordinal=len(sentences),
                    n_tokens=n,
                    heading=heading,
                )
            )
        gaps = [0] + [counter.count(text[a[1] : b[0]]) for a, b in zip(spans, spans[1:])]
        table = _tables(text, spans)
        for i, j in _pack([n for _, _, n in spans], gaps, config.passage_tokens, config.overlap_sentences, table):
            ps, pe = spans[i][0], spans[j - 1][1]
            p_heading = heading
            if table[i] >= 0 and i > 0 and table[i - 1] == table[i]:  # a table cut by rows: repeat its header
                header = _table_header(text, spans, table, table[i])
                if header:
                    p_heading = f"{heading} | {header}"
            passages.append(
                Chunk(
                    id=f"{doc.id}:p{len(passages)}",
                    doc_id=doc.id,
                    level=Level.PASSAGE,
                    start=ps,
                    end=pe,
                    parent_id=section.id,
                    ordinal=len(passages),
                    n_tokens=counter.count(text[ps:pe]),
                    heading=p_heading,
                )
            )
    return DocumentChunks(document, tuple(sections), tuple(passages), tuple(sentences))
