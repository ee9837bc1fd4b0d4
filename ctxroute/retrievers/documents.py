"""Loading documents from files and bytes: txt, markdown, HTML, PDF and JSON Lines.

Each loader returns :class:`~ctxroute.types.Document` objects whose ``text`` is what the
chunker splits and what citations quote; nothing downstream rewrites it.
"""
from __future__ import annotations

import codecs
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping

from ctxroute.errors import DocumentError
from ctxroute.retrievers.extract_html import html_to_text  # noqa: F401 - public here too
from ctxroute.retrievers.extract_pdf import pdf_extract, pdf_to_text  # noqa: F401 - pdf_to_text: old API
from ctxroute.retrievers.furniture import furniture_spans
from ctxroute.types import Document

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".pdf", ".html", ".htm", ".jsonl")

_FORMAT_BY_SUFFIX = {
    ".txt": "txt",
    ".md": "md",
    ".markdown": "md",
    ".pdf": "pdf",
    ".html": "html",
    ".htm": "html",
    ".jsonl": "jsonl",
}
_CONTROL = re.compile(r"[\x00-\x08\x0e-\x1f\x7f-\x9f]")  # C0/C1 controls except \t \n \v \f \r
_SURROGATE = re.compile(r"[\ud800-\udfff]")
_MAX_CONTROL_FRACTION = 0.01
_MD_HEADING = re.compile(r"^[ ]{0,3}(#{1,6})[ \t]+(\S.*?)(?:[ \t]+#+)?[ \t]*$", re.MULTILINE)


@dataclass(frozen=True)
class LoadReport:
    """What a batch load produced: the documents that loaded and one error per failure."""

    documents: tuple[Document, ...]
    errors: tuple[DocumentError, ...]


def content_id(text: str) -> str:
    """Content hash used as the default document id: sha256 hex, first 16 characters."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()[:16]


_FENCE_BLOCK = re.compile(r"^[ ]{0,3}(```|~~~).*?(?:^[ ]{0,3}\1[^\n]*$|\Z)", re.MULTILINE | re.DOTALL)


def first_heading(text: str) -> str:
    """The first markdown heading's title outside fenced code blocks, or ``""``."""
    fences = [(m.start(), m.end()) for m in _FENCE_BLOCK.finditer(text)]
    for m in _MD_HEADING.finditer(text):
        if not any(s <= m.start() < e for s, e in fences):
            return m.group(2).strip()
    return ""


def pdf_heading_title(text: str, page_starts: tuple[int, ...], pages: int = 2) -> str:
    """The first heading-like line of a PDF's first pages, page furniture and code skipped, or ``""``."""
    from ctxroute.retrievers.chunking import pdf_heading_level

    end = page_starts[pages] if len(page_starts) > pages else len(text)
    probe = Document(id="probe", text=text, page_starts=page_starts, format="pdf")
    skip = {(s, e) for s, e in furniture_spans(probe) if s < end}
    pos = 0
    for line in text[:end].split("\n"):
        s = pos + len(line) - len(line.lstrip())
        e = pos + len(line.rstrip())
        pos += len(line) + 1
        if s < e and (s, e) not in skip and pdf_heading_level(text[s:e]):
            return " ".join(text[s:e].split())
    return ""


def _check_text(text: str, where: str) -> None:
    if not text.strip():
        raise DocumentError(where, "empty document: it has no text")
    if "\x00" in text:
        raise DocumentError(where, "binary file: it contains NUL bytes; pass a text, markdown, HTML or PDF file")
    controls = len(_CONTROL.findall(text))
    if controls > 8 and controls > _MAX_CONTROL_FRACTION * len(text):
        raise DocumentError(
            where,
            f"binary file: {controls} control characters in {len(text)}; pass a text, markdown, HTML or PDF file",
        )
    bad = _SURROGATE.search(text)
    if bad is not None:
        raise DocumentError(
            where, f"invalid unicode: lone surrogate U+{ord(bad.group()):04X} at offset {bad.start()}; fix the source text"
        )


def _default_title(text: str, source: str) -> str:
    return first_heading(text) or (Path(source).stem if source else "")


