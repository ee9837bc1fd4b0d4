"""Uploaded files: bounded parsing off the event loop.

An upload's size does not bound the work of parsing it (a 26 KB PDF can inflate to 7.5 MB of
page content and 4.3 million characters), so every file goes through ``parse_file`` in a
small worker pool, with caps checked before the expensive step: pages and decompressed page
content of a PDF (decompression itself is bounded) before any text is extracted, and the
characters of the extracted text after. A file over a cap fails alone, with a message naming
the cap's environment variable; the request answers 413 when nothing else loaded.
"""
from __future__ import annotations

import asyncio
import io
import shutil
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, BinaryIO

from ctxroute.api import models as M
from ctxroute.api.settings import ApiSettings
from ctxroute.errors import DocumentError
from ctxroute.retrievers.documents import load_bytes_report
from ctxroute.types import Document

_FLATE = ("/FlateDecode", "/Fl")
_MIB = 1024 * 1024


@dataclass(frozen=True)
class UploadLimits:
    max_pdf_pages: int = 2000
    max_pdf_content_bytes: int = 64 * _MIB
    max_pdf_ratio: float = 100.0  # decompressed content / file size, checked above 1 MiB of content
    max_document_chars: int = 2_000_000

    @classmethod
    def of(cls, s: ApiSettings) -> "UploadLimits":
        return cls(s.max_pdf_pages, s.max_pdf_content_bytes, s.max_pdf_ratio, s.max_document_chars)


class LimitExceeded(DocumentError):
    """A file over one of the upload caps (the API answers 413 when nothing else loaded)."""


@dataclass
class Parsed:
    documents: list[Document]
    errors: list[M.FileErrorOut]
    too_large: bool = False  # some file failed because of a cap


def _inflate_bounded(raw: bytes, budget: int) -> int:
    """Size of ``raw`` inflated, stopping once it passes ``budget`` (so a bomb costs ~budget)."""
    d = zlib.decompressobj()
    size = len(d.decompress(raw, budget + 1))
    while size <= budget and d.unconsumed_tail:
        size += len(d.decompress(d.unconsumed_tail, budget + 1 - size))
    return size


def _stream_size(obj: Any, budget: int) -> int:
    filters = obj.get("/Filter")
    names = [str(f) for f in filters] if isinstance(filters, list) else ([str(filters)] if filters else [])
    raw = getattr(obj, "_data", b"") or b""
    if not names:
        return len(raw)
    if len(names) == 1 and names[0] in _FLATE and not obj.get("/DecodeParms"):
        try:
            return _inflate_bounded(raw, budget)
        except zlib.error:
            return len(raw)
    return len(obj.get_data())  # other filter chains: pypdf's own output caps apply


def screen_pdf(data: bytes, where: str, limits: UploadLimits) -> None:
    """Raise LimitExceeded when the PDF has too many pages or too much page content (page
    content streams and the form XObjects they use, each counted once), before extraction."""
    from pypdf import PdfReader
    from pypdf.generic import ArrayObject

    try:
        reader = PdfReader(io.BytesIO(data))
        if reader.is_encrypted:
            return  # the loader explains encryption
        n_pages = len(reader.pages)
    except Exception:  # noqa: BLE001 - the loader reports unreadable PDFs with its own message
        return
    if n_pages > limits.max_pdf_pages:
        raise LimitExceeded(where, f"PDF has {n_pages} pages, more than the {limits.max_pdf_pages}-page limit "
                                   "(CTXROUTE_MAX_PDF_PAGES); split it")
    cap = limits.max_pdf_content_bytes
    if limits.max_pdf_ratio > 0:
        cap = min(cap, max(_MIB, int(limits.max_pdf_ratio * len(data))))
    total = 0
    seen: set[int] = set()

    def add(obj: Any) -> None:
        nonlocal total
        if id(obj) in seen:
            return
        seen.add(id(obj))
        total += _stream_size(obj, cap - total)
        if total > cap:
            which = ("CTXROUTE_MAX_PDF_CONTENT_MB" if cap == limits.max_pdf_content_bytes
                     else f"CTXROUTE_MAX_PDF_RATIO: more than {limits.max_pdf_ratio:g} times the file's size")
            raise LimitExceeded(
                where, f"PDF page content decompresses to more than {cap:,} bytes ({which}); this looks like a "
                       "compression bomb, or the document is too large for one upload")

    try:
        for page in reader.pages:
            contents = page.get("/Contents")
            contents = contents.get_object() if contents is not None else None
            for c in (contents if isinstance(contents, ArrayObject) else [contents] if contents is not None else []):
                add(c.get_object())
            resources = page.get("/Resources")
            xobjects = resources.get_object().get("/XObject") if resources is not None else None
            for ref in (xobjects.get_object().values() if xobjects is not None else []):
                x = ref.get_object()
                if x.get("/Subtype") == "/Form":
                    add(x)
    except LimitExceeded:
        raise
    except Exception:  # noqa: BLE001 - malformed structure: the extractor decides
        return


def parse_file(data: bytes, filename: str, limits: UploadLimits) -> tuple[list[Document], list[M.FileErrorOut], bool]:
    """Documents of one uploaded file, its errors, and whether a cap refused it. Blocking."""
    name = Path(filename).name or "upload.txt"
    try:
        if name.lower().endswith(".pdf") and data.startswith(b"%PDF"):
            screen_pdf(data, name, limits)
    except LimitExceeded as exc:
        return [], [M.FileErrorOut(file=name, message=exc.reason)], True
    report = load_bytes_report(data, name)
    docs: list[Document] = []
    errors = [M.FileErrorOut(file=name, message=e.reason) for e in report.errors]
    too_large = False
    for d in report.documents:
        if len(d.text) > limits.max_document_chars:
            too_large = True
            errors.append(M.FileErrorOut(
                file=name, message=f"{len(d.text):,} characters extracted, more than the {limits.max_document_chars:,}-"
                                   "character limit (CTXROUTE_MAX_DOCUMENT_CHARS); split the document"))
        elif not M.DOC_ID_RE.match(d.id):
            errors.append(M.FileErrorOut(
                file=name, message=f"document id {d.id[:80]!r} is not allowed: use 1-64 letters, digits, '_', '.' "
                                   "or '-', starting with a letter or digit"))
        else:
            docs.append(d)
    return docs, errors, too_large


class UploadParser:
    """A bounded pool of parser threads, so parsing never runs on the event loop and at most
    ``workers`` files are parsed at once (others queue)."""

    def __init__(self, settings: ApiSettings) -> None:
        self.limits = UploadLimits.of(settings)
        self._pool = ThreadPoolExecutor(max_workers=settings.parse_workers, thread_name_prefix="ctxroute-parse")

    async def parse(self, files: list[tuple[str, bytes]]) -> Parsed:
        loop = asyncio.get_running_loop()
        out = Parsed([], [])
        for name, data in files:
            docs, errs, big = await loop.run_in_executor(self._pool, parse_file, data, name, self.limits)
            out.documents.extend(docs)
            out.errors.extend(errs)
            out.too_large |= big
        return out

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def spool(src: BinaryIO, dest: Path) -> None:
    """Copy an upload to disk in chunks (never whole in memory). Blocking."""
    src.seek(0)
    with dest.open("wb") as out:
        shutil.copyfileobj(src, out, 1024 * 1024)
