"""The QA sets the retrieval-quality benchmark reads (``../shared/data``, never copied).

- LooGLE sample (shortdep_qa + longdep_qa): each question's ``S`` evidence sentence(s),
  located in the article by normalised matching.
- L-Eval legal contracts: each gold answer is a verbatim clause of its contract.
- LaRA 32k ``location`` questions: the gold is the document slice the question was written
  from (``context_order``; see the data README), a coarse region.
- SEC 10-Q (docugami): real PDFs, loaded with ctxroute's own loader; single-document questions;
  gold = the answer's numbers that occur in the filing (by any extractor: computed numbers such
  as "approximately 80%" are left out), each found in some top-k passage.
"""
from __future__ import annotations

import ast
import csv
import fnmatch
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from ctxroute.types import Document

Span = tuple[int, int]

# --- locating evidence ------------------------------------------------------------------
_CITATION = re.compile(r"\[\s*(?:\d+|[a-z]{1,3}|citation needed|note \d+)\s*\]", re.IGNORECASE)
_LIST_NUMBER = re.compile(r"^\s*\d{1,2}\.(?=\D)")
_PIECE_BREAK = re.compile(r"\.{3,}|…|\n+|(?<=[.!?;:])\s+")


def _normalise(text: str) -> tuple[str, list[int]]:
    """ASCII letters and digits only, lowercased, citation markers dropped; with the
    original offset of every kept character (so a match maps back to a span)."""
    masked = bytearray(len(text))
    for m in _CITATION.finditer(text):
        masked[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
    chars: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(text):
        if not masked[i] and ch.isascii() and ch.isalnum():
            chars.append(ch.lower())
            offsets.append(i)
    return "".join(chars), offsets


class EvidenceLocator:
    """Finds evidence strings in one document despite lost accents, dropped citation
    markers, re-wrapped lines and '......' elisions."""

    def __init__(self, text: str, min_piece: int = 20) -> None:
        self.norm, self.offsets = _normalise(text)
        self.min_piece = min_piece

    def _index(self, piece: str, after: int) -> int:
        i = self.norm.find(piece, after)
        return self.norm.find(piece) if i < 0 and after else i

    def _find(self, piece: str, after: int) -> tuple[int, Span] | None:
        i = self._index(piece, after)
        if i < 0:
            return None
        return i + len(piece), (self.offsets[i], self.offsets[i + len(piece) - 1] + 1)

    def _find_anchored(self, piece: str, after: int, n: int = 16) -> tuple[int, Span] | None:
        """A piece with small inner differences: ``n``-character anchors taken every ``n``
        characters; the largest group that agrees on where the piece starts, if it holds
        at least 40% of the anchors, gives the span."""
        if len(piece) < 2 * n:
            return None
        found: list[tuple[int, int]] = []  # (estimated piece start, anchor position)
        anchors = range(0, len(piece) - n + 1, n)
        for a in anchors:
            i = self._index(piece[a : a + n], after)
            if i >= 0:
                found.append((i - a, i))
        if not found:
            return None
        slack = max(n, len(piece) // 4)
        best = max(
            ([f for f in found if abs(f[0] - est) <= slack] for est, _ in found),
            key=len,
        )
        if len(best) < max(2, 0.4 * len(anchors)):
            return None
        lo = min(i for _, i in best)
        hi = max(i for _, i in best) + n
        return hi, (self.offsets[lo], self.offsets[hi - 1] + 1)

    def locate(self, evidence: str) -> list[Span]:
        """Spans of ``evidence`` in the text; ``[]`` when less than half of it is found."""
        evidence = _LIST_NUMBER.sub("", evidence)
        whole, _ = _normalise(evidence)
        if not whole:
            return []
        exact = self._find(whole, 0)
        if exact is not None:
            return [exact[1]]
        spans: list[Span] = []
        found = 0
        total = 0
        after = 0
        for raw in _PIECE_BREAK.split(evidence):
            piece, _ = _normalise(_LIST_NUMBER.sub("", raw))
            if len(piece) < self.min_piece:
                continue
            total += len(piece)
            hit = self._find(piece, after) or self._find_anchored(piece, after)
            if hit is not None:
                after, span = hit
                spans.append(span)
                found += len(piece)
        if total == 0 or found * 2 < total:
            return []
        return sorted(spans)


# --- data sets ----------------------------------------------------------------------------
@dataclass(frozen=True)
class QAItem:
    """One question and its gold: located evidence items (spans), or, on the SEC set, the
    answer's numbers (each found in some top-k passage counts as one gold unit)."""

    question: str
    evidence: tuple[tuple[Span, ...], ...]  # per located evidence item, its spans
    n_unlocated: int = 0
    numbers: tuple[str, ...] = ()  # gold numbers (canonical form), instead of spans
    kind: str = ""  # SEC: "Table" / "Text" source chunk type
    section: str = ""  # SEC: the section named in SOURCE(S), when one is

    @property
    def n_units(self) -> int:
        return len(self.numbers) if self.numbers else len(self.evidence)


@dataclass(frozen=True)
class QADoc:
    dataset: str
    doc: Document
    items: tuple[QAItem, ...]

    @property
    def n_evidence(self) -> int:
        return sum(len(i.evidence) + i.n_unlocated for i in self.items)

    @property
    def n_unlocated(self) -> int:
        return sum(i.n_unlocated for i in self.items)


def _item(locator: EvidenceLocator, question: str, evidence: Iterable[str]) -> QAItem:
    located: list[tuple[Span, ...]] = []
    missing = 0
    for ev in evidence:
        spans = locator.locate(ev)
        if spans:
            located.append(tuple(spans))
        else:
            missing += 1
    return QAItem(question=question.strip(), evidence=tuple(located), n_unlocated=missing)


def load_loogle(data: Path, *, limit_docs: int | None = None) -> list[QADoc]:
    """LooGLE shortdep_qa + longdep_qa, one QADoc per article (files sharing an article merge)."""
    folder = data / "LooGLE" / "LooGLE-testdata"
    by_title: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {}
    for name in ("shortdep_qa.jsonl", "longdep_qa.jsonl"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            text, pairs = by_title.setdefault(row["title"], (row["input"], []))
            for pair in ast.literal_eval(row["qa_pairs"]):
                ev = pair.get("S", [])
                pairs.append((pair["Q"], [ev] if isinstance(ev, str) else list(ev)))
    out: list[QADoc] = []
    for title, (text, pairs) in list(by_title.items())[:limit_docs]:
        doc = Document(id=f"loogle:{len(out)}", text=text, title=title, source="LooGLE")
        loc = EvidenceLocator(text)
        out.append(QADoc("loogle", doc, tuple(_item(loc, q, ev) for q, ev in pairs)))
    return out


def load_leval_contracts(data: Path, *, limit_docs: int | None = None) -> list[QADoc]:
    """L-Eval legal_contract_qa: questions from ``instructions``, evidence = gold ``outputs``."""
    path = data / "L-Eval" / "LEval-data" / "Open-ended-tasks" / "legal_contract_qa.jsonl"
    out: list[QADoc] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if limit_docs is not None and len(out) >= limit_docs:
            break
        row = json.loads(line)
        text = row["input"]
        doc = Document(id=f"leval:{len(out)}", text=text, title=f"contract {len(out)}", source="L-Eval")
        loc = EvidenceLocator(text)
        items = tuple(_item(loc, q, [a]) for q, a in zip(row["instructions"], row["outputs"]))
        out.append(QADoc("leval_contracts", doc, items))
    return out


_NUM = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]\d)|(?<![\w.,])\d+(?:\.\d+)?(?![\w])")


def norm_number(tok: str) -> str:
    """``"$1,577.0"`` -> ``"1577"``; ``"2.50"`` -> ``"2.5"``."""
    t = tok.replace(",", "").lstrip("$")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    return t.lstrip("0") or "0"


def numbers_in(text: str, min_digits: int = 1) -> set[str]:
    out = set()
    for m in _NUM.finditer(text):
        n = norm_number(m.group())
        if sum(c.isdigit() for c in n) >= min_digits:
            out.add(n)
    return out


def answer_numbers(answer: str) -> list[str]:
    """Salient numbers of a gold answer: >= 3 digits, not a year, not from its SOURCE lines."""
    body = re.split(r"SOURCE(?:\(S\))?:", answer)[0]
    body = re.sub(r"\(SOURCE[^)]*\)", "", body)
    body = re.sub(r"\b(?:19|20)\d\d\s+Q\d\b|\bQ\d\s+(?:19|20)\d\d\b", "", body)
    out: list[str] = []
    for m in _NUM.finditer(body):
        n = norm_number(m.group())
        if sum(c.isdigit() for c in n) < 3 or re.fullmatch(r"(?:19|20)\d\d", n) or n in out:
            continue
        out.append(n)
    return out


SEC_DIR = Path("docugami-sec-10q") / "data" / "v1"


def _pypdf_text(path: Path) -> str:
    try:
        from pypdf import PdfReader

        return "\n".join(p.extract_text() or "" for p in PdfReader(str(path)).pages)
    except Exception:  # noqa: BLE001 - pypdf cannot read one of the filings; the gold then uses PDFium alone
        return ""


def _pdfium_text(path: Path) -> str:
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(str(path))
    try:
        return "\n".join(pdf[i].get_textpage().get_text_range() for i in range(len(pdf)))
    finally:
        pdf.close()


def _present_numbers(path: Path) -> set[str]:
    """Numbers in the pypdf or PDFium text of a filing; cached beside the system's temp files
    (the pypdf pass is slow), keyed by file name, size and modification time."""
    import tempfile

    cache = Path(tempfile.gettempdir()) / "ctxroute-sec-numbers.json"
    key = f"{path.name}:{path.stat().st_size}:{int(path.stat().st_mtime)}"
    try:
        known = json.loads(cache.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        known = {}
    if key not in known:
        known[key] = sorted(numbers_in(_pypdf_text(path)) | numbers_in(_pdfium_text(path)))
        try:
            cache.write_text(json.dumps(known), encoding="utf-8")
        except OSError:
            pass
    return set(known[key])


def load_sec(data: Path, *, limit_docs: int | None = None, loader: object = None, only: str = "*") -> list[QADoc]:
    """SEC 10-Q single-document questions whose answers hold numbers, one QADoc per filing.

    ``only`` is a glob over file names (e.g. ``"2023 Q3*"``: a subset, stated with the results).
    ``loader(path) -> Document`` loads a filing (default: ctxroute's ``load_path``); the gold
    numbers are fixed independently of it (found in the pypdf or PDFium text of the filing).
    """
    from ctxroute.retrievers.documents import load_path

    folder = data / SEC_DIR
    with (folder / "qna_data.csv").open(encoding="utf-8-sig", newline="") as f:
        rows = [r for r in csv.DictReader(f) if r["Question Type"].startswith("Single-Doc")]
    files = sorted(p for p in (folder / "docs").glob("*.pdf") if fnmatch.fnmatch(p.name, only))
    by_file: dict[str, list[dict[str, str]]] = {}
    for r in rows:
        names = [p.name for p in files if fnmatch.fnmatch(p.name, r["Source Docs"].strip())]
        if len(names) == 1:
            by_file.setdefault(names[0], []).append(r)
    out: list[QADoc] = []
    for path in files:
        if path.name not in by_file:
            continue
        if limit_docs is not None and len(out) >= limit_docs:
            break
        present = _present_numbers(path)
        try:
            doc = (loader or (lambda p: load_path(p)[0]))(path)  # type: ignore[operator]
        except Exception as exc:  # noqa: BLE001 - the loader under test cannot read it: its questions score 0
            doc = Document(id=f"unreadable:{path.stem}", text=f"unreadable by the loader: {exc}", source=str(path))
        items = []
        for r in by_file[path.name]:
            nums = tuple(n for n in answer_numbers(r["Answer"]) if n in present)
            if not nums:
                continue
            m = re.search(r"SOURCE(?:\(S\))?:\s*[^,\n]*\.pdf\s*,\s*([^\n]+)", r["Answer"])
            items.append(QAItem(question=r["Question"].strip(), evidence=(), numbers=nums,
                                kind=r["Source Chunk Type"], section=m.group(1).strip() if m else ""))
        out.append(QADoc("sec_10q", doc, tuple(items)))
    return out


def load_lara(data: Path, *, limit_docs: int | None = None, length: str = "32k") -> list[QADoc]:
    """LaRA ``location`` questions with an integer ``context_order``; gold = that slice of the
    document (``text[i*L:(i+1)*L]``, ``L = len(text)//n``). ``limit_docs`` applies per domain."""
    root = data / "LaRA" / "datasets"
    out: list[QADoc] = []
    for domain in ("book", "financial", "paper"):
        qfile = root / "query" / f"{length}_{domain}_location.jsonl"
        if not qfile.exists():
            continue
        rows = [json.loads(x) for x in qfile.read_text(encoding="utf-8").splitlines() if x.strip()]
        by_doc: dict[str, list[dict]] = {}
        for r in rows:
            by_doc.setdefault(str(r["file"]), []).append(r)
        taken = 0
        for name in sorted(by_doc):
            path = root / length / domain / name
            if not path.exists():
                path = next(iter((root / length / domain).glob(f"{Path(name).stem}*")), path)
            if not path.exists():
                continue
            if limit_docs is not None and taken >= limit_docs:
                break
            text = path.read_text(encoding="utf-8", errors="replace")
            orders = [r["context_order"] for r in by_doc[name] if isinstance(r.get("context_order"), int)]
            if not orders:
                continue
            n = max(orders) + 1
            size = len(text) // n
            items = tuple(
                QAItem(question=str(r["question"]), evidence=(((r["context_order"] * size, (r["context_order"] + 1) * size),),))
                for r in by_doc[name] if isinstance(r.get("context_order"), int)
            )
            doc = Document(id=f"lara:{domain}:{taken}", text=text, title=Path(name).stem, source="LaRA")
            out.append(QADoc("lara_32k_location", doc, items))
            taken += 1
    return out
