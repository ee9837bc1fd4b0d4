from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ctxroute.errors import InputError
from ctxroute.retrievers.chunking import ChunkingConfig, DocumentChunks, chunk_document, split_sentences
from ctxroute.retrievers.documents import document_from_text, load_path
from ctxroute.retrievers.furniture import furniture_spans, split_around
from ctxroute.retrievers.tokens import get_counter
from ctxroute.types import Document, Level

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "docs"


def sentences_of(text: str) -> list[str]:
    return [text[s:e] for s, e in split_sentences(text)]


def make_doc(text: str, fmt: str = "md", page_starts: tuple[int, ...] = ()) -> Document:
    return Document(id="doc", text=text, title="T", format=fmt, page_starts=page_starts)


# --- the invariants every chunking must satisfy --------------------------------------
def check_invariants(doc: Document, chunks: DocumentChunks, config: ChunkingConfig) -> None:
    text = doc.text
    assert chunks.document.level is Level.DOCUMENT
    assert (chunks.document.start, chunks.document.end) == (0, len(text))
    by_id = {c.id: c for c in chunks.all()}
    assert len(by_id) == len(chunks.all()), "chunk ids are unique"
    for c in chunks.all():
        assert 0 <= c.start <= c.end <= len(text)
        assert c.text_of(doc) == text[c.start : c.end]
        assert c.doc_id == doc.id
    # sections: in order, stripped, non-empty, only whitespace (or page furniture) between and around them
    furniture = furniture_spans(doc)

    def blank(a: int, b: int) -> bool:
        return all(not text[x:y].strip() for x, y in split_around(a, b, furniture))

    prev_end = 0
    for i, sec in enumerate(chunks.sections):
        assert sec.level is Level.SECTION and sec.parent_id == chunks.document.id and sec.ordinal == i
        body = sec.text_of(doc)
        assert body and body == body.strip()
        assert blank(prev_end, sec.start)
        prev_end = sec.end
    assert blank(prev_end, len(text))
    if not blank(0, len(text)):
        assert chunks.sections and chunks.sentences and chunks.passages
    # no sentence holds page furniture
    for s in chunks.sentences:
        assert not any(a < s.end and s.start < b for a, b in furniture)
    # sentences and passages: non-empty, stripped, inside their section, in order
    for level_chunks in (chunks.sentences, chunks.passages):
        prev_start = -1
        for i, c in enumerate(level_chunks):
            body = c.text_of(doc)
            assert body and body == body.strip()
            parent = by_id[c.parent_id]
            assert parent.level is Level.SECTION
            assert parent.start <= c.start and c.end <= parent.end
            if c.level is Level.PASSAGE and c.heading != parent.heading:  # a table cut by rows repeats its header
                assert c.heading.startswith(parent.heading + " | ")
            else:
                assert c.heading == parent.heading
            assert c.ordinal == i
            assert c.start >= prev_start
            prev_start = c.start
    prev_end = -1
    for s in chunks.sentences:
        assert s.start >= prev_end, "sentences do not overlap"
        prev_end = s.end
        assert s.n_tokens <= min(config.max_sentence_tokens, config.passage_tokens)
        assert s.n_tokens == get_counter(config.encoding).count(s.text_of(doc))
    # passages: sentence aligned, cover every sentence, start after the previous one
    sent_starts = {s.start for s in chunks.sentences}
    sent_ends = {s.end for s in chunks.sentences}
    covered: set[str] = set()
    for p in chunks.passages:
        assert p.start in sent_starts and p.end in sent_ends
        inside = [s for s in chunks.sentences if p.start <= s.start and s.end <= p.end]
        assert inside and all(s.parent_id == p.parent_id for s in inside)
        covered.update(s.id for s in inside)
    assert covered == {s.id for s in chunks.sentences}
    for a, b in zip(chunks.passages, chunks.passages[1:]):
        assert b.start > a.start or b.parent_id != a.parent_id


words = st.sampled_from(
    "the a revenue Dr. Mr. U.S. 3.5 2,031 margin Northern division grew fell 12% été Ünïcödé 東京 "
    "data... fact! why? ok e.g. i.e. Fig. No. (note) \"quoted\" 'single' — – naïve".split()
)
sentence = st.builds(
    lambda ws, end: " ".join(ws) + end,
    st.lists(words, min_size=1, max_size=12),
    st.sampled_from([".", "!", "?", "", "...", "。", ":"]),
)
paragraph = st.builds(" ".join, st.lists(sentence, min_size=1, max_size=5))
block = st.one_of(
    paragraph,
    st.builds(lambda t: "# " + t, sentence),
    st.builds(lambda t: "### " + t, sentence),
    st.builds(lambda t: t.upper(), sentence),
    st.builds(lambda a, b: f"| {a} | {b} |", sentence, sentence),
    st.builds(lambda a: f"- {a}\n- {a}", sentence),
    st.builds(lambda a: f"{a}\n{a}", paragraph),
    st.just("|---|---|"),
    st.just("```\ncode line\n```"),
    st.text(max_size=40),
)


