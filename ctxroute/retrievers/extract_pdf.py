"""PDF text extraction: pypdfium2 (PDFium, Chrome's PDF engine) by default, pypdf as fallback.

Measured on the 20 SEC 10-Q filings (``benchmarks/pdf_extraction.py``): PDFium keeps each table
row's label on its row and its numbers whole, breaks no words, and is the fastest of pypdf,
pdfplumber and poppler's pdftotext. pypdf stays as the fallback for PDFs PDFium cannot open.

Pages are joined by one blank line; ``page_starts`` holds each page's first offset, so the
page map is exact. The extractor's name and version travel in the document's metadata.
"""
from __future__ import annotations

import io
import re
from dataclasses import dataclass
from functools import lru_cache

from ctxroute.errors import DocumentError

EXTRACTORS = ("pypdfium2", "pypdf")
_JUNK_TITLE = re.compile(r"[\W\d_]*|untitled( document)?|\(anonymous\)|microsoft word.*|.*\.(?:docx?|pdf|html?)", re.I)


@dataclass(frozen=True)
class PdfText:
    text: str
    page_starts: tuple[int, ...]
    title: str  # from the PDF's metadata; "" when absent or not a real title
    extractor: str  # "pypdfium2 5.15.2"


@lru_cache(maxsize=None)
def extractor_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "?"


def clean_title(title: str | None) -> str:
    """A metadata title, or "" when it is a placeholder, a file name or an id like an accession number."""
    t = " ".join(str(title or "").split())
    return "" if not t or _JUNK_TITLE.fullmatch(t) else t


def pdfium_pages(data: bytes) -> list[str]:
    """Text of each page with PDFium; line breaks normalised to ``\\n``."""
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(data)
    try:
        out = []
        for i in range(len(pdf)):
            page = pdf[i]
            tp = page.get_textpage()
            out.append(tp.get_text_range().replace("\r\n", "\n").replace("\r", "\n"))
            tp.close()
            page.close()
        return out
    finally:
        pdf.close()


def _pdfium(data: bytes, where: str) -> tuple[list[str], str]:
    import pypdfium2 as pdfium

    try:
        pdf = pdfium.PdfDocument(data)
    except pdfium.PdfiumError as exc:
        if "password" in str(exc).lower():
            raise DocumentError(where, "encrypted PDF: it needs a password; decrypt it first (e.g. `qpdf --decrypt`)") from exc
        raise
    try:
        title = clean_title(pdf.get_metadata_dict().get("Title"))
    finally:
        pdf.close()
    return pdfium_pages(data), title


def _pypdf(data: bytes, where: str) -> tuple[list[str], str]:
    from pypdf import PdfReader
    from pypdf.errors import DependencyError, PdfReadError

    reader = PdfReader(io.BytesIO(data))
    if reader.is_encrypted:
        try:
            opened = bool(reader.decrypt(""))
            why = "it needs a password"
        except DependencyError as exc:
            opened, why = False, f"{exc} (pip install cryptography)"
        except Exception as exc:  # noqa: BLE001 - pypdf raises several types for unsupported crypto
            opened, why = False, f"cannot decrypt it ({exc})"
        if not opened:
            raise DocumentError(where, f"encrypted PDF: {why}; decrypt it first (e.g. `qpdf --decrypt`)")
    pages = [(page.extract_text() or "") for page in reader.pages]
    try:
        title = clean_title(reader.metadata.title if reader.metadata is not None else "")
    except PdfReadError:
        title = ""
    return pages, title


def pdf_extract(data: bytes, where: str, extractor: str = "pypdfium2") -> PdfText:
    """Text, exact page map and metadata title of a PDF.

    ``extractor`` picks the engine; when PDFium fails on a file, pypdf is tried before giving up.
    Raises DocumentError for encrypted, unreadable, page-less and text-less (scanned) PDFs.
    """
    if extractor not in EXTRACTORS:
        raise DocumentError(where, f"unknown PDF extractor {extractor!r}; use one of {EXTRACTORS}")
    order = [extractor] + [e for e in EXTRACTORS if e != extractor]
    failures: list[str] = []
    pages: list[str] | None = None
    used = ""
    title = ""
    for name in order:
        try:
            pages, title = (_pdfium if name == "pypdfium2" else _pypdf)(data, where)
            used = name
            break
        except DocumentError:
            raise
        except Exception as exc:  # noqa: BLE001 - malformed PDFs make both engines raise many kinds of error
            failures.append(f"{name}: {type(exc).__name__}: {exc}")
    if pages is None:
        raise DocumentError(where, "unreadable PDF: " + "; ".join(failures))
    if not pages:
        raise DocumentError(where, "PDF has no pages")
    texts = [p.replace("\x00", "").strip() for p in pages]
    if not any(texts):
        raise DocumentError(where, "no extractable text (scanned PDF?); run OCR on it first")
    starts: list[int] = []
    pos = 0
    for i, t in enumerate(texts):
        if i:
            pos += 2  # the "\n\n" between pages
        starts.append(pos)
        pos += len(t)
    return PdfText("\n\n".join(texts), tuple(starts), title, f"{used} {extractor_version(used)}")


def pdf_to_text(data: bytes, where: str) -> tuple[str, tuple[int, ...], str]:
    """(text, page_starts, metadata title) with the default extractor (kept for callers of the old API)."""
    r = pdf_extract(data, where)
    return r.text, r.page_starts, r.title
