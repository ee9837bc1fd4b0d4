"""Evaluation datasets: the generic JSONL format and loaders for LaRA, LooGLE and L-Eval.

The generic format is documented in ``docs/EVAL.md``. Every loader returns a
:class:`Dataset`: items plus the text of every document they refer to. Gold evidence given
as a quote is resolved to a character span by normalised matching (letters and digits only,
lower-cased), so a quote whose whitespace or punctuation differs from the source still
finds its place; quotes that cannot be placed are kept with ``start is None`` and counted
in :attr:`Dataset.unresolved`.
"""
from __future__ import annotations

import ast
import hashlib
import json
import re
from collections import Counter, defaultdict
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
_LARA_QFILE = re.compile(r"^(32k|128k)_(book|financial|paper)_(location|reasoning|comp|hallu)(?:\.RECONSTRUCTED_from_predictions)?\.jsonl$")


def lara_key(length: str, domain: str, level: str, file: str, question: str, occurrence: int = 0) -> str:
    """Stable id of a LaRA question (the same in the query files and the prediction files).

    ``occurrence`` separates the one question that appears twice in its query file.
    """
    base = f"lara/{length}/{domain}/{level}/{file}/{_short_hash(question)}"
    return base if occurrence == 0 else f"{base}~{occurrence}"


def lara_query_files(root: Path) -> list[tuple[str, str, str, Path]]:
    """(length, domain, level, path) of every LaRA query file, the reconstructed one included."""
    qdir = root / "datasets" / "query"
    if not qdir.is_dir():
        raise InputError(f"LaRA query folder {str(qdir)!r} not found; pass the LaRA root (the folder holding datasets/ and evaluation/)", path=str(qdir))
    out = []
    for f in sorted(qdir.iterdir()):
        m = _LARA_QFILE.match(f.name)
        if m:
            out.append((m.group(1), m.group(2), m.group(3), f))
    return out


def _read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


_PAPER_OPEN = re.compile(r"<paper (\d+)>")


def _paper_spans(text: str) -> dict[int, tuple[int, int]]:
    """Spans of the ``<paper i>`` ... ``</end of paper i>`` blocks of a LaRA paper file."""
    out: dict[int, tuple[int, int]] = {}
    for m in _PAPER_OPEN.finditer(text):
        i = int(m.group(1))
        end = text.find(f"</end of paper {i}>", m.end())
        if end > m.end():
            out[i] = (m.end(), end)
    return out


def load_lara(
    root: str | Path,
    length: str | None = "32k",
    domain: str | None = None,
    level: str | None = None,
) -> Dataset:
    """LaRA questions for one length (``"32k"``, ``"128k"``, or ``None`` for both).

    Gold evidence is coarse: the ``context_order``-th of ``n`` equal character slices of the
    document (``n = max(context_order) + 1`` over that file's questions), two such regions
    for ``comp`` questions (``comp_parts``), none for ``"full"``. Paper files bundle several
    papers between ``<paper i>`` and ``</end of paper i>`` markers, and their questions name
    "paper i": there the region is paper i's block. ``hallu`` questions are
    unanswerable. Document keys are ``"{length}/{domain}/{file}"``.
    """
    root = Path(root)
    if length is not None and length not in LARA_LENGTHS:
        raise InputError(f"LaRA length {length!r} is unknown; use one of {', '.join(LARA_LENGTHS)}", length=length)
    if domain is not None and domain not in LARA_DOMAINS:
        raise InputError(f"LaRA domain {domain!r} is unknown; use one of {', '.join(LARA_DOMAINS)}", domain=domain)
    if level is not None and level not in LARA_LEVELS:
        raise InputError(f"LaRA level {level!r} is unknown; use one of {', '.join(LARA_LEVELS)}", level=level)
    files = [f for f in lara_query_files(root) if (length is None or f[0] == length) and (domain is None or f[1] == domain)]
    rows: list[tuple[str, str, str, dict]] = []
    n_slices: dict[str, int] = defaultdict(int)
    for ln, dom, lev, path in files:
        for r in _read_jsonl(path):
            rows.append((ln, dom, lev, r))
            dk = f"{ln}/{dom}/{r['file']}"
            for o in [r.get("context_order")] + list(r.get("comp_parts") or []):
                if isinstance(o, int):
                    n_slices[dk] = max(n_slices[dk], o + 1)
    documents: dict[str, SourceText] = {}
    items: list[EvalItem] = []
    seen: Counter[str] = Counter()
    for ln, dom, lev, r in rows:
        if level is not None and lev != level:
            continue
        dk = f"{ln}/{dom}/{r['file']}"
        if dk not in documents:
            fp = root / "datasets" / ln / dom / r["file"]
            if not fp.is_file():
                raise InputError(f"LaRA document {str(fp)!r} is missing; is the LaRA copy complete?", path=str(fp))
            documents[dk] = SourceText(Path(r["file"]).stem, fp.read_text(encoding="utf-8"))
        base = lara_key(ln, dom, lev, r["file"], r["question"])
        key = lara_key(ln, dom, lev, r["file"], r["question"], seen[base])
        seen[base] += 1
        orders = [r["context_order"]] if isinstance(r.get("context_order"), int) else list(r.get("comp_parts") or [])
        evidence = []
        n = n_slices.get(dk, 0)
        papers = _paper_spans(documents[dk].text) if dom == "paper" else {}
        for o in orders:
            if not isinstance(o, int):
                continue
            if o in papers:
                evidence.append(Evidence(dk, papers[o][0], papers[o][1], "", "region"))
            elif n:
                s0, e0 = region_of(documents[dk].text, n, o)
                evidence.append(Evidence(dk, s0, e0, "", "region"))
        meta = {"length": ln, "domain": dom, "level": lev, "file": r["file"], "type": str(r.get("type", ""))}
        if "context_order" in r:
            meta["context_order"] = str(r["context_order"])
        items.append(
            EvalItem(
                id=key,
                question=r["question"],
                answers=(r["answer"],),
                docs=(dk,),
                evidence=tuple(evidence),
                task=lev,
                answerable=lev != "hallu",
                metadata=meta,
            )
        )
    name = "lara" + (f":{length}" if length else "")
    return Dataset(name, tuple(items), documents, 0)


