"""Page furniture (running headers, footers, page numbers) is excluded, never rewritten."""
from __future__ import annotations

from pathlib import Path

import pytest

from ctxroute.retrievers.chunking import ChunkingConfig, chunk_document
from ctxroute.retrievers.furniture import furniture_spans, split_around
from ctxroute.types import Document


def paged(pages: list[str]) -> Document:
    starts, pos = [], 0
    for i, p in enumerate(pages):
        if i:
            pos += 2
        starts.append(pos)
        pos += len(p)
    return Document(id="d", text="\n\n".join(pages), title="T", format="pdf", page_starts=tuple(starts))


def report(n: int = 6) -> Document:
    return paged([
        f"Shared MIME-info Database\nSection {'ABCDEF'[i - 1]} body.\nShared MIME-info Database appears in the body too.\n"
        f"The value on page {i} is {i * 111} units, said the report.\nPage {i} of {n}"
        for i in range(1, n + 1)
    ])


def test_running_header_and_page_numbers_are_furniture() -> None:
    doc = report()
    found = {doc.text[s:e] for s, e in furniture_spans(doc)}
    assert found == {"Shared MIME-info Database"} | {f"Page {i} of 6" for i in range(1, 7)}
    # the same words inside the body (not a page's first or last lines) are content
    body_line = "Shared MIME-info Database appears in the body too."
    assert body_line not in found


def test_sentences_and_passages_skip_furniture_and_offsets_stay_exact() -> None:
    doc = report()
    chunks = chunk_document(doc, ChunkingConfig(passage_tokens=64))
    spans = furniture_spans(doc)
    texts = [s.text_of(doc) for s in chunks.sentences]
    assert "Shared MIME-info Database" not in texts and not any(t.startswith("Page ") for t in texts)
    assert "The value on page 3 is 333 units, said the report." in texts
    for c in chunks.all():
        assert c.text_of(doc) == doc.text[c.start : c.end]
    for c in (*chunks.sentences, *chunks.passages):
        assert not any(a < c.end and c.start < b and doc.text[a:b] not in doc.text[c.start:c.end] for a, b in spans)
        assert not any(a < c.end and c.start < b for a, b in spans if c in chunks.sentences)


def test_numbered_lines_are_furniture_only_when_counting_with_the_pages() -> None:
    doc = paged([f"Note {n}\nBody text of note {n} goes on here.\nACME 10-Q | {i + 10}" for i, n in enumerate([3, 1, 4, 1, 5, 9])])
    found = {doc.text[s:e] for s, e in furniture_spans(doc)}
    assert found == {f"ACME 10-Q | {i + 10}" for i in range(6)}  # the notes' numbers do not count up


def test_unpaged_and_short_documents_have_no_furniture() -> None:
    assert furniture_spans(Document(id="x", text="Header\nbody\nHeader\n", format="txt")) == []
    assert furniture_spans(paged(["Head\nA.", "Head\nB."])) == []  # two pages are too few to tell


def test_split_around() -> None:
    assert split_around(0, 10, [(2, 4), (6, 7)]) == [(0, 2), (4, 6), (7, 10)]
    assert split_around(3, 5, [(0, 4)]) == [(4, 5)]
    assert split_around(0, 5, []) == [(0, 5)]


SEC = Path(__file__).resolve().parents[3] / "shared" / "data" / "docugami-sec-10q" / "data" / "v1" / "docs"


@pytest.mark.data
def test_real_10q_pdf_tables_and_furniture() -> None:
    path = SEC / "2023 Q3 AMZN.pdf"
    if not path.exists():
        pytest.skip(f"SEC 10-Q data not found at {SEC}")
    from ctxroute.retrievers.documents import load_path

    [doc] = load_path(path)
    assert doc.metadata["extractor"].startswith("pypdfium2 ")
    assert len(doc.page_starts) == int(doc.metadata["pages"]) == 51
    # PDFium keeps a row's label with its numbers, and numbers whole
    assert "Total net sales 127,101 143,083 364,779 404,824" in doc.text
    chunks = chunk_document(doc)
    texts = {s.text_of(doc) for s in chunks.sentences}
    assert "Table of Contents" not in texts  # the running header of every page
    assert "Total net sales 127,101 143,083 364,779 404,824" in texts  # a table row is a sentence
    headings = {s.heading for s in chunks.sections}
    assert any("Item 2. Management" in h for h in headings)
