from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxroute.cli import app
from ctxroute.retrievers.collection import CollectionStore
from ctxroute.retrievers.documents import document_from_text
from ctxroute.retrievers.embedders import HashingEmbedder
from tests.pipelines.test_strategies import SECOND, report_text

runner = CliRunner()


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path))
    monkeypatch.delenv("CTXROUTE_LLM_BASE_URL", raising=False)
    monkeypatch.delenv("CTXROUTE_REDIS_URL", raising=False)
    coll = CollectionStore(tmp_path / "collections").create("docs", embedder=HashingEmbedder())
    coll.add_documents([document_from_text(report_text(), title="Lumen Works annual report", format="md"),
                        document_from_text(SECOND, title="Field notes", format="md")])
    return tmp_path


def test_ask_json_extractive(home: Path) -> None:
    result = runner.invoke(app, ["ask", "How much rainfall fell at the coastal station?", "-c", "docs",
                                 "--llm", "extractive", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["route_taken"] == "extractive" and data["decision"]["reasons"]
    quote = data["citations"][0]["quote"]
    assert quote == "Rainfall reached 812 millimetres at the coastal station."
    doc = CollectionStore(home / "collections").open("docs").document(data["citations"][0]["doc_id"])
    c = data["citations"][0]
    assert doc.text[c["start"]:c["end"]] == quote and c["title"] == "Field notes"
    assert set(data["latency_ms"]) >= {"route", "retrieve", "llm", "verify", "total"}


def test_ask_json_scripted_records_route_usage_and_fallbacks(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXROUTE_LLM_BACKEND", "scripted")  # replies "" -> abstains -> escalates to lc
    result = runner.invoke(app, ["ask", "What was the operating margin of the Northern division?", "-c", "docs",
                                 "--route", "rag", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["decision"]["route"] == "rag" and data["route_taken"] == "lc"
    assert data["fallbacks_taken"] == ["rag->lc: RAG abstained"]
    assert [u["stage"] for u in data["usage"]] == ["rag.answer", "lc.answer"]
    assert all(u["prompt_tokens"] > 0 for u in data["usage"]) and data["abstained"] is True


def test_ask_human_output(home: Path) -> None:
    result = runner.invoke(app, ["ask", "Who was appointed chief executive of the Eastern division?", "-c", "docs",
                                 "--llm", "extractive"])
    assert result.exit_code == 0, result.output
    assert "Maria Keller" in result.output and "route" in result.output and "latency" in result.output
    assert "Lumen" in result.output  # the document title (folded to the terminal width)


def test_ask_errors_are_one_line(home: Path) -> None:
    result = runner.invoke(app, ["ask", "q?", "-c", "missing", "--llm", "extractive"])
    assert result.exit_code == 1 and "does not exist" in result.output and "Traceback" not in result.output
    result = runner.invoke(app, ["ask", "q?", "-c", "docs", "--route", "psychic", "--llm", "extractive"])
    assert result.exit_code == 2 and "unknown route" in result.output


def test_demo_extractive_with_hashing_embedder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path))
    result = runner.invoke(app, ["demo", "--llm", "extractive", "--embedder", "hashing", "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(lines) == 3 and all(d["gold"] for d in lines)
    coll = CollectionStore(tmp_path / "collections").open("demo", embedder=HashingEmbedder())
    for d in lines:
        assert d["route_taken"] == "extractive"
        for c in d["citations"]:
            assert coll.document(c["doc_id"]).text[c["start"]:c["end"]] == c["quote"]
    # a second run reuses the collection (same generator output)
    version = coll.version
    again = runner.invoke(app, ["demo", "--llm", "extractive", "--embedder", "hashing", "--json", "--questions", "1"])
    assert again.exit_code == 0 and CollectionStore(tmp_path / "collections").open(
        "demo", embedder=HashingEmbedder()).version == version


def test_empty_question_same_message_for_route_and_ask(home: Path) -> None:
    asked = runner.invoke(app, ["ask", "", "-c", "docs", "--llm", "extractive"])
    routed = runner.invoke(app, ["route", "", "-c", "docs"])
    assert asked.exit_code != 0 and routed.exit_code != 0
    assert asked.output.strip() == routed.output.strip() and "empty" in asked.output, (asked.output, routed.output)


def test_unknown_llm_lists_every_choice(home: Path) -> None:
    result = runner.invoke(app, ["ask", "q?", "-c", "docs", "--llm", "nosuchllm"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    out = " ".join(result.output.split())
    assert "nosuchllm" in out and all(b in out for b in ("local", "openai", "scripted", "extractive")), out


def test_attribute_warns_once_per_fact(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A model that cites nothing, with --attribute: one warning saying so (and what was
    attributed), not two."""
    from ctxroute.cli import ask as ask_cli
    from ctxroute.pipelines.llm.scripted import ScriptedLLM

    monkeypatch.setattr(ask_cli, "build_llm_from_env",
                        lambda _: ScriptedLLM(default="Rainfall reached 812 millimetres at the coastal station."))
    result = runner.invoke(app, ["ask", "How much rainfall fell at the coastal station?", "-c", "docs",
                                 "--route", "rag", "--attribute", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert [c["origin"] for c in data["citations"]] == ["attributed"]
    cited_nothing = [w for w in data["warnings"] if "cited no" in w]
    assert len(cited_nothing) == 1 and "attributed" in cited_nothing[0], data["warnings"]
    human = runner.invoke(app, ["ask", "How much rainfall fell at the coastal station?", "-c", "docs",
                                "--route", "rag", "--attribute"])
    assert " ".join(human.output.split()).count("cited no") == 1, human.output


def test_compress_budget_options_reach_the_route_and_its_estimate(home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXROUTE_LLM_BACKEND", "scripted")
    q = "Compare the operating margin of the Northern division with the rainfall at the coastal station."

    def comp_tokens(*extra: str) -> int:
        result = runner.invoke(app, ["ask", q, "-c", "docs", "--route", "compressed-lc", "--json", *extra])
        assert result.exit_code == 0, result.output
        data = json.loads(result.output)
        assert data["decision"]["route"] == "compressed-lc"
        first = data["usage"][0]
        assert first["stage"].startswith("compressed")
        return first["prompt_tokens"]

    default, tight = comp_tokens(), comp_tokens("--compress-tokens", "40")
    assert tight < default and tight < comp_tokens("--compress-ratio", "0.2")
    routed = runner.invoke(app, ["route", q, "-c", "docs", "--json", "--compress-tokens", "40", "--profile", "gpt-4o"])
    assert routed.exit_code == 0, routed.output
    est = {e["route"]: e for e in json.loads(routed.output)["estimates"]}
    plain = runner.invoke(app, ["route", q, "-c", "docs", "--json", "--profile", "gpt-4o"])
    est0 = {e["route"]: e for e in json.loads(plain.output)["estimates"]}
    total = json.loads(plain.output)["features"]["total_tokens"]
    # the same question overhead on both; the budget part is 40 tokens against 0.35 x the collection
    assert est0["compressed-lc"]["prompt_tokens"] - est["compressed-lc"]["prompt_tokens"] == int(0.35 * total) - 40
    bad = runner.invoke(app, ["ask", q, "-c", "docs", "--compress-ratio", "1.5", "--llm", "extractive"])
    assert bad.exit_code != 0 and "ratio" in bad.output and "Traceback" not in bad.output