def document_from_text(
    text: str,
    *,
    title: str = "",
    source: str = "",
    doc_id: str | None = None,
    format: str = "txt",
    metadata: Mapping[str, str] | None = None,
    page_starts: tuple[int, ...] = (),
) -> Document:
    """A validated Document; the text is kept verbatim (offsets index into it).

    Raises DocumentError for empty or whitespace-only text and for text that looks binary.
    ``title`` defaults to the first markdown heading, else the source's file stem.
    """
    where = source or (f"document {doc_id}" if doc_id else "text")
    if not isinstance(text, str):
        raise DocumentError(where, f"text must be str, got {type(text).__name__}; decode bytes with load_bytes")
    _check_text(text, where)
    if doc_id is not None and not str(doc_id).strip():
        raise DocumentError(where, "empty document id; omit it to use the content hash")
    return Document(
        id=str(doc_id) if doc_id is not None else content_id(text),
        text=text,
        title=title.strip() or _default_title(text, source),
        source=source,
        metadata=dict(metadata or {}),
        page_starts=tuple(page_starts),
        format=format,
    )


# --- decoding --------------------------------------------------------------------
def _decode_text(data: bytes, where: str) -> str:
    if data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        try:
            return data.decode("utf-16")
        except UnicodeDecodeError as exc:
            raise DocumentError(where, f"undecodable: broken UTF-16 ({exc.reason} at byte {exc.start})") from exc
    if b"\x00" in data:
        raise DocumentError(where, "binary file: it contains NUL bytes; pass a text, markdown, HTML or PDF file")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DocumentError(
            where,
            f"undecodable: not UTF-8 text (bad byte 0x{data[exc.start]:02x} at offset {exc.start}); "
            "re-save the file as UTF-8",
        ) from exc


# --- JSON Lines ------------------------------------------------------------------
def _jsonl_documents(data: bytes, where: str) -> tuple[list[Document], list[DocumentError]]:
    text = _decode_text(data, where)
    docs: list[Document] = []
    errors: list[DocumentError] = []
    seen: dict[str, int] = {}
    for lineno, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        line_where = f"{where}:{lineno}"
        try:
            try:
                record = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DocumentError(line_where, f"line {lineno} is not valid JSON ({exc.msg})") from exc
            if not isinstance(record, dict):
                raise DocumentError(line_where, f"line {lineno} must be a JSON object with a 'text' field")
            body = record.get("text")
            if not isinstance(body, str):
                raise DocumentError(line_where, f"line {lineno} has no string 'text' field")
            rid = record.get("id")
            if rid is not None and not isinstance(rid, (str, int)):
                raise DocumentError(line_where, f"line {lineno}: 'id' must be a string or integer")
            rtitle = record.get("title", "")
            meta_in = record.get("metadata") or {}
            if not isinstance(meta_in, dict):
                raise DocumentError(line_where, f"line {lineno}: 'metadata' must be an object")
            meta = {str(k): str(v) for k, v in meta_in.items()}
            meta["line"] = str(lineno)
            doc = document_from_text(
                body,
                title=str(rtitle) if rtitle else "",
                source=where,
                doc_id=str(rid) if rid is not None else None,
                format="jsonl",
                metadata=meta,
            )
            if not rtitle and not first_heading(body):
                doc = Document(**{**doc.__dict__, "title": f"{Path(where).stem}:{lineno}"})
            if doc.id in seen:
                raise DocumentError(line_where, f"line {lineno}: duplicate id {doc.id!r} (first on line {seen[doc.id]})")
        except DocumentError as exc:
            if exc.path != line_where:  # document_from_text names the file; point at the line
                exc = DocumentError(line_where, f"line {lineno}: {exc.reason}")
            errors.append(exc)
            continue
        seen[doc.id] = lineno
        docs.append(doc)
    if not docs and not errors:
        errors.append(DocumentError(where, "empty document: no JSON lines"))
    return docs, errors


