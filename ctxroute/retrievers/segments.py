"""Rows of an index kept in immutable segments, some rows dead (tombstoned).

The sparse and dense indexes grow by appending a segment per write and shrink by marking
rows dead, so a write costs in proportion to what it changes; searches see only the live
rows, numbered ``0 .. n_live-1`` in segment order (the collection's passage order).
``RowSegments`` does that bookkeeping for both: segment sizes, dead masks, and the mapping
between (segment, row) and live position. Instances are never mutated: every change
returns a new one, so a reader holding the old one is unaffected.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property
from typing import Any, Sequence

import numpy as np

from ctxroute.errors import InputError


class RowSegments:
    """Sizes and dead masks of a list of segments; live positions run through them in order."""

    __slots__ = ("sizes", "dead", "offsets", "_live_rows", "_rank")

    def __init__(self, sizes: Sequence[int] = (), dead: Sequence[np.ndarray | None] | None = None) -> None:
        self.sizes: tuple[int, ...] = tuple(int(n) for n in sizes)
        masks = tuple(dead) if dead is not None else (None,) * len(self.sizes)
        if len(masks) != len(self.sizes):
            raise InputError(f"{len(self.sizes)} segments but {len(masks)} dead masks")
        clean: list[np.ndarray | None] = []
        for n, m in zip(self.sizes, masks):
            if m is not None:
                m = np.asarray(m, dtype=bool)
                if m.shape != (n,):
                    raise InputError(f"dead mask of shape {m.shape} for a segment of {n} rows")
                if not m.any():
                    m = None
            clean.append(m)
        self.dead: tuple[np.ndarray | None, ...] = tuple(clean)
        live = [n - (int(m.sum()) if m is not None else 0) for n, m in zip(self.sizes, self.dead)]
        self.offsets = np.zeros(len(live) + 1, dtype=np.int64)
        np.cumsum(live, out=self.offsets[1:])
        self._live_rows: list[np.ndarray | None] = [None if m is None else np.flatnonzero(~m) for m in self.dead]
        # rank[row] = live position of ``row`` inside its segment (dead rows: meaningless)
        self._rank: list[np.ndarray | None] = [None if m is None else np.cumsum(~m) - 1 for m in self.dead]

    def __len__(self) -> int:
        return len(self.sizes)

    @property
    def n_live(self) -> int:
        return int(self.offsets[-1])

    @property
    def n_rows(self) -> int:
        return sum(self.sizes)

    @property
    def n_dead(self) -> int:
        return self.n_rows - self.n_live

    def live_mask(self, seg: int) -> np.ndarray | None:
        """True for the live rows of segment ``seg``; None when all are live."""
        m = self.dead[seg]
        return None if m is None else ~m

    def live_rows(self, seg: int) -> np.ndarray:
        rows = self._live_rows[seg]
        return np.arange(self.sizes[seg]) if rows is None else rows

    def positions(self, seg: int, rows: np.ndarray) -> np.ndarray:
        """Live positions of live ``rows`` of segment ``seg``."""
        rank = self._rank[seg]
        return self.offsets[seg] + (rows if rank is None else rank[rows])

    def locate(self, positions: Sequence[int]) -> list[tuple[int, np.ndarray]]:
        """(segment, rows) for live ``positions``, grouped by segment."""
        pos = np.unique(np.asarray(list(positions), dtype=np.int64))
        if pos.size and (pos[0] < 0 or pos[-1] >= self.n_live):
            raise InputError(f"position out of range 0..{self.n_live - 1}")
        seg_of = np.searchsorted(self.offsets, pos, side="right") - 1
        out = []
        for seg in np.unique(seg_of):
            local = pos[seg_of == seg] - self.offsets[seg]
            out.append((int(seg), self.live_rows(int(seg))[local]))
        return out

    # --- new instances ----------------------------------------------------------------
    def appended(self, n: int) -> "RowSegments":
        return RowSegments((*self.sizes, n), (*self.dead, None))

    def without(self, positions: Sequence[int]) -> "RowSegments":
        """The same segments with the rows at live ``positions`` dead."""
        dead = list(self.dead)
        for seg, rows in self.locate(positions):
            m = np.zeros(self.sizes[seg], dtype=bool) if dead[seg] is None else dead[seg].copy()
            m[rows] = True
            dead[seg] = m
        return RowSegments(self.sizes, dead)

    def merged(self, start: int, stop: int) -> "RowSegments":
        """Segments ``start:stop`` replaced by one holding their live rows (by none when
        none is live)."""
        n = int(self.offsets[stop] - self.offsets[start])
        mid: tuple[int, ...] = (n,) if n else ()  # no live row left: no segment
        return RowSegments((*self.sizes[:start], *mid, *self.sizes[stop:]),
                           (*self.dead[:start], *((None,) * len(mid)), *self.dead[stop:]))


class SegmentedIndex:
    """The segment plumbing the sparse and dense indexes share. A subclass keeps ``_segs``
    (one immutable part per segment) and ``_rows`` (a :class:`RowSegments`) and provides
    ``_with`` (a new index over given segments and rows), ``_seg_len`` and ``_same_kind``."""

    _segs: tuple[Any, ...]
    _rows: "RowSegments"
    _APPEND_NEEDS = "of the same kind"  # how ``appended`` names what a part must share

    def _with(self, segs: Sequence[Any], rows: "RowSegments") -> Any:
        raise NotImplementedError

    @staticmethod
    def _seg_len(seg: Any) -> int:
        raise NotImplementedError

    def _same_kind(self, other: Any) -> bool:
        raise NotImplementedError

    @property
    def n_segments(self) -> int:
        return len(self._segs)

    @property
    def n_dead(self) -> int:
        """Rows kept in segments but no longer searched."""
        return self._rows.n_dead

    def without(self, positions: Sequence[int]) -> Any:
        """A new index without the rows at ``positions`` (later positions shift down)."""
        return self._with(self._segs, self._rows.without(positions))

    def part(self, i: int) -> Any:
        """Segment ``i`` (all its rows, dead ones too) as an index of its own, e.g. to save it."""
        return self._with((self._segs[i],), RowSegments((self._rows.sizes[i],)))

    def appended(self, part: Any, dead: np.ndarray | None = None) -> Any:
        """A new index: this one plus the single segment of ``part`` (rows in ``dead`` left out)."""
        if part.n_segments != 1 or not self._same_kind(part):
            raise InputError(f"{type(self).__name__}.appended takes one non-empty segment {self._APPEND_NEEDS}")
        seg = part._segs[0]
        return self._with((*self._segs, seg), RowSegments((*self._rows.sizes, self._seg_len(seg)),
                                                          (*self._rows.dead, dead)))


@dataclass(frozen=True)
class SegmentInfo:
    """One segment of a collection: the documents it holds, in order, with their passage
    counts (its index rows), and which of them are dead (removed or replaced later).
    ``name`` is where the backend keeps it (the files backend: a directory); "" until written."""

    doc_ids: tuple[str, ...]
    passages: tuple[int, ...]
    dead: frozenset[str] = frozenset()
    name: str = ""

    @cached_property
    def doc_set(self) -> frozenset[str]:
        return frozenset(self.doc_ids)

    @property
    def n_rows(self) -> int:
        return sum(self.passages)

    @property
    def n_dead_rows(self) -> int:
        return sum(n for d, n in zip(self.doc_ids, self.passages) if d in self.dead)

    def live_docs(self) -> list[str]:
        return [d for d in self.doc_ids if d not in self.dead]

    def dead_mask(self) -> np.ndarray | None:
        """True for the rows of dead documents; None when none is dead."""
        if not self.dead:
            return None
        return np.repeat(np.asarray([d in self.dead for d in self.doc_ids], dtype=bool),
                         np.asarray(self.passages, dtype=np.int64))


MAX_SEGMENTS = 8  # more than this after a write: the newest ones are merged (size-tiered)
MAX_DEAD_FRACTION = 0.2  # more dead rows than this: everything is merged into one segment


def compaction_plan(segments: Sequence[SegmentInfo], max_segments: int = MAX_SEGMENTS,
                    max_dead: float = MAX_DEAD_FRACTION) -> tuple[int, int] | None:
    """Which segments to merge after a write, as ``(start, stop)``, or None.

    Dead rows above ``max_dead`` of all rows: all of them. More than ``max_segments``
    segments: the newest ones, reaching back while the next older segment is no larger than
    all the newer ones together (and at least down to ``max_segments // 2`` older ones left),
    so a large base is rewritten only once the small ones add up to its size: each row is
    rewritten O(log n) times over the life of a collection.
    """
    n = len(segments)
    rows = sum(s.n_rows for s in segments)
    dead = sum(s.n_dead_rows for s in segments)
    if rows and dead > max_dead * rows:
        return (0, n)
    if n <= max_segments:
        return None
    live = [s.n_rows - s.n_dead_rows for s in segments]
    start, acc = n - 1, live[-1]
    while start > 0 and (live[start - 1] <= acc or start > max_segments // 2):
        start -= 1
        acc += live[start]
    return (start, n)
