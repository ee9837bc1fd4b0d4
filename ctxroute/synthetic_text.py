"""Text assembly with recorded spans for the synthetic demo corpus (``ctxroute.synthetic``).

A report is a title and ``_Section``s of blocks (paragraphs, lists/tables, sub-headings) made
of ``(text, key)`` pieces; ``_render`` joins them into markdown and returns the character span
of every keyed piece, so gold evidence is recorded as the text is built, never searched for.
Standard library only (layer 0).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Sequence


class _Builder:
    """Appends text pieces and records the span of each keyed piece as it goes."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        self.pos = 0
        self.spans: dict[str, tuple[int, int]] = {}
        self.words = 0

    def add(self, text: str, key: str | None = None) -> None:
        if key is not None:
            self.spans[key] = (self.pos, self.pos + len(text))
        self.parts.append(text)
        self.pos += len(text)
        self.words += len(text.split())

    def text(self) -> str:
        return "".join(self.parts)


# a block is a paragraph (list of (sentence, key) pieces joined by spaces), a list or table
# (list of (line, key) pieces joined by newlines), or a heading line
Piece = tuple[str, "str | None"]


@dataclass
class _Section:
    title: str
    blocks: list[tuple[str, list[Piece]]]  # ("para" | "lines" | "h3", pieces)


def _render(title: str, sections: Sequence[_Section]) -> tuple[str, dict[str, tuple[int, int]]]:
    b = _Builder()
    b.add(f"# {title}\n\n")
    for si, sec in enumerate(sections):
        if si:
            b.add("\n\n")
        b.add(f"## {sec.title}\n\n")
        for bi, (kind, pieces) in enumerate(sec.blocks):
            if bi:
                b.add("\n\n")
            if kind == "h3":
                b.add(f"### {pieces[0][0]}")
                continue
            sep = " " if kind == "para" else "\n"
            for pi, (piece, key) in enumerate(pieces):
                if pi:
                    b.add(sep)
                b.add(piece, key)
    b.add("\n")
    return b.text(), b.spans


def _money(x: float) -> str:
    return f"{x:,.1f}"


def _words(sections: Iterable[_Section]) -> int:
    return sum(len(p.split()) for s in sections for _, pieces in s.blocks for p, _ in pieces)
