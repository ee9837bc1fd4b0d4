"""Compare PDF text extractors on the real SEC 10-Q filings (../shared/data/docugami-sec-10q).

For each extractor (pypdf, pypdfium2, pdfplumber, and poppler's ``pdftotext`` as a reference
when it is on PATH) over every page of the 20 filings:

- ``numbers``: numeric tokens found (``1,577``, ``2.29``, ``118,573``; at least 3 digits);
- ``numbers kept %``: share of the reference's numeric tokens (multiset) that the extractor
  also produced, so a number split in two ("333" "230217") or glued to a word counts as lost;
- ``answer numbers %``: share of the numbers in the gold answers of single-document
  questions (``qna_data.csv``) that appear, normalised, in the extracted text of that document;
- ``words kept %``: share of the reference's long words (>= 6 letters, multiset) present:
  a word broken by a line break ("in\\ncome") or glued to a page number ("statements.38") is lost;
- ``row labels %``: share of table rows (a line ending in >= 2 numbers) that start with a label
  (letters), i.e. the label stayed on its row instead of moving to the end of the previous one;
- ``s/page``: extraction seconds per page (single process; compare within one run only).

Run: ``python benchmarks/pdf_extraction.py [--data ../shared/data] [--extractors pypdf,pypdfium2,...]
[--limit-docs N] [--out extraction.json]``.
"""
from __future__ import annotations

import argparse
import csv
import fnmatch
import json
import re
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
SEC = Path("docugami-sec-10q") / "data" / "v1"

_NUM = re.compile(r"(?<![\w.])\d{1,3}(?:,\d{3})+(?:\.\d+)?(?![\d,]\d)|(?<![\w.,])\d+(?:\.\d+)?(?![\w])")
_LONG_WORD = re.compile(r"[A-Za-z]{6,}")
_ROW_TAIL = re.compile(r"(?>[\s$(]*\d[\d,]*+(?:\.\d+)?\)?\s*%?)+$")  # atomic: no backtracking blow-up


def norm_number(tok: str) -> str:
    """``"$1,577.0"`` -> ``"1577"``; ``"2.50"`` -> ``"2.5"``."""
    t = tok.replace(",", "").lstrip("$")
    if "." in t:
        t = t.rstrip("0").rstrip(".")
    return t.lstrip("0") or "0"


def numbers_of(text: str, min_digits: int = 3) -> list[str]:
    out = []
    for m in _NUM.finditer(text):
        n = norm_number(m.group())
        if sum(c.isdigit() for c in n) >= min_digits:
            out.append(n)
    return out


def answer_numbers(answer: str) -> list[str]:
    """Salient numbers of a gold answer: >= 3 digits, not a year, not from its SOURCE line."""
    body = re.split(r"SOURCE(?:\(S\))?:", answer)[0]
    body = re.sub(r"\(SOURCE[^)]*\)", "", body)
    body = re.sub(r"\b(?:19|20)\d\d\s+Q\d\b|\bQ\d\s+(?:19|20)\d\d\b", "", body)
    out = []
    for n in numbers_of(body):
        if re.fullmatch(r"(?:19|20)\d\d", n):
            continue
        if n not in out:
            out.append(n)
    return out


# --- extractors: each returns one string per page ------------------------------------
def ex_pypdf(path: Path) -> list[str]:
    from pypdf import PdfReader

    return [p.extract_text() or "" for p in PdfReader(str(path)).pages]


def ex_pypdfium2(path: Path) -> list[str]:
    from ctxroute.retrievers.extract_pdf import pdfium_pages

    return pdfium_pages(path.read_bytes())


def ex_pdfplumber(path: Path) -> list[str]:
    import pdfplumber

    with pdfplumber.open(str(path)) as pdf:
        return [p.extract_text() or "" for p in pdf.pages]


def ex_pdftotext(path: Path) -> list[str]:
    out = subprocess.run(["pdftotext", "-enc", "UTF-8", str(path), "-"], capture_output=True, check=True).stdout
    pages = out.decode("utf-8", "replace").split("\f")
    return pages[:-1] if pages and not pages[-1].strip() else pages


EXTRACTORS: dict[str, Callable[[Path], list[str]]] = {
    "pypdf": ex_pypdf,
    "pypdfium2": ex_pypdfium2,
    "pdfplumber": ex_pdfplumber,
    "pdftotext": ex_pdftotext,
}


def version_of(name: str) -> str:
    if name == "pdftotext":
        try:
            r = subprocess.run(["pdftotext", "-v"], capture_output=True, text=True)
            return (r.stderr or r.stdout).split("\n")[0].split()[-1]
        except OSError:
            return "?"
    from importlib.metadata import version

    return version({"pypdfium2": "pypdfium2", "pypdf": "pypdf", "pdfplumber": "pdfplumber"}[name])


