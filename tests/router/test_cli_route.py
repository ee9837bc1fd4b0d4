"""`ctxroute route` and `ctxroute bench router` end to end on a small hashing-embedder collection."""
from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from ctxroute.cli import app
from ctxroute.cli.bench_router import run_router_bench
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
             "--policy", "rules", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["route"] in {"rag", "lc", "hybrid", "mr"} and d["policy"] == "rules"
    assert d["features"]["has_probe"] == 1.0 and d["features"]["qtype"] == "counting"
    assert {e["route"] for e in d["estimates"]} == {"rag", "lc", "hybrid", "mr", "extractive", "compressed-lc"}
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
    r = _run("Who?", "--collection", "harbour", "--policy", "learned", "--router-params", "absent-router.json")
    assert r.exit_code == 2 and "absent-router.json" in r.output
    r = _run("Who?", "--collection", "harbour", "--profile", "gpt-4")
    assert r.exit_code == 2 and "unknown model profile 'gpt-4'" in r.output and "CTXROUTE_LLM_PROFILE=generic" in r.output
    r = _run("Who?", "--collection", "harbour", "--doc", "no-such-doc")
    assert r.exit_code == 2 and "no-such-doc" in r.output and "docs list" in r.output
    r = _run("Who?", "--collection", "harbour", "--policy", "rules", "--budget-tokens", "10")
    assert r.exit_code == 2 and "no route fits the budget" in r.output


def test_bench_router_small():
    result = run_router_bench(n=40, passages=["the tenant paid rent"] * 30 + ["ships in the harbour"] * 30)
    assert set(result["policies"]) == {"rules", "rules+prototypes", "self-route", "learned", "cascade (route + answer-side step)"}
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


SECOND = "\n\n".join(
    f"Part {i}\n\nThe orchard keeper counted {3 * i} apple trees. The cooperative sold cider in {1990 + i}."
    for i in range(25)
)


@pytest.fixture()
def two_docs(home):
    store = CollectionStore(home / "collections")
    col = store.create("two", embedder=HashingEmbedder(dim=64))
    col.add_documents([document_from_text(TEXT, source="harbour.txt", doc_id="harbour"),
                       document_from_text(SECOND, source="orchard.txt", doc_id="orchard")])
    return store


def test_route_doc_scopes_sizes_and_probe(two_docs):
    whole = json.loads(_run("How many apple trees did the keeper count?", "-c", "two", "--profile", "gpt-4o",
                            "--policy", "rules", "--json").output)
    r = _run("How many apple trees did the keeper count?", "-c", "two", "--profile", "gpt-4o", "--doc", "orchard",
             "--policy", "rules", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    stats = two_docs.open("two").stats()
    orchard = stats.doc_tokens[list(stats.doc_ids).index("orchard")]
    assert d["collection"]["doc_ids"] == ["orchard"] and d["collection"]["scoped"]
    assert (d["collection"]["n_docs"], d["collection"]["total_tokens"]) == (1, orchard)
    assert whole["collection"]["n_docs"] == 2 and whole["collection"]["total_tokens"] == stats.total_tokens
    # the decision was made on the scoped sizes and probe
    assert d["features"]["total_tokens"] == orchard and d["features"]["n_docs"] == 1
    assert d["features"]["n_docs_in_top"] == 1.0 and whole["features"]["n_docs_in_top"] == 2.0
    lc = {e["route"]: e for e in d["estimates"]}["lc"]
    assert orchard < lc["prompt_tokens"] < orchard + 400
    assert d["route"] and d["fallbacks"] and d["estimates"] and d["model"]["profile"] == "gpt-4o"
    # repeatable: both documents again give the whole collection's sizes
    both = json.loads(_run("How many apple trees?", "-c", "two", "--doc", "orchard", "--doc", "harbour",
                           "--policy", "rules", "--json").output)
    assert both["collection"]["total_tokens"] == stats.total_tokens


QUESTIONS = (
    "How many apple trees did the keeper count?",
    "Summarize what the two documents say about the harbour and the orchard.",
    "Who paid rent for year 2005?",
    "Compare the cider sales with the number of ships recorded.",
    "What does clause 7 require of the licensee?",
    "Is there any mention of a lighthouse fire?",
)


@pytest.mark.parametrize("profile, policy", [("gpt-4o", None), ("smollm2-135m-instruct", None), ("gpt-4o", "rules")])
def test_cli_and_engine_decide_identically(two_docs, profile, policy):
    """`ctxroute route` and the engine (`ctxroute ask`) type, size, probe and route alike; with
    no --policy both use the engine's default policy."""
    import asyncio

    from ctxroute.pipelines.engine import Engine, EngineConfig
    from ctxroute.pipelines.llm.scripted import ScriptedLLM
    from ctxroute.profiles import get_profile
    from ctxroute.router import QuestionTyper

    col = two_docs.open("two")
    config = EngineConfig(policy=policy) if policy else EngineConfig()
    engine = Engine(two_docs, ScriptedLLM(profile=get_profile(profile)), config=config)
    blended = QuestionTyper(col.embedder)
    differs = 0
    for i, q in enumerate(QUESTIONS):
        docs = ["orchard"] if i % 3 == 2 else None
        args = [q, "-c", "two", "--profile", profile, "--json"] + (["--doc", "orchard"] if docs else [])
        args += ["--policy", policy] if policy else []
        r = _run(*args)
        assert r.exit_code == 0, r.output
        cli = json.loads(r.output)
        ref = asyncio.run(engine.decide(q, "two", docs=docs))
        assert cli["route"] == ref.route.value and cli["fallbacks"] == [f.value for f in ref.fallbacks], q
        assert cli["reasons"] == list(ref.reasons) and cli["policy"] == ref.policy, q
        assert cli["features"] == pytest.approx(dict(ref.features)), q
        # the engine blends embedding prototypes into the question type: so does the CLI now
        assert cli["features"]["qtype"] == blended.classify(q).qtype.value
        differs += QuestionTyper().classify(q).scores != blended.classify(q).scores
    assert differs  # without prototypes (the CLI before) the type scores were different


def test_route_no_probe_keeps_the_scope(two_docs):
    r = _run("How many apple trees?", "-c", "two", "--doc", "orchard", "--no-probe", "--policy", "rules", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["features"]["has_probe"] == 0.0 and d["features"]["n_docs"] == 1
    assert d["collection"]["doc_ids"] == ["orchard"] and d["features"]["total_tokens"] == d["collection"]["total_tokens"]
