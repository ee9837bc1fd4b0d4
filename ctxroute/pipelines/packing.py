"""Evidence packing: source sentences with short ids, inside document delimiters.

Every sentence placed in a prompt carries an id such as ``[S12]``; the ``SentenceMap``
maps the id back to ``(doc_id, start, end)`` so citations can be checked against the
source. Passages are merged (each sentence appears once) and laid out in document order
(by document, then offset), not score order. Text inside ``<document>`` tags is data: any
literal ``<document``/``</document`` in the source (also spaced, or with full-width brackets)
is neutralised so a document cannot close its own delimiter, and a literal ``[S99]`` becomes
``(S99]`` so it cannot pass for a sentence id.
"""
from __future__ import annotations

import bisect
import re
from dataclasses import dataclass, field
from typing import AbstractSet, Callable, Iterable, Mapping, Sequence

from ctxroute.errors import InputError
from ctxroute.router.estimates import ID_TOKENS_PER_SENTENCE
from ctxroute.types import Chunk, Document

_WS = re.compile(r"\s+")
# "<document", "</document", "< / document", "＜／document" (full-width), "﹤/document" (small form)
_TAG = re.compile(r"([<\uff1c\ufe64])(\s*[/\uff0f]?\s*)(d)(ocument)", re.IGNORECASE)
# a literal sentence marker in the source ("[S99]", "[ s3, S7 ]"): the model would take it for an id
_SID = re.compile(r"\[(?=\s*[Ss]\s*\d)")


@dataclass(frozen=True)
class SentenceRef:
    """Where a prompt sentence id points: ``document.text[start:end]``."""

    sid: str
    doc_id: str
    start: int
    end: int


@dataclass(frozen=True)
class SentenceMap:
    """Prompt sentence ids -> source spans, plus the documents they point into."""

    refs: Mapping[str, SentenceRef]
    documents: Mapping[str, Document]

    def __contains__(self, sid: object) -> bool:
        return sid in self.refs

    def __len__(self) -> int:
        return len(self.refs)

    def get(self, sid: str) -> SentenceRef | None:
        return self.refs.get(sid)

    def text(self, sid: str) -> str:
        ref = self.refs[sid]
        return self.documents[ref.doc_id].text[ref.start : ref.end]

    def merged(self, other: "SentenceMap") -> "SentenceMap":
        """Union of two maps (ids must not collide with different spans)."""
        refs = dict(self.refs)
        for sid, ref in other.refs.items():
            old = refs.get(sid)
            if old is not None and (old.doc_id, old.start, old.end) != (ref.doc_id, ref.start, ref.end):
                raise InputError(f"sentence id {sid!r} maps to two different spans; allocate ids with distinct id_start")
            refs[sid] = ref
        return SentenceMap(refs=refs, documents={**self.documents, **other.documents})

    @staticmethod
    def empty() -> "SentenceMap":
        return SentenceMap(refs={}, documents={})


@dataclass(frozen=True)
class PackedContext:
    """The rendered context block and what it contains."""

    text: str
    sentence_map: SentenceMap
    n_tokens: int
    spans: tuple[tuple[str, int, int], ...]  # merged (doc_id, start, end) in document order
    dropped: int = 0  # input spans left out because of the token budget
    doc_labels: Mapping[str, str] = field(default_factory=dict)  # doc_id -> "D1"
    id_start: int = 1

    @property
    def next_id(self) -> int:
        """First unused sentence number after this context (for packing the next one)."""
        return self.id_start + len(self.sentence_map.refs)


def clean_sentence(text: str) -> str:
    """One line per sentence; document delimiters inside the data are neutralised."""
    text = _WS.sub(" ", text).strip()
    text = _TAG.sub(lambda m: f"{m.group(1)}{m.group(2)}{m.group(3)}oc\u200bument", text)
    return _SID.sub("(", text)


def _attr(value: str) -> str:
    return clean_sentence(value).replace("&", "&amp;").replace('"', "&quot;").replace("<", "&lt;").replace(">", "&gt;")


def merge_spans(spans: Iterable[tuple[str, int, int]]) -> list[tuple[str, int, int]]:
    """Merge overlapping or touching (doc_id, start, end) spans; result sorted by doc order."""
    out: list[tuple[str, int, int]] = []
    for doc_id, start, end in sorted(spans):
        if out and out[-1][0] == doc_id and start <= out[-1][2]:
            last = out[-1]
            out[-1] = (doc_id, last[1], max(last[2], end))
        else:
            out.append((doc_id, start, end))
    return out


def _indices_in(sentences: Sequence[Chunk], ends: Sequence[int], start: int, end: int) -> range:
    """Indices of the sentences (sorted by offset) that overlap ``[start, end)``."""
    lo = bisect.bisect_right(ends, start)
    hi = lo
    while hi < len(sentences) and sentences[hi].start < end:
        hi += 1
    return range(lo, hi)


SEPARATOR_TOKENS = 3  # "\n[...]" between two kept stretches of one document (cl100k)