def row_label_share(text: str) -> tuple[int, int]:
    rows = labelled = 0
    for line in text.splitlines():
        line = line.strip()
        m = _ROW_TAIL.search(line) if len(line) <= 400 else None
        if m and len(numbers_of(m.group(), 1)) >= 2:
            rows += 1
            if re.search(r"[A-Za-z]{3,}", line[: m.start()]):
                labelled += 1
    return labelled, rows


def single_doc_questions(data: Path) -> list[dict[str, str]]:
    path = data / SEC / "qna_data.csv"
    with path.open(encoding="utf-8-sig", newline="") as f:
        return [r for r in csv.DictReader(f) if r["Question Type"].startswith("Single-Doc")]


def run(data: Path, extractors: Sequence[str], limit_docs: int | None = None) -> dict[str, dict[str, float]]:
    docs = sorted((data / SEC / "docs").glob("*.pdf"))[:limit_docs]
    questions = single_doc_questions(data)
    texts: dict[str, dict[str, str]] = {}
    timing: dict[str, float] = {}
    pages: dict[str, int] = {}
    failed: dict[str, list[str]] = {}
    for name in extractors:
        fn = EXTRACTORS[name]
        texts[name] = {}
        t0 = time.perf_counter()
        n = 0
        failed[name] = []
        for d in docs:
            try:
                ps = fn(d)
            except Exception as exc:  # noqa: BLE001 - a failure is a result here
                failed[name].append(f"{d.name}: {type(exc).__name__}: {exc}")
                ps = []
            n += len(ps)
            texts[name][d.name] = "\n\n".join(p.replace("\r\n", "\n") for p in ps)
        timing[name] = time.perf_counter() - t0
        pages[name] = n
    ref = "pdftotext" if "pdftotext" in texts else extractors[0]
    out: dict[str, dict[str, float]] = {}
    for name in extractors:
        kept_n = total_n = kept_w = total_w = 0
        labelled = rows = 0
        n_numbers = 0
        for d in docs:
            mine, theirs = texts[name][d.name], texts[ref][d.name]
            a, b = Counter(numbers_of(mine)), Counter(numbers_of(theirs))
            n_numbers += sum(a.values())
            kept_n += sum((a & b).values())
            total_n += sum(b.values())
            wa, wb = Counter(_LONG_WORD.findall(mine)), Counter(_LONG_WORD.findall(theirs))
            kept_w += sum((wa & wb).values())
            total_w += sum(wb.values())
            la, ra = row_label_share(mine)
            labelled += la
            rows += ra
        found = asked = 0
        for q in questions:
            names = [d.name for d in docs if fnmatch.fnmatch(d.name, q["Source Docs"].strip())]
            if len(names) != 1:
                continue
            have = set(numbers_of(texts[name][names[0]], 1))
            for n in answer_numbers(q["Answer"]):
                asked += 1
                found += n in have
        out[name] = {
            "version": version_of(name),  # type: ignore[dict-item]
            "pages": pages[name],
            "numbers": n_numbers,
            "numbers_kept_pct": 100.0 * kept_n / max(total_n, 1),
            "answer_numbers_pct": 100.0 * found / max(asked, 1),
            "answer_numbers": f"{found}/{asked}",  # type: ignore[dict-item]
            "words_kept_pct": 100.0 * kept_w / max(total_w, 1),
            "row_labels_pct": 100.0 * labelled / max(rows, 1),
            "s_per_page": timing[name] / max(pages[name], 1),
            "reference": ref,  # type: ignore[dict-item]
            "failed": failed[name],  # type: ignore[dict-item]
        }
    return out


def markdown(result: dict[str, dict[str, float]]) -> str:
    lines = [
        "| extractor | version | pages | numeric tokens | numbers kept % (vs ref) | answer numbers found | "
        "words kept % (vs ref) | table rows with label % | s/page | files failed |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for name, r in result.items():
        lines.append(
            f"| {name} | {r['version']} | {r['pages']} | {r['numbers']} | {r['numbers_kept_pct']:.1f} | "
            f"{r['answer_numbers']} ({r['answer_numbers_pct']:.1f}%) | {r['words_kept_pct']:.1f} | "
            f"{r['row_labels_pct']:.1f} | {r['s_per_page']:.4f} | {len(r['failed'])} |"
        )
    ref = next(iter(result.values()))["reference"] if result else ""
    lines.append(f"\nreference for 'kept' columns: {ref}")
    for name, r in result.items():
        for f in r["failed"]:
            lines.append(f"- {name} failed on {f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--extractors", default="pypdf,pypdfium2,pdfplumber,pdftotext")
    ap.add_argument("--limit-docs", type=int, default=None)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    names = [n.strip() for n in args.extractors.split(",") if n.strip()]
    if "pdftotext" in names and shutil.which("pdftotext") is None:
        names.remove("pdftotext")
    if not (args.data / SEC / "docs").is_dir():
        raise SystemExit(f"no SEC 10-Q PDFs under {args.data / SEC}; see ../shared/data/README.md")
    result = run(args.data, names, args.limit_docs)
    print(markdown(result))
    if args.out:
        args.out.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
