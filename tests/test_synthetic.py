from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from ctxroute.synthetic import TASKS, GoldQA, SyntheticDoc, generate_corpus, generate_report, write_corpus


@pytest.fixture(scope="module", params=[3, 11, 2024])
def report(request: pytest.FixtureRequest) -> SyntheticDoc:
    return generate_report(request.param)


def evidence_texts(doc: SyntheticDoc, q: GoldQA) -> list[str]:
    return [doc.text[s:e] for s, e in q.evidence]


def test_deterministic_per_seed() -> None:
    assert generate_report(5, 3000) == generate_report(5, 3000)
    assert generate_report(5, 3000).text != generate_report(6, 3000).text
    assert generate_corpus(3, 2, 2000) == generate_corpus(3, 2, 2000)


@pytest.mark.parametrize("n_words", [2000, 20000, 50000])
def test_size_and_speed(n_words: int) -> None:
    t0 = time.perf_counter()
    doc = generate_report(2, n_words)
    elapsed = time.perf_counter() - t0
    words = len(doc.text.split())
    assert n_words <= words <= n_words * 1.15 + 600
    assert elapsed < max(1.0, n_words / 20000)


def test_structure_is_markdown(report: SyntheticDoc) -> None:
    lines = report.text.splitlines()
    assert lines[0] == f"# {report.title}"
    h2 = [line for line in lines if line.startswith("## ")]
    assert len(h2) >= 20
    assert any(line.startswith("| ") for line in lines)
    assert any(line.startswith("- ") for line in lines)
    assert len(set(report.text.split("\n\n"))) > 100  # filler is varied


def test_every_task_is_present(report: SyntheticDoc) -> None:
    tasks = {q.task for q in report.qa}
    assert tasks == set(TASKS)
    assert len(report.qa) >= 20
    assert len({q.question for q in report.qa}) == len(report.qa)


def test_lookup_evidence_contains_answer(report: SyntheticDoc) -> None:
    for q in report.qa:
        if q.task != "lookup":
            continue
        [ev] = evidence_texts(report, q)
        accepted = [q.answer, *q.aliases]
        assert any(a in ev for a in accepted), (q.question, ev, accepted)


def test_spans_are_whole_sentences_or_lines(report: SyntheticDoc) -> None:
    for q in report.qa:
        for s, e in q.evidence:
            ev = report.text[s:e]
            assert ev == ev.strip() and ev
            assert s == 0 or report.text[s - 1] in " \n"
            assert e == len(report.text) or report.text[e] in " \n"


def test_comparison_evidence_names_both_sides(report: SyntheticDoc) -> None:
    comparisons = [q for q in report.qa if q.task == "comparison"]
    assert len(comparisons) >= 3
    for q in comparisons:
        evs = evidence_texts(report, q)
        assert len(evs) == 2
        names = re.findall(r"\b([A-Z][a-z]+) or ([A-Z][a-z]+)\?", q.question)
        if names:
            a, b = names[0]
            assert a in evs[0] + evs[1] and b in evs[0] + evs[1]
            assert q.answer in (a, b)
        # the two facts live in different sections, far apart
        (s1, _), (s2, _) = sorted(q.evidence)
        assert "\n## " in report.text[s1:s2]


def test_aggregation_answers_follow_from_evidence(report: SyntheticDoc) -> None:
    [grew] = [q for q in report.qa if q.question.startswith("Which divisions grew")]
    rows = []
    for t in evidence_texts(report, grew):
        unit = re.search(r"[Tt]he (\w+) division", t).group(1)  # type: ignore[union-attr]
        now, before = re.findall(r"([\d,]+\.\d) million euros", t)
        rows.append((unit, now, before))
    expected = [u for u, now, before in rows if float(now.replace(",", "")) > float(before.replace(",", ""))]
    assert grew.answer == (", ".join(expected) if expected else "None of them")
    [total] = [q for q in report.qa if q.question.startswith("What was the combined revenue")]
    assert total.answer == f"{sum(float(r[1].replace(',', '')) for r in rows):,.1f} million euros"


def test_count_answers_match_evidence(report: SyntheticDoc) -> None:
    for q in report.qa:
        if q.task != "count":
            continue
        evs = evidence_texts(report, q)
        if q.question.startswith(("How many facilities", "How many members")):
            assert int(q.answer) == len(evs)
            assert all(ev.startswith("- ") for ev in evs)
        elif "operating margin above" in q.question:
            threshold = float(re.search(r"above ([\d.]+)%", q.question).group(1))  # type: ignore[union-attr]
            margins = [float(re.search(r"([\d.]+)%", ev).group(1)) for ev in evs]  # type: ignore[union-attr]
            assert int(q.answer) == sum(m > threshold for m in margins)


def test_unanswerable_questions_have_no_evidence(report: SyntheticDoc) -> None:
    unanswerable = [q for q in report.qa if q.task == "unanswerable"]
    assert len(unanswerable) >= 3
    for q in unanswerable:
        assert q.evidence == () and not q.answerable
    missing_division = re.search(r"of the (\w+) division", unanswerable[0].question).group(1)  # type: ignore[union-attr]
    assert missing_division not in report.text
    missing_city = re.search(r"facility in ([\w-]+)\?", unanswerable[-1].question).group(1)  # type: ignore[union-attr]
    assert missing_city not in report.text
    assert "Chief Data Officer" not in report.text


def test_corpus_docs_differ_and_carry_their_index() -> None:
    docs = generate_corpus(seed=7, n_docs=3, n_words=3000)
    assert len({d.title.split(" Annual")[0] for d in docs}) == 3
    for i, d in enumerate(docs):
        assert {q.doc_index for q in d.qa} == {i}


def test_write_corpus_round_trip(tmp_path: Path) -> None:
    docs = generate_corpus(seed=1, n_docs=2, n_words=2000)
    paths = write_corpus(tmp_path / "demo", docs)
    assert [p.suffix for p in paths] == [".md", ".md", ".jsonl"]
    records = [json.loads(line) for line in paths[-1].read_text(encoding="utf-8").splitlines()]
    assert len(records) == sum(len(d.qa) for d in docs)
    assert len({r["id"] for r in records}) == len(records)
    for r in records:
        assert set(r) == {"id", "question", "answers", "doc", "evidence", "task", "answerable"}
        text = (tmp_path / "demo" / r["doc"]).read_text(encoding="utf-8")
        assert r["answerable"] == (r["task"] != "unanswerable")
        if r["task"] == "lookup":
            assert any(a in text[s:e] for s, e in r["evidence"] for a in r["answers"])


def test_synthetic_report_chunks_into_its_sections(report: SyntheticDoc) -> None:
    from ctxroute.retrievers.chunking import chunk_document
    from ctxroute.retrievers.documents import document_from_text

    doc = document_from_text(report.text, format="md")
    chunks = chunk_document(doc)
    headings = [s.heading for s in chunks.sections]
    assert any(h.startswith("The ") and h.endswith(" Division") for h in headings)
    # each lookup evidence span is exactly one sentence of the chunker (cites line up)
    sentence_spans = {(s.start, s.end) for s in chunks.sentences}
    for q in report.qa:
        if q.task == "lookup":
            assert q.evidence[0] in sentence_spans, report.text[slice(*q.evidence[0])]