# --- public loaders --------------------------------------------------------------
def _load(data: bytes, name: str, where: str) -> tuple[list[Document], list[DocumentError]]:
    suffix = Path(name).suffix.lower()
    fmt = _FORMAT_BY_SUFFIX.get(suffix)
    if fmt is None:
        shown = suffix or "(no suffix)"
        raise DocumentError(where, f"unsupported file type {shown}; supported: {', '.join(SUPPORTED_SUFFIXES)}")
    if not data:
        raise DocumentError(where, "empty document: the file is empty")
    if fmt == "jsonl":
        return _jsonl_documents(data, where)
    if fmt == "pdf":
        if not data.startswith(b"%PDF"):
            raise DocumentError(where, "not a PDF: the file does not start with %PDF")
        pdf = pdf_extract(data, where)
        title = pdf.title or pdf_heading_title(pdf.text, pdf.page_starts)
        doc = document_from_text(
            pdf.text, title=title, source=where, format="pdf", page_starts=pdf.page_starts,
            metadata={"pages": str(len(pdf.page_starts)), "extractor": pdf.extractor},
        )
        return [doc], []
    if fmt == "html":
        if b"\x00" in data:
            raise DocumentError(where, "binary file: it contains NUL bytes; pass a text, markdown, HTML or PDF file")
        if b"<" not in data:  # no markup at all: plain text (and bs4 would warn on URL-like input)
            return [document_from_text(_decode_text(data, where), source=where, format="html")], []
        text, title = html_to_text(data)
        return [document_from_text(text, title=title, source=where, format="html")], []
    text = _decode_text(data, where)
    return [document_from_text(text, source=where, format=fmt)], []


def load_bytes_report(data: bytes, filename: str) -> LoadReport:
    """Like :func:`load_bytes`, but returns failures (including bad jsonl lines) instead of raising."""
    try:
        docs, errors = _load(data, filename, filename)
    except DocumentError as exc:
        return LoadReport((), (exc,))
    return LoadReport(tuple(docs), tuple(errors))


def load_bytes(data: bytes, filename: str) -> list[Document]:
    """Documents from an upload; the suffix of ``filename`` picks the loader.

    Raises DocumentError when nothing loads. Bad lines of a jsonl file are skipped when
    others load; :func:`load_bytes_report` lists them.
    """
    report = load_bytes_report(data, filename)
    if not report.documents:
        raise report.errors[0]
    return list(report.documents)


def load_path_report(path: Path) -> LoadReport:
    """Like :func:`load_path`, but returns failures (including bad jsonl lines) instead of raising."""
    path = Path(path)
    where = str(path)
    try:
        if not path.exists():
            raise DocumentError(where, "file not found; check the path")
        if path.is_dir():
            raise DocumentError(where, "is a directory; use load_paths to walk it")
        try:
            data = path.read_bytes()
        except OSError as exc:
            raise DocumentError(where, f"unreadable: {exc.strerror or exc}") from exc
        docs, errors = _load(data, path.name, where)
    except DocumentError as exc:
        return LoadReport((), (exc,))
    return LoadReport(tuple(docs), tuple(errors))


def load_path(path: Path) -> list[Document]:
    """Documents of one file (a jsonl file gives many); ``source`` is the path.

    Raises DocumentError(path, reason) when nothing loads. Bad lines of a jsonl file are
    skipped when others load; :func:`load_path_report` and :func:`load_paths` list them.
    """
    report = load_path_report(path)
    if not report.documents:
        raise report.errors[0]
    return list(report.documents)


def iter_files(paths: Iterable[Path]) -> list[Path]:
    """Files to load: files as given, directories walked recursively for supported suffixes
    (hidden files and folders skipped), in sorted order."""
    files: list[Path] = []
    for p in paths:
        p = Path(p)
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                rel = f.relative_to(p)
                if any(part.startswith(".") for part in rel.parts):
                    continue
                if f.is_file() and f.suffix.lower() in SUPPORTED_SUFFIXES:
                    files.append(f)
        else:
            files.append(p)
    return files


def load_paths(
    paths: Iterable[Path],
    *,
    progress: Callable[[int, int], None] | None = None,
) -> LoadReport:
    """Load files and directories; one bad file (or jsonl line) never stops the others.

    Documents with the same id as an earlier one (same content, or same jsonl id) are
    reported as errors and skipped. ``progress(done, total)`` is called after each file.
    """
    files = iter_files(paths)
    docs: list[Document] = []
    errors: list[DocumentError] = []
    seen: dict[str, str] = {}
    for i, f in enumerate(files, start=1):
        report = load_path_report(f)
        errors.extend(report.errors)
        for d in report.documents:
            if d.id in seen:
                errors.append(DocumentError(d.source, f"duplicate document id {d.id!r} (same as {seen[d.id]}); skipped"))
                continue
            seen[d.id] = d.source
            docs.append(d)
        if progress is not None:
            progress(i, len(files))
    return LoadReport(tuple(docs), tuple(errors))
