"""Evaluation datasets: the generic JSONL format and loaders for LaRA, LooGLE and L-Eval.

The generic format is documented in ``docs/EVAL.md``. Every loader returns a
:class:`Dataset`: items plus the text of every document they refer to. Gold evidence given
as a quote is resolved to a character span by normalised matching (letters and digits only,
lower-cased), so a quote whose whitespace or punctuation differs from the source still
finds its place; quotes that cannot be placed are kept with ``start is None`` and counted
in :attr:`Dataset.unresolved`.
"""
from __future__ import annotations

import hashlib
import json
import re
from collections import defaultdict
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Iterable, Mapping, NamedTuple, Sequence

from ctxroute.errors import InputError

LARA_LENGTHS = ("32k", "128k")
LARA_DOMAINS = ("book", "financial", "paper")
LARA_LEVELS = ("location", "reasoning", "comp", "hallu")


class SourceText(NamedTuple):
    """A document an item refers to: its title and full text."""

    title: str
    text: str


@dataclass(frozen=True)
class Evidence:
    """Gold evidence: a span of ``doc`` (``start``/``end``), a quote, or both once resolved.

    ``kind`` is ``"span"`` (exact place), ``"quote"`` (a quote, placed when resolvable) or
    ``"region"`` (a coarse region such as LaRA's i-th slice).
    """

    doc: str
    start: int | None = None
    end: int | None = None
    quote: str = ""
    kind: str = "span"

    @property
    def resolved(self) -> bool:
        return self.start is not None and self.end is not None


@dataclass(frozen=True)
class EvalItem:
    """One question with its gold answers, the documents it is about and gold evidence."""

    id: str
    question: str
    answers: tuple[str, ...]
    docs: tuple[str, ...]
    choices: tuple[str, ...] = ()
    evidence: tuple[Evidence, ...] = ()
    task: str = ""
    answerable: bool = True
    metadata: Mapping[str, str] = field(default_factory=dict)

    @property
    def answer(self) -> str:
        return self.answers[0] if self.answers else ""

    def to_json(self) -> dict[str, object]:
        """The generic-format record of this item (round-trips through :func:`load_generic`)."""
        rec: dict[str, object] = {
            "id": self.id,
            "question": self.question,
            "answers": list(self.answers),
            "docs": list(self.docs),
            "task": self.task,
            "answerable": self.answerable,
        }
        if self.choices:
            rec["choices"] = list(self.choices)
        if self.evidence:
            ev = []
            for e in self.evidence:
                d: dict[str, object] = {"doc": e.doc}
                if e.resolved:
                    d["start"], d["end"] = e.start, e.end
                if e.quote:
                    d["quote"] = e.quote
                if e.kind != "span":
                    d["kind"] = e.kind
                ev.append(d)
            rec["evidence"] = ev
        if self.metadata:
            rec["metadata"] = dict(self.metadata)
        return rec


@dataclass(frozen=True)
class Dataset:
    """Items plus the documents they refer to (doc key -> :class:`SourceText`)."""

    name: str
    items: tuple[EvalItem, ...]
    documents: Mapping[str, SourceText]
    unresolved: int = 0  # evidence quotes that could not be placed in their document

    def __len__(self) -> int:
        return len(self.items)

    def filter(self, *, task: str | None = None, limit: int | None = None) -> "Dataset":
        items = [i for i in self.items if task is None or i.task == task]
        if limit is not None:
            items = items[:limit]
        return replace(self, items=tuple(items))


# --- quote resolution ---------------------------------------------------------------
_ALNUM = re.compile(r"[^\W_]+", re.UNICODE)


class _NormText:
    """Letters and digits of a text, lower-cased, with a map back to original offsets."""

    def __init__(self, text: str) -> None:
        chars: list[str] = []
        offs: list[int] = []
        for m in _ALNUM.finditer(text):
            s = m.group().lower()
            base = m.start()
            # lower() can change length for a few code points; keep offsets monotone
            for j, ch in enumerate(s):
                chars.append(ch)
                offs.append(base + min(j, len(m.group()) - 1))
        self.norm = "".join(chars)
        self.offs = offs

    def span(self, i: int, j: int) -> tuple[int, int]:
        """Original span of normalised chars ``[i, j)``."""
        return self.offs[i], self.offs[j - 1] + 1


def _norm(s: str) -> str:
    return "".join(m.group().lower() for m in _ALNUM.finditer(s))


