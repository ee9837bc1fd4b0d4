"""Report from a small synthetic results file: files exist, numbers match a hand computation."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxroute.eval.report import oracle_records, summarize_records, write_report

# question -> (rag correct, lc correct); rag costs 100 tokens, lc 1000
TABLE = {"q1": (1, 1), "q2": (1, 0), "q3": (0, 1), "q4": (0, 0)}


def _records() -> list[dict]:
    recs = []
    for q, (rag, lc) in TABLE.items():
        for route, ok, tok in (("rag", rag, 100), ("lc", lc, 1000)):
            recs.append({
                "key": f"{q}|{route}", "id": q, "route_requested": route, "route_taken": route, "task": "lookup" if q != "q4" else "hallu",
                "answerable": q != "q4", "correct": {"judge": float(ok), "f1": 0.5 * ok}, "prompt_tokens": tok, "completion_tokens": 10,
                "cost": tok / 1e6, "citation_precision": 1.0 if ok else 0.0, "citation_recall": None, "fallbacks": [],
                "latency_ms": {"llm": 10.0 if route == "rag" else 50.0, "total": 12.0 if route == "rag" else 55.0}, "error": None,
            })
    recs.append({"key": "q5|rag", "id": "q5", "route_requested": "rag", "error": "llm_timeout: x", "task": "lookup", "answerable": True})
    return recs


def test_oracle_records() -> None:
    orc = {r["id"]: r for r in oracle_records(_records())}
    assert {q: r["route_taken"] for q, r in orc.items()} == {"q1": "rag", "q2": "rag", "q3": "lc", "q4": "rag"}


def test_summary_matches_hand_computation() -> None:
    s = summarize_records(_records(), n_boot=200)
    rag, lc, orc = s["routes"]["rag"], s["routes"]["lc"], s["routes"]["oracle"]
    assert rag["n"] == 5 and rag["errors"] == 1
    assert rag["accuracy"]["judge"]["mean"] == pytest.approx(0.5)
    assert lc["accuracy"]["judge"]["mean"] == pytest.approx(0.5)
    assert orc["accuracy"]["judge"]["mean"] == pytest.approx(0.75)
    assert rag["token_ratio_vs_lc"] == pytest.approx(0.1)
    assert orc["token_ratio_vs_lc"] == pytest.approx(1300 / 4000)
    assert rag["prompt_tokens"]["mean"] == pytest.approx(100)
    assert rag["by_task"]["lookup"]["mean"] == pytest.approx(2 / 3)
    assert rag["abstention_accuracy"]["mean"] == pytest.approx(0.0)  # q4 is the only unanswerable one
    assert rag["citation_precision"]["mean"] == pytest.approx(0.5)
    assert rag["latency_ms"]["llm"]["mean"] == pytest.approx(10.0)
    assert orc["route_mix"] == {"lc": 0.25, "rag": 0.75}


def test_write_report_files(tmp_path: Path) -> None:
    rep = write_report(_records(), tmp_path, n_boot=200)
    names = {p.name for p in rep.files}
    assert {"summary.json", "summary.md", "accuracy_by_route.png", "accuracy_by_task.png", "pareto.png", "tokens_cost.png",
            "route_mix.png", "citations.png", "abstention.png", "latency.png"} <= names
    for p in rep.files:
        assert p.stat().st_size > 0
    data = json.loads((tmp_path / "summary.json").read_text(encoding="utf-8"))
    assert data["routes"]["oracle"]["accuracy"]["judge"]["mean"] == pytest.approx(0.75)
    md = (tmp_path / "summary.md").read_text(encoding="utf-8")
    assert "| oracle | 4 | 0 | 75.0 [" in md


def test_cli_report(tmp_path: Path) -> None:
    from ctxroute.cli import app

    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in _records()), encoding="utf-8")
    res = CliRunner().invoke(app, ["eval", "report", str(tmp_path), "--n-boot", "200"])
    assert res.exit_code == 0, res.output
    assert (tmp_path / "report" / "summary.md").is_file() and (tmp_path / "report" / "pareto.png").is_file()


def test_oracle_pairs_the_model_free_extractive_reader_with_each_model() -> None:
    from ctxroute.eval.report import oracle_records

    base = {"dataset": "d", "task": "t", "answerable": True, "prompt_tokens": 0, "error": None}
    recs = [
        {**base, "id": "q1", "route_requested": "rag", "model": "m", "prompt_tokens": 900, "correct": {"judge": 0.0}},
        {**base, "id": "q1", "route_requested": "extractive", "model": "", "correct": {"judge": 1.0}},
        {**base, "id": "q2", "route_requested": "rag", "model": "m", "prompt_tokens": 800, "correct": {"judge": 1.0}},
        {**base, "id": "q2", "route_requested": "extractive", "model": "", "correct": {"judge": 0.0}},
    ]
    out = {r["id"]: r["route_taken"] for r in oracle_records(recs)}
    assert out == {"q1": "extractive", "q2": "rag"}
