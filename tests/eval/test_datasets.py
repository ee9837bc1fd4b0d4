"""Dataset loaders: generic round trip, quote resolution, and the real sets' counts."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxroute.errors import InputError
from ctxroute.eval.datasets import (
    EvalItem,
    Evidence,
    load_generic,
    load_lara,
    load_leval_legal,
    load_loogle,
    resolve_quote,
    write_generic,
)

DOC = "Alpha beta.  The   quick brown fox — jumps over the lazy dog[12].\nGamma delta epsilon."


def test_resolve_quote_normalised() -> None:
    q = "the quick brown fox - jumps over the lazy dog"
    span = resolve_quote(DOC, q)
    assert span is not None
    s, e = span
    assert DOC[s:e].startswith("The") and DOC[s:e].endswith("dog")
    assert resolve_quote(DOC, "not in there at all") is None
    # wiki reference markers in the quote are ignored
    assert resolve_quote("He was elected in 1997, then left.", "He was elected in 1997,[3] then left.") is not None


def _write_dataset(tmp_path: Path) -> Path:
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "a.txt").write_text(DOC, encoding="utf-8")
    rows = [
        {"id": "q1", "question": "What jumps?", "answers": ["the fox"], "docs": ["docs/a.txt"],
         "evidence": [{"doc": "docs/a.txt", "quote": "quick brown fox"}], "task": "lookup", "answerable": True},
        {"id": "q2", "question": "Which colour?", "answer": "brown", "choices": ["red", "brown"], "docs": ["docs/a.txt"],
         "evidence": [{"doc": "docs/a.txt", "start": 0, "end": 11}]},
        {"id": "q3", "question": "What is omega?", "answers": [], "docs": ["coll-doc-7"], "answerable": False},
    ]
    p = tmp_path / "qa.jsonl"
    p.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    return p


def test_generic_loader_and_round_trip(tmp_path: Path) -> None:
    ds = load_generic(_write_dataset(tmp_path))
    assert [i.id for i in ds.items] == ["q1", "q2", "q3"]
    q1, q2, q3 = ds.items
    assert set(ds.documents) == {"docs/a.txt"}  # q3's doc is a collection id, not a file
    ev = q1.evidence[0]
    assert ev.resolved and DOC[ev.start:ev.end] == "quick brown fox"  # type: ignore[misc]
    assert q2.answers == ("brown",) and q2.choices == ("red", "brown") and q2.evidence[0] == Evidence("docs/a.txt", 0, 11, "", "span")
    assert not q3.answerable and q3.docs == ("coll-doc-7",)
    assert ds.unresolved == 0
    out = tmp_path / "copy.jsonl"
    write_generic(ds.items, out)
    (tmp_path / "docs2").mkdir()
    again = load_generic(out)
    assert again.items == ds.items


def test_generic_loader_errors(tmp_path: Path) -> None:
    p = tmp_path / "bad.jsonl"
    p.write_text('{"question": "x", "id": "a"}\n{"question": "y", "id": "a"}\n', encoding="utf-8")
    with pytest.raises(InputError, match="duplicate id 'a'"):
        load_generic(p)
    p.write_text("{not json\n", encoding="utf-8")
    with pytest.raises(InputError, match=":1: not valid JSON"):
        load_generic(p)
    with pytest.raises(InputError, match="does not exist"):
        load_generic(tmp_path / "missing.jsonl")


def test_eval_item_answer_property() -> None:
    assert EvalItem("i", "q?", ("a", "b"), ()).answer == "a"
    assert EvalItem("i", "q?", (), ()).answer == ""


@pytest.mark.data
def test_lara_counts(shared_data: Path) -> None:
    ds = load_lara(shared_data / "LaRA", length=None)
    assert len(ds) == 2326
    assert sum(not i.answerable for i in ds.items) == 608
    assert len({i.id for i in ds.items}) == 2326
    assert len(ds.documents) == 131
    # the reconstructed 128k book location file is included
    assert sum(1 for i in ds.items if i.metadata["length"] == "128k" and i.task == "location" and i.metadata["domain"] == "book") == 250
    # context_order gives a region inside the document
    it = next(i for i in ds.items if i.evidence)
    ev = it.evidence[0]
    assert ev.kind == "region" and 0 <= ev.start < ev.end <= len(ds.documents[ev.doc].text)  # type: ignore[operator]
    # paper questions point at their paper's block
    paper = next(i for i in ds.items if i.metadata["domain"] == "paper" and i.metadata.get("context_order") == "1")
    ev = paper.evidence[0]
    assert ds.documents[ev.doc].text[ev.end:ev.end + 20].startswith("</end of paper 1>")
    assert len(load_lara(shared_data / "LaRA", "32k", domain="paper", level="hallu")) == 53


@pytest.mark.data
def test_loogle_counts(shared_data: Path) -> None:
    ds = load_loogle(shared_data / "LooGLE")
    assert len(ds) == 123
    n_ev = sum(len(i.evidence) for i in ds.items)
    resolved = sum(1 for i in ds.items for e in i.evidence if e.resolved)
    assert resolved + ds.unresolved == n_ev
    assert resolved / n_ev > 0.8


@pytest.mark.data
def test_leval_legal_counts(shared_data: Path) -> None:
    ds = load_leval_legal(shared_data / "L-Eval")
    assert len(ds) == 154
    assert len(ds.documents) == 23
    assert ds.unresolved == 0  # every gold clause is found in its contract