def stretch_delta(kept: AbstractSet[int], new: Sequence[int], n: int, *, edges: bool) -> int:
    """How many dropped stretches keeping ``new`` (sorted indexes, none in ``kept``) adds to a
    document of ``n`` sentences: each block of new indexes splits the stretch it lies in (a new
    run inside it adds one, a block that extends a run adds none, one that bridges two runs
    removes one). ``edges``: the stretches before the first and after the last kept sentence
    count too (the compressor's omission markers); else only those between kept sentences
    (``pack_evidence``'s ``[...]``)."""
    lo = hi = None
    if kept:
        lo, hi = (0, n - 1) if edges else (min(kept), max(kept))  # with edges only "kept is not empty" is read
    delta = 0
    b0 = 0
    for j in range(1, len(new) + 1):
        if j < len(new) and new[j] == new[j - 1] + 1:
            continue
        a, b = new[b0], new[j - 1]
        b0 = j
        if edges:
            left = a > 0 and (a - 1) not in kept
            right = b < n - 1 and (b + 1) not in kept
            inside = lo is not None
        else:
            left = lo is not None and lo < a and (a - 1) not in kept
            right = hi is not None and hi > b and (b + 1) not in kept
            inside = lo is not None and lo < a and hi > b  # type: ignore[operator]
        delta += int(left) + int(right) - int(inside)
        lo = a if lo is None else min(lo, a)
        hi = b if hi is None else max(hi, b)
    return delta


def pack_evidence(
    chunks: Sequence[Chunk],
    *,
    documents: Mapping[str, Document],
    sentences_by_doc: Mapping[str, Sequence[Chunk]],
    count_tokens: Callable[[str], int],
    token_budget: int,
    doc_order: Sequence[str] | None = None,
    id_start: int = 1,
) -> PackedContext:
    """Pack ``chunks`` (best first) into a delimited context of at most ``token_budget`` tokens.

    Chunks are admitted greedily in the given priority order while they fit; the admitted
    ones are merged and rendered in document order (``doc_order`` gives the order of
    documents, default: order of first appearance sorted by id). Sentence ids start at
    ``id_start`` and run in rendering order.
    """
    if token_budget <= 0:
        raise InputError(f"token_budget must be positive, got {token_budget}")
    ends_by_doc: dict[str, list[int]] = {}

    def overlapping(doc_id: str, start: int, end: int) -> range:
        if doc_id not in ends_by_doc:
            ends_by_doc[doc_id] = [s.end for s in sentences_by_doc[doc_id]]
        return _indices_in(sentences_by_doc[doc_id], ends_by_doc[doc_id], start, end)

    seen: dict[str, set[int]] = {}
    admitted: list[tuple[str, int, int]] = []
    used = 0
    dropped = 0
    for chunk in chunks:
        doc_sents = sentences_by_doc.get(chunk.doc_id)
        if doc_sents is None or chunk.doc_id not in documents:
            raise InputError(f"chunk {chunk.id!r} belongs to unknown document {chunk.doc_id!r}; pass its Document and sentences")
        doc = documents[chunk.doc_id]
        kept = seen.setdefault(chunk.doc_id, set())
        new = [i for i in overlapping(chunk.doc_id, chunk.start, chunk.end) if i not in kept]
        if not new:
            continue
        cost = sum(count_tokens(clean_sentence(doc_sents[i].text_of(doc))) + ID_TOKENS_PER_SENTENCE for i in new)
        cost += SEPARATOR_TOKENS * stretch_delta(kept, new, len(doc_sents), edges=False)
        if used + cost > token_budget:
            dropped += 1
            continue
        used += cost
        kept.update(new)
        admitted.append((chunk.doc_id, chunk.start, chunk.end))

    order = list(doc_order) if doc_order is not None else sorted({d for d, _, _ in admitted})
    rank = {d: i for i, d in enumerate(order)}
    spans = merge_spans(admitted)
    spans.sort(key=lambda s: (rank.get(s[0], len(rank)), s[0], s[1]))

    refs: dict[str, SentenceRef] = {}
    labels: dict[str, str] = {}
    lines: list[str] = []
    placed: set[tuple[str, int]] = set()
    current: str | None = None
    last_idx = -1
    n = id_start
    for doc_id, start, end in spans:
        doc = documents[doc_id]
        if doc_id != current:
            if current is not None:
                lines.append("</document>")
            labels[doc_id] = f"D{len(labels) + 1}"
            title = f' title="{_attr(doc.title)}"' if doc.title else ""
            lines.append(f'<document id="{labels[doc_id]}"{title}>')
            current, last_idx = doc_id, -1
        doc_sents = sentences_by_doc[doc_id]
        for i in overlapping(doc_id, start, end):
            if (doc_id, i) in placed:
                continue
            if last_idx >= 0 and i != last_idx + 1:
                lines.append("[...]")
            placed.add((doc_id, i))
            last_idx = i
            s = doc_sents[i]
            sid = f"S{n}"
            n += 1
            refs[sid] = SentenceRef(sid=sid, doc_id=doc_id, start=s.start, end=s.end)
            lines.append(f"[{sid}] {clean_sentence(s.text_of(doc))}")
    if current is not None:
        lines.append("</document>")
    used_docs = {d: documents[d] for d in labels}
    return PackedContext(
        text="\n".join(lines),
        sentence_map=SentenceMap(refs=refs, documents=used_docs),
        n_tokens=used,
        spans=tuple(spans),
        dropped=dropped,
        doc_labels=labels,
        id_start=id_start,
    )
