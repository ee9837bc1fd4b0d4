"""`ctxroute eval run` end to end with the scripted LLM backend and the hashing embedder."""
from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxroute.cli import app


def test_eval_run_then_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CTXROUTE_LLM_BACKEND", "scripted")
    (tmp_path / "a.txt").write_text("The lighthouse keeper was named Ada Byrne. She kept the lamp lit for forty years.\n" * 3, encoding="utf-8")
    (tmp_path / "qa.jsonl").write_text(
        json.dumps({"id": "q1", "question": "Who kept the lighthouse?", "answers": ["Ada Byrne"], "docs": ["a.txt"]}) + "\n"
        + json.dumps({"id": "q2", "question": "What colour was the lamp?", "answers": [], "docs": ["a.txt"], "answerable": False}) + "\n",
        encoding="utf-8",
    )
    out = tmp_path / "run"
    runner = CliRunner()
    res = runner.invoke(app, ["eval", "run", str(tmp_path / "qa.jsonl"), "--routes", "rag,lc", "--out", str(out), "--embedder", "hashing"])
    assert res.exit_code == 0, res.output
    recs = [json.loads(line) for line in (out / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    assert sorted(r["key"] for r in recs) == ["q1|lc", "q1|rag", "q2|lc", "q2|rag"]
    by = {r["key"]: r for r in recs}
    # the scripted backend answers with empty text: the engine abstains, which is right only for q2
    assert all(r["error"] is None and r["abstained"] for r in recs)
    assert by["q2|rag"]["correct"]["judge"] == 1.0 and by["q1|lc"]["correct"]["judge"] == 0.0
    assert by["q1|lc"]["route_taken"] == "lc" and by["q1|rag"]["prompt_tokens"] >= 0
    res = runner.invoke(app, ["eval", "run", str(tmp_path / "qa.jsonl"), "--routes", "rag,lc", "--out", str(out), "--embedder", "hashing"])
    assert res.exit_code == 0 and "4 already recorded" in res.output
    res = runner.invoke(app, ["eval", "report", str(out), "--n-boot", "100"])
    assert res.exit_code == 0, res.output
    assert (out / "report" / "summary.json").is_file()


def test_eval_run_bad_route(tmp_path: Path) -> None:
    res = CliRunner().invoke(app, ["eval", "run", "x.jsonl", "--routes", "rag,warp", "--out", str(tmp_path)])
    assert res.exit_code == 2 and "warp" in res.output


def test_eval_run_refuses_a_folder_answered_with_other_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("CTXROUTE_LLM_BACKEND", "scripted")
    (tmp_path / "a.txt").write_text("The lighthouse keeper was named Ada Byrne. She kept the lamp lit for forty years.\n" * 3, encoding="utf-8")
    (tmp_path / "qa.jsonl").write_text(
        json.dumps({"id": "q1", "question": "Compare the keeper and the lamp.", "answers": ["Ada Byrne"], "docs": ["a.txt"]}) + "\n",
        encoding="utf-8")
    out = tmp_path / "run"
    base = ["eval", "run", str(tmp_path / "qa.jsonl"), "--routes", "compressed-lc,rag", "--out", str(out), "--embedder", "hashing"]
    runner = CliRunner()
    res = runner.invoke(app, [*base, "--compress-ratio", "0.2"])
    assert res.exit_code == 0, res.output
    settings = json.loads((out / "settings.json").read_text(encoding="utf-8"))
    assert settings["compress_ratio"] == 0.2 and settings["compress_tokens"] is None and settings["policy"] == "auto"
    before = (out / "results.jsonl").read_text(encoding="utf-8")
    assert len(before.splitlines()) == 2
    res = runner.invoke(app, base)  # the default budget (0.35) into the same folder: refused, nothing written
    assert res.exit_code == 2 and "compress_ratio: 0.2 there, 0.35 now" in " ".join(res.output.split())
    assert (out / "results.jsonl").read_text(encoding="utf-8") == before
    res = runner.invoke(app, [*base, "--compress-ratio", "0.2"])  # same settings: resumes
    assert res.exit_code == 0 and "2 already recorded" in res.output
