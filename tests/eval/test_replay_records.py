"""Generic replay records: validation, scoring on a real collection, the CLI, protocols."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxroute.errors import InputError
from ctxroute.eval.lara import Outcome
from ctxroute.eval.protocols import protocol_folds, run_protocol
from ctxroute.eval.records import load_records, outcomes_from_records, outcomes_to_records, parse_record
from ctxroute.eval.replay import FeatureBuilder, replay_choices, summarize
from ctxroute.profiles import get_profile
from ctxroute.retrievers import CollectionStore, HashingEmbedder, document_from_text

LEASE = ("# Lease\n\n## Rent\nRent is 1,200 dollars a month, payable on the first day.\n\n"
         "## Termination\nEither party may terminate with sixty days written notice.\n") * 3
REPORT = ("# Annual report\n\n## Results\nRevenue was 81,797 million dollars in 2023. Operating margin was 12.4 percent.\n\n"
          "## Outlook\nThe company expects moderate growth next year.\n") * 3


def rec(i: int, q: str, doc: str, rag: str, rag_label: str, lc_label: str, **kw) -> dict:  # type: ignore[no-untyped-def]
    return {"id": f"q{i}", "question": q, "docs": [doc], "model": "gpt-4o",
            "routes": {"rag": {"answer": rag, "label": rag_label}, "lc": {"answer": "x", "label": lc_label}}, **kw}


RECORDS = [
    rec(1, "How much is the monthly rent?", "lease.md", "1,200 dollars a month.", "correct", "correct"),
    rec(2, "What was revenue in 2023?", "report.md", "The provided text does not mention revenue.", "refusal", "correct"),
    rec(3, "How much notice ends the lease?", "lease.md", "Thirty days.", "incorrect", "correct"),
    rec(4, "Who is the auditor?", "report.md", "The documents do not say who the auditor is.", "refusal", "incorrect",
        answerable=False),
]


@pytest.fixture
def collection(tmp_path: Path):  # type: ignore[no-untyped-def]
    store = CollectionStore(tmp_path / "collections")
    coll = store.create("c", embedder=HashingEmbedder())
    coll.add_documents([document_from_text(LEASE, source="docs/lease.md", format="md"),
                        document_from_text(REPORT, source="docs/report.md", format="md")])
    return coll


def test_parse_record_errors_name_the_line_and_field() -> None:
    with pytest.raises(InputError, match="line 3: 'routes'"):
        parse_record({"question": "q?"}, 3)
    with pytest.raises(InputError, match=r"routes.rag.label 'maybe'"):
        parse_record({"question": "q?", "routes": {"rag": {"label": "maybe"}, "lc": {"label": "correct"}}}, 1)
    with pytest.raises(InputError, match="prompt_tokens"):
        parse_record({"question": "q?", "routes": {"rag": {"label": "correct", "prompt_tokens": -1}, "lc": {"label": True}}}, 1)
    r = parse_record({"question": " q? ", "routes": {"rag": {"label": "Refusal"}, "lc": {"label": True}}}, 1)
    assert r.routes["rag"].label == "refusal" and r.routes["lc"].label == "correct" and r.question == "q?"


def test_records_score_on_the_collection(collection) -> None:  # type: ignore[no-untyped-def]
    records = [parse_record(d, i) for i, d in enumerate(RECORDS, 1)]
    outs, fb = outcomes_from_records(records, collection=collection, profile_for=get_profile)
    # a refusal is right only for the unanswerable question
    assert [(o.rag_correct, o.lc_correct) for o in outs] == [(True, True), (False, True), (False, True), (True, False)]
    assert outs[1].rag_refused and not outs[0].rag_refused
    # scope: one document's tokens, not the collection's; prompt tokens estimated when absent
    lease_tokens = next(t for d, t in zip(collection.stats().doc_ids, collection.stats().doc_tokens)
                        if collection.document(d).source.endswith("lease.md"))
    assert outs[0].doc_tokens == lease_tokens < collection.stats().total_tokens
    assert outs[0].lc_prompt_tokens > outs[0].doc_tokens and outs[0].rag_prompt_tokens <= 3000 + 50
    f = fb(outs[1])
    assert f.n_docs == 1 and f.has_probe == 1
    s = fb.signals(outs[1])
    assert s.refused and s.question_coverage > 0  # the retrieved text came from the report
    oracle = replay_choices(outs, "oracle")
    for pol in ("rag", "lc", "self-route", "rules", "cascade", "auto"):
        ch = replay_choices(outs, pol, features=fb)
        assert len(ch) == 4
        summarize(pol, ch, oracle, n_boot=50)
    sr = replay_choices(outs, "self-route", features=fb)
    assert [c.route for c in sr] == ["rag", "rag>lc", "rag", "rag>lc"]
    assert [c.correct for c in sr] == [True, True, False, False]


def test_unknown_document_and_missing_model_are_clear(collection) -> None:  # type: ignore[no-untyped-def]
    bad = parse_record(rec(1, "q?", "nope.pdf", "a", "correct", "correct"), 1)
    with pytest.raises(InputError, match="'nope.pdf' matches no document"):
        outcomes_from_records([bad], collection=collection, profile_for=get_profile)
    nomodel = parse_record({k: v for k, v in rec(1, "q?", "lease.md", "a", "correct", "correct").items() if k != "model"}, 1)
    with pytest.raises(InputError, match="--model"):
        outcomes_from_records([nomodel], collection=collection, profile_for=get_profile)


def test_inline_text_records_need_no_collection() -> None:
    r = parse_record({"question": "How much is the rent?", "text": LEASE, "model": "gpt-4o",
                      "routes": {"rag": {"answer": "1,200", "label": "correct"}, "lc": {"answer": "1,200", "label": "correct"}}}, 1)
    outs, fb = outcomes_from_records([r], profile_for=get_profile)
    assert outs[0].doc_tokens > 0 and fb(outs[0]).has_probe == 1


def test_cli_replay_on_records(tmp_path: Path, collection, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ctxroute.cli import app

    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path))
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in RECORDS) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["eval", "replay", str(path), "--collection", "c", "--policy", "rag,lc,auto,self-route",
                                   "--out", str(tmp_path / "out")])
    assert res.exit_code == 0, res.output
    assert "replay over 4 replay records" in res.output and "self-route" in res.output
    lines = (tmp_path / "out" / "results.jsonl").read_text().splitlines()
    assert len(lines) == 4 * 5  # 4 policies + oracle
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"question": "q", "routes": {"rag": {"label": "x"}, "lc": {"label": "correct"}}}\n')
    res = CliRunner().invoke(app, ["eval", "replay", str(bad), "--collection", "c"])
    assert res.exit_code != 0 and "label" in res.output


def test_lara_outcomes_convert_to_records_and_back() -> None:
    o = Outcome(key="32k/book/location/f/1", model="gpt-4o", length="32k", domain="book", level="hallu", question="Q?",
                rag_correct=True, lc_correct=False, rag_prompt_tokens=3010, lc_prompt_tokens=30010, doc_tokens=30000,
                rag_refused=True, file="f.txt", rag_answer="The text does not mention it.", lc_answer="Blue.")
    (d,) = list(outcomes_to_records([o]))
    r = parse_record(d, 1)
    assert not r.answerable and r.routes["rag"].label == "correct" and r.routes["lc"].label == "incorrect"
    assert r.routes["lc"].prompt_tokens == 30010 and r.domain == "book" and r.length == "32k"


def _synthetic(n: int = 240) -> list[Outcome]:
    outs = []
    for i in range(n):
        refused = i % 4 == 0
        outs.append(Outcome(
            key=f"{'32k' if i % 2 else '128k'}/{('book', 'paper', 'financial')[i % 3]}/q{i}", model=("gpt-4o", "qwen2.5-7b-instruct")[i % 2 == 0 and i % 3 == 0],
            length="32k" if i % 2 else "128k", domain=("book", "paper", "financial")[i % 3], level="location",
            question=f"How much revenue did unit {i} report?", rag_correct=not refused and i % 5 != 0,
            lc_correct=refused or i % 7 != 0, rag_prompt_tokens=3000, lc_prompt_tokens=30000 if i % 2 else 120000,
            doc_tokens=30000 if i % 2 else 120000, rag_refused=refused,
            rag_answer="The text does not mention it." if refused else f"Unit {i} reported {i} million.",
        ))
    return outs


def test_protocol_folds_never_share_a_group() -> None:
    outs = _synthetic()
    for proto, key in (("cross-length", lambda o: o.length), ("domain", lambda o: o.domain)):
        folds = protocol_folds(outs, proto)
        assert len(folds) >= 2
        for _, fit, test in folds:
            assert {key(o) for o in fit}.isdisjoint({key(o) for o in test}) and fit and test
    with pytest.raises(InputError, match="unknown protocol"):
        protocol_folds(outs, "random")


def test_run_protocol_reports_every_policy_with_fitted_parts_held_out() -> None:
    outs = _synthetic()
    res = run_protocol(outs, "cross-length", FeatureBuilder(), n_boot=50)
    assert len(res) == 2
    for r in res:
        by = r.by_policy()
        assert set(by) >= {"rag", "lc", "self-route", "rules", "learned", "cascade", "auto", "oracle"}
        assert by["oracle"].accuracy.mean >= max(by[p].accuracy.mean for p in ("rag", "lc", "cascade"))
        g = r.goal()
        assert set(g) == {"above_best_fixed", "below_oracle", "token_ratio", "met"}
        assert r.as_dict()["winner"] in by


def test_records_file_errors(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text("not json\n")
    with pytest.raises(InputError, match="line 1"):
        load_records(p)
    with pytest.raises(InputError, match="does not exist"):
        load_records(tmp_path / "missing.jsonl")


def test_cli_records_without_model_use_a_named_stand_in(tmp_path: Path, collection, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    from ctxroute.cli import app

    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path))
    monkeypatch.delenv("CTXROUTE_LLM_PROFILE", raising=False)
    rows = []
    for r in RECORDS:
        r = {k: v for k, v in r.items() if k != "model"}
        r["doc_ids"] = [Path(r.pop("docs")[0]).stem.upper()]  # "LEASE": matched by file stem, any case
        r["routes"] = {"RAG": r["routes"]["rag"], "long_context": r["routes"]["lc"]}
        rows.append(r)
    path = tmp_path / "records.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n", encoding="utf-8")
    res = CliRunner().invoke(app, ["eval", "replay", str(path), "-c", "c", "--policy", "auto"])
    assert res.exit_code == 0, res.output
    assert "profile gpt-4o" in res.output and "replay over 4 replay records" in res.output


def test_a_labelled_refusal_counts_as_refused_even_when_the_detector_misses_it(collection) -> None:  # type: ignore[no-untyped-def]
    r = parse_record(rec(1, "What was revenue in 2023?", "report.md", "Sorry, I could not work that out.", "refusal", "correct"), 1)
    outs, fb = outcomes_from_records([r], collection=collection, profile_for=get_profile)
    assert outs[0].rag_refused and fb.signals(outs[0]).refused == 1