_REF_MARK = re.compile(r"\[(?:\d{1,3}|[a-z]{2}|citation needed|note \d+)\]")
_PIECES = re.compile(r"(?<=[.!?;:])\s+|\n+|,\s+")


def resolve_quote(text: str | _NormText, quote: str) -> tuple[int, int] | None:
    """Character span of ``quote`` in ``text`` by normalised matching, or ``None``.

    Tries, in order: the whole normalised quote (wiki markers such as ``[12]`` or ``[es]``
    removed); for quotes of 40+ normalised chars, a head and a tail of 24 chars found in
    order no farther apart than twice the quote; then pieces of the quote (split at
    sentence ends, line breaks and commas) that together cover at least 60% of it within a
    window of twice its length.
    """
    nt = text if isinstance(text, _NormText) else _NormText(text)
    quote = _REF_MARK.sub(" ", quote)
    q = _norm(quote)
    if len(q) < 3:
        return None
    i = nt.norm.find(q)
    if i >= 0:
        return nt.span(i, i + len(q))
    if len(q) < 40:
        return None
    head, tail = q[:24], q[-24:]
    start = nt.norm.find(head)
    while start >= 0:
        t = nt.norm.find(tail, start + len(head) - 1)
        if t >= 0 and t + len(tail) - start <= 2 * len(q):
            return nt.span(start, t + len(tail))
        start = nt.norm.find(head, start + 1)
    found: list[tuple[int, int]] = []
    for piece in _PIECES.split(quote):
        pn = _norm(piece)
        if len(pn) >= 20:
            j = nt.norm.find(pn)
            if j >= 0:
                found.append((j, j + len(pn)))
    if found:
        found.sort()
        best: tuple[int, int] | None = None
        best_cov = 0
        for a in range(len(found)):
            cov = 0
            for b in range(a, len(found)):
                if found[b][1] - found[a][0] > 2 * len(q):
                    break
                cov += found[b][1] - found[b][0]
                if cov > best_cov:
                    best_cov, best = cov, (found[a][0], max(e for _, e in found[a : b + 1]))
        if best is not None and best_cov >= 0.6 * len(q):
            return nt.span(*best)
    return None


def _resolve_all(items: Iterable[EvalItem], documents: Mapping[str, SourceText]) -> tuple[list[EvalItem], int]:
    cache: dict[str, _NormText] = {}
    out: list[EvalItem] = []
    unresolved = 0
    for it in items:
        if not any(e.quote and not e.resolved for e in it.evidence):
            out.append(it)
            continue
        evs = []
        for e in it.evidence:
            if e.quote and not e.resolved and e.doc in documents:
                nt = cache.get(e.doc)
                if nt is None:
                    nt = cache[e.doc] = _NormText(documents[e.doc].text)
                sp = resolve_quote(nt, e.quote)
                if sp is None:
                    unresolved += 1
                else:
                    e = replace(e, start=sp[0], end=sp[1])
            elif e.quote and not e.resolved:
                unresolved += 1
            evs.append(e)
        out.append(replace(it, evidence=tuple(evs)))
    return out, unresolved


def _short_hash(s: str) -> str:
    return hashlib.sha1(s.encode("utf-8")).hexdigest()[:10]


# --- generic JSONL -------------------------------------------------------------------
def _read_doc_file(path: Path) -> SourceText:
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise InputError(
            f"document {str(path)!r} is not UTF-8 text ({exc}); ingest it with `ctxroute ingest` "
            "and refer to it by collection document id instead",
            path=str(path),
        ) from exc
    return SourceText(path.stem, text)


