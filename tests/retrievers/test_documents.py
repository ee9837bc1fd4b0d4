from __future__ import annotations

import io
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxroute.errors import DocumentError
from ctxroute.retrievers.documents import (
    SUPPORTED_SUFFIXES,
    LoadReport,
    content_id,
    document_from_text,
    load_bytes,
    load_bytes_report,
    load_path,
    load_path_report,
    load_paths,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"


def make_pdf(pages: list[list[str]], title: str | None = None) -> bytes:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    if title:
        c.setTitle(title)
    for lines in pages:
        y = 720
        for line in lines:
            c.drawString(72, y, line)
            y -= 20
        c.showPage()
    c.save()
    return buf.getvalue()


def encrypt_pdf(data: bytes, user_password: str, owner_password: str = "owner") -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter(clone_from=io.BytesIO(data))
    writer.encrypt(user_password, owner_password=owner_password)
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


# --- document_from_text -----------------------------------------------------------
def test_content_id_is_sha256_prefix() -> None:
    import hashlib

    assert content_id("abc") == hashlib.sha256(b"abc").hexdigest()[:16]
    assert content_id("abc") != content_id("abd")


def test_document_from_text_defaults() -> None:
    doc = document_from_text("# Title here\n\nBody.", source="/tmp/x/report.md", format="md")
    assert doc.id == content_id(doc.text)
    assert doc.title == "Title here"
    assert doc.format == "md"
    assert doc.source == "/tmp/x/report.md"


def test_document_from_text_title_falls_back_to_stem() -> None:
    doc = document_from_text("no heading", source="/data/annual-report.txt")
    assert doc.title == "annual-report"
    assert document_from_text("no heading", title="  Given  ").title == "Given"


def test_document_from_text_keeps_given_id_and_text_verbatim() -> None:
    text = "  line one\r\nline two  \n"
    doc = document_from_text(text, doc_id="abc")
    assert doc.id == "abc"
    assert doc.text == text


@pytest.mark.parametrize("text", ["", "   \n\t  \r\n"])
def test_empty_text_rejected(text: str) -> None:
    with pytest.raises(DocumentError, match="empty document"):
        document_from_text(text, source="a.txt")


def test_binary_looking_text_rejected() -> None:
    with pytest.raises(DocumentError, match="binary"):
        document_from_text("abc\x00def")
    noisy = "".join(chr(i % 8 + 1) for i in range(200)) + "some words"
    with pytest.raises(DocumentError, match="control characters"):
        document_from_text(noisy)


# --- plain text ---------------------------------------------------------------------
def test_txt_utf8_with_bom(tmp_path: Path) -> None:
    p = tmp_path / "notes.txt"
    p.write_bytes("\ufeffCafé au lait.\n".encode("utf-8"))
    [doc] = load_path(p)
    assert doc.text == "Café au lait.\n"
    assert doc.format == "txt"
    assert doc.title == "notes"
    assert doc.source == str(p)


def test_txt_utf16_with_bom(tmp_path: Path) -> None:
    p = tmp_path / "wide.txt"
    p.write_bytes("Grüße aus Köln.".encode("utf-16"))
    [doc] = load_path(p)
    assert doc.text == "Grüße aus Köln."


def test_non_utf8_bytes_rejected(tmp_path: Path) -> None:
    p = tmp_path / "latin.txt"
    p.write_bytes("Café crème".encode("latin-1"))
    with pytest.raises(DocumentError, match="undecodable: not UTF-8") as info:
        load_path(p)
    assert info.value.path == str(p)
    assert "0xe9" in info.value.reason


def test_binary_file_rejected(tmp_path: Path) -> None:
    p = tmp_path / "image.txt"
    p.write_bytes(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00")
    with pytest.raises(DocumentError, match="binary file"):
        load_path(p)


def test_empty_file_rejected(tmp_path: Path) -> None:
    p = tmp_path / "empty.md"
    p.write_bytes(b"")
    with pytest.raises(DocumentError, match="empty"):
        load_path(p)
    (tmp_path / "blank.txt").write_text("  \n\n ")
    with pytest.raises(DocumentError, match="empty"):
        load_path(tmp_path / "blank.txt")


def test_unsupported_suffix_and_missing_file(tmp_path: Path) -> None:
    p = tmp_path / "doc.docx"
    p.write_bytes(b"PK\x03\x04")
    with pytest.raises(DocumentError, match=r"unsupported file type \.docx.*\.pdf"):
        load_path(p)
    with pytest.raises(DocumentError, match="not found"):
        load_path(tmp_path / "nope.txt")
    with pytest.raises(DocumentError, match="directory"):
        load_path(tmp_path)


# --- markdown -----------------------------------------------------------------------
def test_markdown_verbatim() -> None:
    path = FIXTURES / "handbook.md"
    [doc] = load_path(path)
    assert doc.text == path.read_text(encoding="utf-8")
    assert doc.format == "md"
    assert doc.title == "Field Station Handbook"


# --- HTML ---------------------------------------------------------------------------
def test_html_headings_become_markdown_and_scripts_are_dropped() -> None:
    [doc] = load_path(FIXTURES / "page.html")
    assert doc.format == "html"
    assert doc.title == "Harbour Report"
    lines = doc.text.splitlines()
    assert "# Harbour Report 2031" in lines
    assert "## Cargo" in lines
    assert "## Staff" in lines
    assert "tracking pixel" not in doc.text
    assert "color: red" not in doc.text
    assert "About" not in doc.text  # nav dropped
    assert "The harbour handled 4,200 ships in 2031." in lines
    assert "| Grain | 900 |" in lines
    assert "- Harbour master: Lena Ortiz" in lines


def test_html_title_from_first_h1_when_no_title_tag() -> None:
    [doc] = load_bytes(b"<html><body><h1>Only <em>Heading</em></h1><p>Text.</p></body></html>", "a.htm")
    assert doc.title == "Only Heading"
    assert doc.text.startswith("# Only Heading\n\nText.")


def test_html_without_text_is_empty() -> None:
    with pytest.raises(DocumentError, match="empty"):
        load_bytes(b"<html><script>x()</script></html>", "a.html")


# --- PDF ----------------------------------------------------------------------------
def test_multi_page_pdf_page_starts_map_spans_to_pages(tmp_path: Path) -> None:
    data = make_pdf([[f"Section {i}", f"The value on page {i} is {i * 7} units."] for i in (1, 2, 3)])
    p = tmp_path / "report.pdf"
    p.write_bytes(data)
    [doc] = load_path(p)
    assert doc.format == "pdf"
    assert doc.title == "report"
    assert len(doc.page_starts) == 3
    assert doc.metadata["pages"] == "3"
    assert doc.page_starts[0] == 0
    for i in (1, 2, 3):
        phrase = f"The value on page {i} is {i * 7} units."
        start = doc.text.index(phrase)  # the test may search; the library never does
        assert doc.page_at(start) == i
        assert doc.page_at(start + len(phrase) - 1) == i
        assert doc.text[doc.page_starts[i - 1] :].startswith(f"Section {i}")


def test_pdf_metadata_title() -> None:
    [doc] = load_bytes(make_pdf([["Hello there."]], title="Quarterly Figures"), "q.pdf")
    assert doc.title == "Quarterly Figures"


def test_encrypted_pdf_rejected() -> None:
    data = encrypt_pdf(make_pdf([["Secret text."]]), user_password="s3cret")
    with pytest.raises(DocumentError, match="encrypted PDF"):
        load_bytes(data, "locked.pdf")


def test_pdf_with_only_owner_password_loads() -> None:
    data = encrypt_pdf(make_pdf([["Readable text."]]), user_password="")
    [doc] = load_bytes(data, "owner-only.pdf")
    assert "Readable text." in doc.text


def test_scanned_pdf_without_text_rejected() -> None:
    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.rect(50, 50, 200, 200, fill=1)
    c.showPage()
    c.save()
    with pytest.raises(DocumentError, match="no extractable text"):
        load_bytes(buf.getvalue(), "scan.pdf")


def test_corrupt_pdf_rejected() -> None:
    with pytest.raises(DocumentError, match="PDF"):
        load_bytes(b"%PDF-1.4\nthis is not really a pdf", "bad.pdf")
    with pytest.raises(DocumentError, match="not a PDF"):
        load_bytes(b"hello", "fake.pdf")


# --- JSON Lines ---------------------------------------------------------------------
def test_jsonl_good_lines_load_and_bad_line_is_reported() -> None:
    path = FIXTURES / "records.jsonl"
    report = load_path_report(path)
    assert [d.id for d in report.documents][:2] == ["r1", "r2"]
    assert len(report.documents) == 3
    assert report.documents[2].id == content_id("A record without an id gets a content hash.")
    assert report.documents[0].title == "First record"
    assert report.documents[1].title == "Beavers"
    assert all(d.format == "jsonl" and d.source == str(path) for d in report.documents)
    [err] = report.errors
    assert "line 3" in err.reason
    assert err.path == f"{path}:3"
    # load_path returns the good documents
    assert [d.id for d in load_path(path)] == [d.id for d in report.documents]


def test_jsonl_record_errors() -> None:
    data = b'{"id": "a", "text": "one"}\n[1, 2]\n{"id": "a", "text": "again"}\n{"text": ""}\n{"title": "t"}\n'
    report = load_bytes_report(data, "x.jsonl")
    assert [d.id for d in report.documents] == ["a"]
    reasons = [e.reason for e in report.errors]
    assert len(reasons) == 4
    assert "line 2" in reasons[0] and "JSON object" in reasons[0]
    assert "line 3" in reasons[1] and "duplicate id" in reasons[1]
    assert "line 4" in reasons[2] and "empty" in reasons[2]
    assert "line 5" in reasons[3] and "'text'" in reasons[3]


def test_jsonl_all_bad_raises() -> None:
    with pytest.raises(DocumentError, match="line 1"):
        load_bytes(b"not json\n", "x.jsonl")


# --- batches ------------------------------------------------------------------------
def test_load_paths_walks_directories_and_keeps_going(tmp_path: Path) -> None:
    (tmp_path / "bad.txt").write_bytes(b"caf\xe9 \xfa broken")
    (tmp_path / "good.txt").write_text("Good text.", encoding="utf-8")
    (tmp_path / "skip.csv").write_text("a,b", encoding="utf-8")
    (tmp_path / ".git").mkdir()
    (tmp_path / ".git" / "HEAD.txt").write_text("ref", encoding="utf-8")
    calls: list[tuple[int, int]] = []
    report = load_paths([FIXTURES, tmp_path], progress=lambda done, total: calls.append((done, total)))
    assert isinstance(report, LoadReport)
    sources = {Path(d.source).name for d in report.documents}
    assert {"handbook.md", "page.html", "records.jsonl", "notes.txt", "good.txt"} <= sources
    assert "skip.csv" not in sources and "HEAD.txt" not in sources
    err_paths = sorted(Path(e.path.split(":")[0]).name for e in report.errors)
    assert err_paths == ["bad.txt", "records.jsonl"]
    assert calls[-1][0] == calls[-1][1] == len(calls)


def test_load_paths_reports_duplicates_and_missing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("Same text.", encoding="utf-8")
    (tmp_path / "b.md").write_text("Same text.", encoding="utf-8")
    report = load_paths([tmp_path / "a.txt", tmp_path / "b.md", tmp_path / "missing.txt"])
    assert len(report.documents) == 1
    reasons = [e.reason for e in report.errors]
    assert any("duplicate document id" in r for r in reasons)
    assert any("not found" in r for r in reasons)


def test_supported_suffixes_all_have_loaders(tmp_path: Path) -> None:
    for suffix in SUPPORTED_SUFFIXES:
        if suffix == ".pdf":
            data = make_pdf([["Hello world."]])
        elif suffix == ".jsonl":
            data = b'{"text": "Hello world."}\n'
        else:
            data = b"Hello world."
        [doc] = load_bytes(data, "f" + suffix)
        assert "Hello world." in doc.text


def test_html_edge_inputs_do_not_warn() -> None:
    # pytest turns warnings into errors: bs4 warns on XML parsed as HTML and on URL-like markup
    [xml] = load_bytes(b'<?xml version="1.0"?><root><title>X</title><item>Hello there</item></root>', "feed.html")
    assert xml.text.splitlines() == ["X", "", "Hello there"]
    [url] = load_bytes(b"https://example.com/page.html", "link.html")
    assert url.text == "https://example.com/page.html"
    xhtml = (
        b'<?xml version="1.0"?><html xmlns="http://www.w3.org/1999/xhtml"><head><title>XH</title></head>'
        b"<body><h1>Hi</h1><p>Para.</p></body></html>"
    )
    [doc] = load_bytes(xhtml, "page.xhtml.html")
    assert (doc.title, doc.text) == ("XH", "# Hi\n\nPara.")


def test_html_legacy_encoding_from_meta_charset() -> None:
    data = "<html><head><meta charset='windows-1252'></head><body><p>Caf\xe9 \x93quoted\x94</p></body></html>"
    [doc] = load_bytes(data.encode("latin-1"), "old.html")
    assert doc.text == "Café “quoted”"


def test_lone_surrogate_rejected() -> None:
    with pytest.raises(DocumentError, match="lone surrogate U\\+D800 at offset 3"):
        document_from_text("abc\ud800def")
    report = load_bytes_report(b'{"text": "ok \\ud800"}\n{"text": "fine"}\n', "s.jsonl")
    assert [d.text for d in report.documents] == ["fine"]
    assert "line 1" in report.errors[0].reason


@settings(max_examples=200, deadline=None)
@given(
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=200).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.builds(lambda b: b"%PDF-1.4\n" + b, st.binary(max_size=200)),
        st.builds(lambda t: f"<html><body><h2>{t}</h2><p>{t}</p></body></html>".encode("utf-8", "surrogatepass"), st.text(max_size=50)),
    ),
    st.sampled_from(SUPPORTED_SUFFIXES),
)
def test_any_bytes_load_or_fail_with_document_error(data: bytes, suffix: str) -> None:
    report = load_bytes_report(data, "upload" + suffix)
    assert all(isinstance(e, DocumentError) and e.reason for e in report.errors)
    for doc in report.documents:
        assert doc.text.strip()
        assert "\x00" not in doc.text
        assert doc.format in ("txt", "md", "html", "pdf", "jsonl")