# --- LooGLE --------------------------------------------------------------------------
def load_loogle(root: str | Path) -> Dataset:
    """LooGLE's shipped sample: short- and long-dependency QA over 9 Wikipedia articles.

    ``qa_pairs`` is a Python-literal string (parsed with ``ast.literal_eval``); each pair's
    ``S`` (evidence sentence or list of sentences) becomes quote evidence.
    """
    root = Path(root)
    tdir = root / "LooGLE-testdata" if (root / "LooGLE-testdata").is_dir() else root
    items: list[EvalItem] = []
    documents: dict[str, SourceText] = {}
    for task in ("shortdep_qa", "longdep_qa"):
        fp = tdir / f"{task}.jsonl"
        if not fp.is_file():
            raise InputError(f"LooGLE file {str(fp)!r} not found; pass the LooGLE root (holding LooGLE-testdata/)", path=str(fp))
        for r in _read_jsonl(fp):
            dk = f"loogle/{r['title']}"
            documents.setdefault(dk, SourceText(r["title"], r["input"]))
            pairs = r["qa_pairs"]
            if isinstance(pairs, str):
                pairs = ast.literal_eval(pairs)
            for j, qa in enumerate(pairs):
                s = qa.get("S", [])
                quotes = [s] if isinstance(s, str) else list(s)
                items.append(
                    EvalItem(
                        id=f"loogle/{task}/{_short_hash(r['title'])}/{j}",
                        question=str(qa["Q"]),
                        answers=(str(qa["A"]),),
                        docs=(dk,),
                        evidence=tuple(Evidence(dk, None, None, str(q), "quote") for q in quotes if str(q).strip()),
                        task=task,
                        metadata={"title": r["title"], "qtype": str(qa.get("type", ""))},
                    )
                )
    resolved, unresolved = _resolve_all(items, documents)
    return Dataset("loogle", tuple(resolved), documents, unresolved)


# --- L-Eval legal contract QA -----------------------------------------------------------
_LEVAL_FILE = Path("LEval-data") / "Open-ended-tasks" / "legal_contract_qa.jsonl"


def load_leval_legal(root: str | Path) -> Dataset:
    """L-Eval's legal contract QA (CUAD): every gold answer is a verbatim clause, so it is
    also quote evidence."""
    root = Path(root)
    fp = root / _LEVAL_FILE if (root / _LEVAL_FILE).is_file() else root
    if not fp.is_file():
        raise InputError(f"L-Eval file {str(fp)!r} not found; pass the L-Eval root (holding {_LEVAL_FILE})", path=str(fp))
    items: list[EvalItem] = []
    documents: dict[str, SourceText] = {}
    for i, r in enumerate(_read_jsonl(fp)):
        dk = f"leval-legal/{i}"
        first = next((ln.strip() for ln in r["input"].splitlines() if ln.strip()), f"contract {i}")
        documents[dk] = SourceText(first[:80], r["input"])
        for j, (q, a) in enumerate(zip(r["instructions"], r["outputs"])):
            items.append(
                EvalItem(
                    id=f"leval-legal/{i}/{j}",
                    question=str(q),
                    answers=(str(a),),
                    docs=(dk,),
                    evidence=(Evidence(dk, None, None, str(a), "quote"),),
                    task="legal_contract_qa",
                )
            )
    resolved, unresolved = _resolve_all(items, documents)
    return Dataset("leval-legal", tuple(resolved), documents, unresolved)


def load_dataset(spec: str, shared_root: str | Path | None = None) -> Dataset:
    """``spec`` is a generic JSONL path, ``lara:32k`` / ``lara:128k`` / ``lara``, ``loogle`` or
    ``leval-legal``; the named sets are read under ``shared_root`` (the shared data folder)."""
    named = spec.split(":", 1)[0].lower()
    if named in ("lara", "loogle", "leval-legal", "leval"):
        if shared_root is None:
            raise InputError(f"dataset {spec!r} needs the shared data folder; pass --data-root (it holds LaRA/, LooGLE/, L-Eval/)", spec=spec)
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


__all__ = [
    "Dataset",
    "EvalItem",
    "Evidence",
    "SourceText",
    "doc_spans",
    "lara_key",
    "load_dataset",
    "load_generic",
    "load_leval_legal",
    "load_loogle",
    "load_lara",
    "region_of",
    "resolve_quote",
    "write_generic",
]