def load_generic(path: str | Path, *, name: str | None = None) -> Dataset:
    """Load a dataset in the generic JSONL format (see ``docs/EVAL.md``).

    A ``docs`` entry that names an existing file (relative to the JSONL's folder, or
    absolute) is read as UTF-8 text; any other entry is kept as a document id, to be found
    in a collection by the runner.
    """
    p = Path(path)
    if not p.is_file():
        raise InputError(f"dataset file {str(p)!r} does not exist; pass a JSONL path, lara:32k, loogle or leval-legal", path=str(p))
    items: list[EvalItem] = []
    documents: dict[str, SourceText] = {}
    seen: set[str] = set()
    for lineno, line in enumerate(p.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"{p}:{lineno}: not valid JSON ({exc.msg}); each line must be one JSON object", path=str(p), line=lineno) from exc
        if not isinstance(rec, dict) or not rec.get("question"):
            raise InputError(f"{p}:{lineno}: a record needs a non-empty 'question' field", path=str(p), line=lineno)
        answers = rec.get("answers", rec.get("answer", []))
        if isinstance(answers, str):
            answers = [answers]
        docs: list[str] = []
        for d in rec.get("docs", []) or []:
            d = str(d)
            fp = Path(d) if Path(d).is_absolute() else p.parent / d
            if fp.is_file():
                if d not in documents:
                    documents[d] = _read_doc_file(fp)
            docs.append(d)
        evidence = []
        for e in rec.get("evidence", []) or []:
            if not isinstance(e, dict) or "doc" not in e:
                raise InputError(f"{p}:{lineno}: evidence entries are objects with 'doc' and 'start'/'end' or 'quote'", path=str(p), line=lineno)
            start, end = e.get("start"), e.get("end")
            quote = str(e.get("quote", ""))
            kind = str(e.get("kind", "span" if start is not None else "quote"))
            evidence.append(Evidence(str(e["doc"]), None if start is None else int(start), None if end is None else int(end), quote, kind))
        item_id = str(rec.get("id") or _short_hash(rec["question"] + "|" + "|".join(docs)))
        if item_id in seen:
            raise InputError(f"{p}:{lineno}: duplicate id {item_id!r}; ids must be unique within a dataset", path=str(p), line=lineno)
        seen.add(item_id)
        items.append(
            EvalItem(
                id=item_id,
                question=str(rec["question"]),
                answers=tuple(str(a) for a in answers),
                docs=tuple(docs),
                choices=tuple(str(c) for c in rec.get("choices", []) or []),
                evidence=tuple(evidence),
                task=str(rec.get("task", "") or ""),
                answerable=bool(rec.get("answerable", True)),
                metadata={str(k): str(v) for k, v in (rec.get("metadata") or {}).items()},
            )
        )
    resolved, unresolved = _resolve_all(items, documents)
    return Dataset(name or p.stem, tuple(resolved), documents, unresolved)


def write_generic(items: Iterable[EvalItem], path: str | Path) -> None:
    """Write items in the generic JSONL format."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for it in items:
            fh.write(json.dumps(it.to_json(), ensure_ascii=False) + "\n")


# --- LaRA ----------------------------------------------------------------------------
def load_dataset(spec: str, shared_root: str | Path | None = None) -> Dataset:
    """``spec`` is a generic JSONL path, ``lara:32k`` / ``lara:128k`` / ``lara``, ``loogle`` or
    ``leval-legal``; the named sets are read under ``shared_root`` (the shared data folder)."""
    named = spec.split(":", 1)[0].lower()
    if named in ("lara", "loogle", "leval-legal", "leval"):
        if shared_root is None:
            raise InputError(f"dataset {spec!r} needs the shared data folder; pass --data-root (it holds LaRA/, LooGLE/, L-Eval/)", spec=spec)
        from ctxroute.eval.shared_sets import load_lara, load_leval_legal, load_loogle

        base = Path(shared_root)
        if named == "lara":
            length = spec.split(":", 1)[1] if ":" in spec else None
            return load_lara(base / "LaRA", length=length)
        if named == "loogle":
            return load_loogle(base / "LooGLE")
        return load_leval_legal(base / "L-Eval")
    return load_generic(spec)


def region_of(text: str, n: int, i: int) -> tuple[int, int]:
    """The i-th of n equal character slices of ``text`` (LaRA's ``context_order``)."""
    L = len(text) // n
    return i * L, (i + 1) * L


def doc_spans(evidence: Sequence[Evidence]) -> dict[str, list[tuple[int, int]]]:
    """Resolved evidence spans grouped by document."""
    out: dict[str, list[tuple[int, int]]] = defaultdict(list)
    for e in evidence:
        if e.resolved:
            out[e.doc].append((int(e.start), int(e.end)))  # type: ignore[arg-type]
    return dict(out)


_SHARED_SET_NAMES = ("lara_key", "lara_query_files", "load_lara", "load_loogle", "load_leval_legal")


def __getattr__(name: str):  # PEP 562: the shared sets' loaders live in shared_sets.py, which imports this module
    if name in _SHARED_SET_NAMES:
        from ctxroute.eval import shared_sets

        return getattr(shared_sets, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Dataset",
    "EvalItem",
    "Evidence",
    "SourceText",
    "doc_spans",
    "lara_key",
    "lara_query_files",
    "load_dataset",
    "load_generic",
    "load_leval_legal",
    "load_loogle",
    "load_lara",
    "region_of",
    "resolve_quote",
    "write_generic",
]
