"""Loaders for the shared third-party QA sets (LaRA, LooGLE, L-Eval legal contracts): each
returns a :class:`~ctxroute.eval.datasets.Dataset` with gold evidence resolved to spans."""
from __future__ import annotations

import ast
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

from ctxroute.errors import InputError
from ctxroute.eval.datasets import (
    LARA_DOMAINS, LARA_LENGTHS, LARA_LEVELS, Dataset, EvalItem, Evidence, SourceText, _resolve_all, _short_hash,
    region_of,
)


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