# --- extraction engine, titles, page chrome --------------------------------------------
def test_pdf_extracted_with_pdfium_and_the_extractor_is_recorded() -> None:
    [doc] = load_bytes(make_pdf([["Revenue 1,577 2,031"], ["Second page."]], title="Quarterly Figures"), "q.pdf")
    assert doc.metadata["extractor"].startswith("pypdfium2 ") and doc.metadata["pages"] == "2"
    assert doc.text[doc.page_starts[1]:].startswith("Second page.")
    assert "Revenue 1,577 2,031" in doc.text


def test_pdf_falls_back_to_pypdf_when_pdfium_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    from ctxroute.retrievers import extract_pdf

    def broken(data: bytes, where: str) -> None:
        raise RuntimeError("pdfium cannot open it")

    monkeypatch.setattr(extract_pdf, "_pdfium", broken)
    [doc] = load_bytes(make_pdf([["Hello there."], ["Page two."]]), "q.pdf")
    assert doc.metadata["extractor"].startswith("pypdf ") and len(doc.page_starts) == 2


def test_pdf_extractor_can_be_chosen() -> None:
    from ctxroute.retrievers.extract_pdf import pdf_extract

    data = make_pdf([["One."], ["Two."]])
    a, b = pdf_extract(data, "x.pdf", "pypdf"), pdf_extract(data, "x.pdf", "pypdfium2")
    assert a.extractor.startswith("pypdf ") and b.extractor.startswith("pypdfium2 ")
    assert len(a.page_starts) == len(b.page_starts) == 2
    with pytest.raises(DocumentError, match="unknown PDF extractor"):
        pdf_extract(data, "x.pdf", "ocr")