@st.composite
def documents(draw: st.DrawFn) -> tuple[str, str]:
    blocks = draw(st.lists(block, min_size=1, max_size=12))
    if draw(st.booleans()) and blocks:
        blocks.append(blocks[0])  # a repeated paragraph
    sep = draw(st.sampled_from(["\n\n", "\r\n\r\n", "\n", "\n \n\n", "\r\n"]))
    lead = draw(st.sampled_from(["", "\n", "  \r\n"]))
    fmt = draw(st.sampled_from(["md", "txt", "html", "jsonl"]))
    return lead + sep.join(blocks), fmt


small_config = st.builds(
    ChunkingConfig,
    passage_tokens=st.integers(min_value=8, max_value=80),
    overlap_sentences=st.integers(min_value=0, max_value=3),
    max_sentence_tokens=st.integers(min_value=4, max_value=40),
    section_tokens=st.integers(min_value=64, max_value=200),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(documents(), small_config)
def test_chunking_invariants_on_generated_text(doc_fmt: tuple[str, str], config: ChunkingConfig) -> None:
    text, fmt = doc_fmt
    doc = make_doc(text, fmt)
    check_invariants(doc, chunk_document(doc, config), config)


@settings(max_examples=150, deadline=None)
@given(st.text(max_size=300), small_config)
def test_chunking_invariants_on_arbitrary_unicode(text: str, config: ChunkingConfig) -> None:
    doc = make_doc(text, "txt")
    check_invariants(doc, chunk_document(doc, config), config)


@settings(max_examples=60, deadline=None)
@given(st.lists(paragraph, min_size=1, max_size=5), small_config)
def test_pdf_pages_become_sections(pages: list[str], config: ChunkingConfig) -> None:
    starts, pos = [], 0
    for i, page in enumerate(pages):
        if i:
            pos += 2
        starts.append(pos)
        pos += len(page)
    doc = make_doc("\n\n".join(pages), "pdf", tuple(starts))
    chunks = chunk_document(doc, config)
    check_invariants(doc, chunks, config)
    pages_seen = []
    for sec in chunks.sections:  # "Page 3", or a section path ending in "(page 3)"
        m = re.fullmatch(r"Page (\d+)|.+ \(page (\d+)\)", sec.heading)
        assert m is not None
        assert int(m.group(1) or m.group(2)) == doc.page_at(sec.start)
        pages_seen.append(doc.page_at(sec.start))
    assert pages_seen == sorted(set(pages_seen))
    for s in chunks.sentences:
        assert doc.page_at(s.start) == doc.page_at(s.end - 1)


@settings(max_examples=60, deadline=None)
@given(paragraph, st.sampled_from(["\n\n", "\r\n\r\n"]))
def test_repeated_paragraph_gets_two_spans(para: str, sep: str) -> None:
    text = f"# Heading\n\n{para}{sep}Between.{sep}{para}"
    doc = make_doc(text)
    chunks = chunk_document(doc)
    matching = [s for s in chunks.sentences if s.text_of(doc) == sentences_of(para)[0]]
    assert len(matching) >= 2
    assert len({(s.start, s.end) for s in matching}) == len(matching)


# --- sentence splitter --------------------------------------------------------------
@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Mr. Smith met Dr. Jones. They talked.", ["Mr. Smith met Dr. Jones.", "They talked."]),
        ("The U.S. economy grew 3.5 percent. Prices fell.", ["The U.S. economy grew 3.5 percent.", "Prices fell."]),
        ("J. K. Rowling wrote it. Then what?", ["J. K. Rowling wrote it.", "Then what?"]),
        ("Use tools, e.g. hammers. Or not.", ["Use tools, e.g. hammers.", "Or not."]),
        ("He waited... and waited... Then he left!", ["He waited... and waited...", "Then he left!"]),
        ('"Really?" she asked. "Yes."', ['"Really?" she asked.', '"Yes."']),
        ("这是第一句。这是第二句！好吗？", ["这是第一句。", "这是第二句！", "好吗？"]),
        ("First line.\r\nSecond line.\r\n", ["First line.", "Second line."]),
        ("See Fig. 3 for details.", ["See Fig. 3 for details."]),
        ("1. Method\n2. Result", ["1. Method", "2. Result"]),
        ("- apples\n- pears\n* plums", ["- apples", "- pears", "* plums"]),
        ("| a | b |\n|---|---|\n| 1 | 2 |", ["| a | b |", "| 1 | 2 |"]),
        ("Totals\nNorth 12\nSouth 14", ["Totals", "North 12", "South 14"]),
        ("It ended in 1544.The next one (350 mi).Then more.", ["It ended in 1544.", "The next one (350 mi).", "Then more."]),
        ("Version 3.5 of ASP.NET and e.g.The end", ["Version 3.5 of ASP.NET and e.g.The end"]),
        ("See No. 5 here. No. Not that one.", ["See No. 5 here.", "No.", "Not that one."]),
        ("He sat in the sun. Then Acme Inc. The end.", ["He sat in the sun.", "Then Acme Inc.", "The end."]),
        (
            "Revenue received in the current fiscal year from all customers     1,200     900\n"
            "Cost of revenue for products sold during the current fiscal year      400     300",
            [
                "Revenue received in the current fiscal year from all customers     1,200     900",
                "Cost of revenue for products sold during the current fiscal year      400     300",
            ],
        ),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert sentences_of(text) == expected


def test_hard_wrapped_prose_is_joined() -> None:
    text = (
        "The station recorded the coldest winter in its history, with the\n"
        "temperature falling below minus forty degrees on nine separate days\n"
        "in January. Supplies ran short.\n"
    )
    assert sentences_of(text) == [
        "The station recorded the coldest winter in its history, with the\n"
        "temperature falling below minus forty degrees on nine separate days\n"
        "in January.",
        "Supplies ran short.",
    ]


def test_split_sentences_respects_bounds() -> None:
    text = "Alpha one. Beta two. Gamma three."
    start = text.index("Beta")
    spans = split_sentences(text, start, len(text) - 1)
    assert [text[s:e] for s, e in spans] == ["Beta two.", "Gamma three"]


def test_separator_only_text_still_gets_a_sentence() -> None:
    assert sentences_of("---") == ["---"]


# --- sections -----------------------------------------------------------------------
def test_markdown_sections_and_heading_inheritance() -> None:
    [doc] = load_path(FIXTURES / "handbook.md")
    chunks = chunk_document(doc)
    assert [s.heading for s in chunks.sections] == ["Field Station Handbook", "Safety", "Supplies"]
    safety = chunks.sections[1]
    rows = [s.text_of(doc) for s in chunks.sentences if s.parent_id == safety.id and s.text_of(doc).startswith("|")]
    assert rows == ["| Item | Count |", "| Radios | 12 |", "| Flares | 40 |"]
    assert all(p.heading == "Safety" for p in chunks.passages if p.parent_id == safety.id)
    check_invariants(doc, chunks, ChunkingConfig())


def test_heading_only_section_merges_into_next() -> None:
    doc = make_doc("# 2031 Results\n\n## Northern Division\n\nRevenue grew.\n\n## Southern Division\n\nRevenue fell.")
    chunks = chunk_document(doc)
    assert [s.heading for s in chunks.sections] == ["Northern Division", "Southern Division"]
    assert chunks.sections[0].text_of(doc).startswith("# 2031 Results")


def test_headings_inside_code_fences_are_ignored() -> None:
    doc = make_doc("# Real\n\nText.\n\n```\n# not a heading\n```\n\nMore text.")
    assert [s.heading for s in chunk_document(doc).sections] == ["Real"]


def test_plain_text_heading_heuristics() -> None:
    text = (
        "CHAPTER ONE\n\nIt was a cold morning. The ship was late.\n\n"
        "The Second Voyage\n\nThey sailed north.\n\n"
        "2.3 Results\n\nNothing was found.\n\n"
        "this line is not a heading\n\nStill the same section."
    )
    doc = document_from_text(text, title="Log")
    chunks = chunk_document(doc)
    assert [s.heading for s in chunks.sections] == ["CHAPTER ONE", "The Second Voyage", "2.3 Results"]


def test_long_plain_text_without_headings_is_grouped_by_paragraphs() -> None:
    para = "The committee met again and discussed the budget for the coming season at length. " * 8
    text = "\n\n".join(f"{para.strip()} Item {i}." for i in range(40))
    doc = document_from_text(text)
    config = ChunkingConfig(section_tokens=500)
    chunks = chunk_document(doc, config)
    assert len(chunks.sections) > 5
    assert all(s.n_tokens <= 500 + 200 for s in chunks.sections)
    assert chunks.sections[0].heading.startswith("Part (1/")
    check_invariants(doc, chunks, config)


def test_pdf_sections_are_pages() -> None:
    pages = ["Page one text. More.", "", "Page three text."]
    text = "\n\n".join(pages)
    doc = make_doc(text, "pdf", (0, 22, 24))
    chunks = chunk_document(doc)
    assert [s.heading for s in chunks.sections] == ["Page 1", "Page 3"]
    assert chunks.sections[1].text_of(doc) == "Page three text."


# --- passages -----------------------------------------------------------------------
def test_passages_pack_to_budget_with_sentence_overlap() -> None:
    text = " ".join(f"Sentence number {i} says something about topic {i}." for i in range(60))
    doc = make_doc(text, "txt")
    config = ChunkingConfig(passage_tokens=40, overlap_sentences=1)
    chunks = chunk_document(doc, config)
    assert len(chunks.passages) > 5
    for a, b in zip(chunks.passages, chunks.passages[1:]):
        a_sents = [s.id for s in chunks.sentences if a.start <= s.start and s.end <= a.end]
        b_sents = [s.id for s in chunks.sentences if b.start <= s.start and s.end <= b.end]
        assert a_sents[-1] == b_sents[0], "exactly one sentence of overlap"
        assert len(set(a_sents) & set(b_sents)) == 1
    assert all(p.n_tokens <= 40 + 8 for p in chunks.passages)


def test_no_overlap() -> None:
    text = " ".join(f"Sentence number {i} is here." for i in range(30))
    chunks = chunk_document(make_doc(text, "txt"), ChunkingConfig(passage_tokens=20, overlap_sentences=0))
    for a, b in zip(chunks.passages, chunks.passages[1:]):
        assert b.start > a.end


def test_long_sentence_split_at_whitespace() -> None:
    text = "word " * 500 + "end."
    config = ChunkingConfig(passage_tokens=100, max_sentence_tokens=50)
    doc = make_doc(text, "txt")
    chunks = chunk_document(doc, config)
    assert len(chunks.sentences) >= 10
    assert all(s.n_tokens <= 50 for s in chunks.sentences)
    assert all(not s.text_of(doc).startswith(" ") for s in chunks.sentences)
    check_invariants(doc, chunks, config)


def test_huge_word_is_cut() -> None:
    text = "x" * 5000
    config = ChunkingConfig(passage_tokens=64, max_sentence_tokens=32)
    doc = make_doc(text, "txt")
    chunks = chunk_document(doc, config)
    check_invariants(doc, chunks, config)
    assert "".join(s.text_of(doc) for s in chunks.sentences) == text


def test_ids_are_deterministic() -> None:
    [doc] = load_path(FIXTURES / "page.html")
    a, b = chunk_document(doc), chunk_document(doc)
    assert a == b
    assert a.sections[0].id == f"{doc.id}:s0"
    assert a.passages[0].id == f"{doc.id}:p0"
    assert a.sentences[0].id == f"{doc.id}:t0"


# --- config -------------------------------------------------------------------------
def test_config_round_trip_and_validation() -> None:
    config = ChunkingConfig(passage_tokens=128, overlap_sentences=2)
    assert ChunkingConfig.from_dict(config.to_dict()) == config
    with pytest.raises(InputError, match="passage_tokens"):
        ChunkingConfig(passage_tokens=0)
    with pytest.raises(InputError, match="overlap_sentences"):
        ChunkingConfig(overlap_sentences=-1)
    with pytest.raises(InputError, match="unknown chunking settings"):
        ChunkingConfig.from_dict({"passage_tokens": 10, "bogus": 1})


def test_long_text_without_line_breaks_is_grouped_by_sentences() -> None:
    text = " ".join(f"Early life number {i} was spent near the river with friends and family." for i in range(600))
    doc = document_from_text(text, title="Biography")
    config = ChunkingConfig(section_tokens=1000)
    chunks = chunk_document(doc, config)
    assert len(chunks.sections) >= 5
    assert chunks.sections[0].heading.startswith("Biography (1/")
    assert all(s.n_tokens <= 1000 for s in chunks.sections)
    check_invariants(doc, chunks, config)


@pytest.mark.data
def test_invariants_on_real_documents(shared_data: Path) -> None:
    import json

    lara = shared_data / "LaRA" / "datasets" / "32k"
    docs = [load_path(sorted((lara / kind).iterdir())[0])[0] for kind in ("book", "financial", "paper")]
    with (shared_data / "LooGLE" / "LooGLE-testdata" / "longdep_qa.jsonl").open(encoding="utf-8") as fh:
        record = json.loads(fh.readline())
    docs.append(document_from_text(record["input"], title=record["title"]))
    [contracts] = list(shared_data.glob("L-Eval/**/legal_contract_qa.jsonl"))
    with contracts.open(encoding="utf-8") as fh:
        docs.append(document_from_text(json.loads(fh.readline())["input"], title="contract"))
    config = ChunkingConfig()
    for doc in docs:
        chunks = chunk_document(doc, config)
        check_invariants(doc, chunks, config)
        assert len(chunks.sections) > 1, doc.title
        assert max(p.n_tokens for p in chunks.passages) <= config.passage_tokens + 8


def test_markdown_heading_titles() -> None:
    doc = make_doc("# Learning C#\n\nText one.\n\n## Closing hashes ##\r\n\r\nText two.\n\n#hashtag is not a heading.")
    chunks = chunk_document(doc)
    assert [s.heading for s in chunks.sections] == ["Learning C#", "Closing hashes"]


def test_regrouped_plain_text_keeps_table_pipes_inside_sections() -> None:
    """Found by hypothesis: regrouping an over-long section at sentence ends lost a trailing
    table pipe between two parts."""
    text = ("| the the the the the the the the U.S. U.S. Ünïcödé. | the the U.S. U.S. U.S. U.S. U.S. "
            "3.5 Ünïcödé Ünïcödé data... naïve. |\n\nthe.")
    doc = make_doc(text, "txt")
    config = ChunkingConfig(section_tokens=64)
    check_invariants(doc, chunk_document(doc, config), config)


# --- tables -------------------------------------------------------------------------
TABLE = (
    "Three Months Ended\nSeptember 30,\n2022 2023\n"
    + "\n".join(f"Line item number {i} $ {1000 + i:,} $ {2000 + i:,}" for i in range(12))
)


def test_plain_text_table_header_is_not_a_heading() -> None:
    text = "Intro line of prose here.\n\n| Name | Value |\n|---|---|\n| a | 1 |\n\nYear   Revenue   Margin\n2021   10   2\n"
    doc = make_doc(text, "txt")
    assert [s.heading for s in chunk_document(doc).sections] == ["T"]


def test_pdf_table_rows_are_sentences_and_a_fitting_table_stays_whole() -> None:
    prose = " ".join(f"Sentence {w} of the discussion runs on." for w in "abcdefghij")
    doc = make_doc(f"{prose}\n{TABLE}\nAfter the table.", "pdf", (0,))
    chunks = chunk_document(doc, ChunkingConfig(passage_tokens=240, overlap_sentences=1))  # table 205 tokens, prose 80
    texts = [s.text_of(doc) for s in chunks.sentences]
    assert "Line item number 3 $ 1,003 $ 2,003" in texts
    holding = [p for p in chunks.passages if "Line item number 0 " in p.text_of(doc)]
    assert len(holding) == 1 and "Line item number 11 " in holding[0].text_of(doc)
    assert holding[0].text_of(doc).startswith("Three Months Ended")


def test_a_table_cut_by_rows_repeats_its_header_in_the_heading() -> None:
    doc = make_doc(TABLE, "pdf", (0,))
    chunks = chunk_document(doc, ChunkingConfig(passage_tokens=60, overlap_sentences=0))
    assert len(chunks.passages) > 1
    first, *rest = chunks.passages
    assert first.heading == "Page 1"
    for p in rest:
        assert p.heading == "Page 1 | Three Months Ended September 30, 2022 2023"
        assert doc.text[p.start:p.end] == p.text_of(doc)


def test_pdf_sections_carry_the_section_path() -> None:
    pages = ["PART I. FINANCIAL INFORMATION\nItem 1. Financial Statements\nBody one.",
             "More body two.", "Item 2. Management Discussion\nBody three."]
    starts, pos = [], 0
    for i, p in enumerate(pages):
        pos += 2 if i else 0
        starts.append(pos)
        pos += len(p)
    doc = make_doc("\n\n".join(pages), "pdf", tuple(starts))
    assert [s.heading for s in chunk_document(doc).sections] == [
        "PART I. FINANCIAL INFORMATION > Item 1. Financial Statements (page 1)",
        "PART I. FINANCIAL INFORMATION > Item 1. Financial Statements (page 2)",
        "PART I. FINANCIAL INFORMATION > Item 2. Management Discussion (page 3)",
    ]
