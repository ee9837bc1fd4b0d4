"""`ctxroute route` and `ctxroute bench router` end to end on a small hashing-embedder collection."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ctxroute.cli import app
from ctxroute.cli.route import run_router_bench
from ctxroute.retrievers.collection import CollectionStore
from ctxroute.retrievers.documents import document_from_text
from ctxroute.retrievers.embedders import HashingEmbedder

TEXT = "\n\n".join(
    f"Section {i}\n\nThe harbour master recorded {i} ships in the log. The tenant paid rent for year {2000 + i}. "
    f"Clause {i} says the licensee must keep the lighthouse painted."
    for i in range(40)
)


@pytest.fixture()
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path))
    monkeypatch.delenv("CTXROUTE_LLM_PROFILE", raising=False)
    store = CollectionStore(tmp_path / "collections")
    col = store.create("harbour", embedder=HashingEmbedder(dim=64))
    col.add_documents([document_from_text(TEXT, source="harbour.txt")])
    return tmp_path


def _run(*args: str):
    return CliRunner().invoke(app, ["route", *args])


def test_route_json(home):
    r = _run("How many times did the harbour master record ships?", "--collection", "harbour", "--profile", "gpt-4o",
             "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["route"] in {"rag", "lc", "hybrid", "mr"} and d["policy"] == "rules"
    assert d["features"]["has_probe"] == 1.0 and d["features"]["qtype"] == "counting"
    assert {e["route"] for e in d["estimates"]} == {"rag", "lc", "hybrid", "mr", "extractive"}
    assert d["reasons"] and d["fallbacks"]


def test_route_table_budget_and_policy(home):
    r = _run("Who paid rent?", "--collection", "harbour", "--policy", "self-route", "--budget-tokens", "200000",
             "--features")
    assert r.exit_code == 0, r.output
    assert "route: rag" in r.output and "self-route" in r.output and "estimates" in r.output
    assert "smollm2-135m-instruct" in r.output  # the default profile


def test_route_errors_name_the_fix(home):
    r = _run("Who?", "--collection", "nope")
    assert r.exit_code == 2 and "ctxroute ingest" in r.output
    r = _run("Who?", "--collection", "harbour", "--policy", "learned")
    assert r.exit_code == 2 and "--router-params" in r.output
    r = _run("Who?", "--collection", "harbour", "--budget-tokens", "10")
    assert r.exit_code == 2 and "no route fits the budget" in r.output


def test_bench_router_small():
    result = run_router_bench(n=40, passages=["the tenant paid rent"] * 30 + ["ships in the harbour"] * 30)
    assert set(result["policies"]) == {"rules", "rules+prototypes", "self-route", "learned"}
    for r in result["policies"].values():
        assert r["p50_ms"] > 0 and r["p50_ratio"] > 0


def test_route_learned_policy_from_params_file(home, tmp_path):
    from tests.router.test_learned import _synthetic
    from ctxroute.router import FEATURE_NAMES, fit_learned

    X, correct, cost = _synthetic(n=40)
    path = tmp_path / "router.json"
    fit_learned(X, correct, cost, FEATURE_NAMES).save(path)
    r = _run("Who paid rent?", "--collection", "harbour", "--policy", "learned", "--router-params", str(path), "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["policy"] == "learned" and d["reasons"][0].startswith("learned: ")