def test_pdf_title_skips_id_like_metadata_and_code_comments() -> None:
    # an accession-number "title" is not a title; a "# comment" line is never one either
    data = make_pdf([["# This file was automatically generated by the", "Quarterly Report of Acme", "Body text."]],
                    title="0001018724-23-000018")
    [doc] = load_bytes(data, "acme.pdf")
    assert doc.title == "Quarterly Report of Acme"


def test_first_heading_ignores_code_blocks() -> None:
    from ctxroute.retrievers.documents import first_heading

    assert first_heading("```\n# This file was automatically generated by the\n```\n\n# Real Title\n") == "Real Title"
    [doc] = load_bytes(b"```sh\n# comment\n```\n\nplain words\n", "notes.md")
    assert doc.title == "notes"


def test_html_navigation_menus_and_footers_are_dropped() -> None:
    html = b"""<html><head><title>Guide</title></head><body>
    <header><a href="/">Home</a> | <a href="/docs">Docs</a></header>
    <nav>Prev | Next</nav><div class="site-menu">Menu entry</div><ul role="navigation"><li>Jump</li></ul>
    <main><article><header><h1>Install</h1></header><p>Run the installer.</p>
    <pre># This file was automatically generated by the
make install</pre></article></main>
    <div id="footer">Copyright 2024</div><footer>Privacy | Terms</footer></body></html>"""
    [doc] = load_bytes(html, "guide.html")
    for chrome in ("Home", "Prev", "Menu entry", "Jump", "Copyright", "Privacy"):
        assert chrome not in doc.text
    assert "# Install" in doc.text and "Run the installer." in doc.text
    assert "```\n# This file was automatically generated by the\nmake install\n```" in doc.text
    from ctxroute.retrievers.chunking import chunk_document

    headings = {s.heading for s in chunk_document(doc).sections}
    assert not any("automatically generated" in h for h in headings)
