"""Table-driven: (question, collection, model, probe, budget) -> route and reason code."""
from __future__ import annotations

import pytest

from ctxroute.errors import BudgetExceeded
from ctxroute.router import RulesRouter
from ctxroute.types import Budget, Route

from tests.router.helpers import CONFIDENT, EMPTY, UNSURE, features

CASES = [
    # (id, question, tokens, size, probe, budget, route, reason code, words in the reason)
    ("small-collection", "Who signed the lease?", 4_000, "tiny", None, Budget(), Route.LC,
     "small-collection", ["4k tokens", "just-send limit 6k"]),
    ("aggregation-beyond-window", "Summarize the main themes of the book.", 120_000, "frontier", None, Budget(),
     Route.MR, "whole-text-beyond-window", ["120k tokens > usable window 64k", "summar"]),
    ("counting-beyond-window", "How many times does the ghost appear?", 50_000, "small", None, Budget(),
     Route.MR, "whole-text-beyond-window", ["counting", "how many"]),
    ("unanswerable-cue", "What is the projected revenue growth rate for next year?", 30_000, "frontier", CONFIDENT,
     Budget(), Route.RAG, "likely-unanswerable", ["projected/forecast"]),
    ("unanswerable-weak-probe", "What colour is the captain's hat?", 30_000, "frontier", EMPTY, Budget(),
     Route.RAG, "likely-unanswerable", ["top dense score 0.080 < 0.50"]),
    ("confident-lookup", "Who signed the lease on behalf of the tenant?", 30_000, "frontier", CONFIDENT, Budget(),
     Route.RAG, "confident-lookup", ["margin 0.31 >= 0.15"]),
    ("comparison-fits-strong", "Compare the two methods in paper 0.", 20_000, "frontier", UNSURE, Budget(),
     Route.LC, "complex-fits-window", ["comparison", "cue: 'compare'", "lc for a frontier model"]),
    ("multihop-fits-small", "Why does the narrator leave, and what causes it?", 12_000, "small", UNSURE, Budget(),
     Route.HYBRID, "complex-fits-window", ["multi-hop", "hybrid for a small model"]),
    ("unsure-lookup-fits-strong", "Who signed the lease?", 30_000, "frontier", UNSURE, Budget(), Route.RAG,
     "default", ["lookup question, frontier model"]),
    ("beyond-window-rag", "Who signed the lease?", 100_000, "small", None, Budget(), Route.RAG,
     "beyond-window", ["100k tokens > usable window 16.4k"]),
    ("beyond-window-unsure", "Why does the narrator leave, and what causes it?", 100_000, "small", UNSURE,
     Budget(), Route.HYBRID, "beyond-window", ["a multi-hop question", "hybrid packs retrieved passages"]),
    ("beyond-window-lookup-unsure", "Who signed the lease?", 100_000, "small", UNSURE, Budget(), Route.RAG,
     "beyond-window", ["rag (LaRA: RAG matches or beats LC on lookups"]),
    ("default", "Who signed the lease?", 12_000, "small", None, Budget(), Route.RAG, "default", ["no stronger signal"]),
    ("comparison-compressed-fits", "Compare the two methods in paper 0.", 120_000, "frontier", UNSURE, Budget(),
     Route.COMPRESSED, "compressed-fits", ["120k tokens > usable window 64k", "ratio 0.35", "~42.2k prompt tokens",
                                           "compressed-lc"]),
    ("comparison-compressed-budget", "Compare the two methods in paper 0.", 20_000, "frontier", UNSURE,
     Budget(max_tokens=12_000), Route.COMPRESSED, "compressed-fits", ["> budget 12k", "ratio 0.35"]),
    ("comparison-compressed-too-big", "Compare the two methods in paper 0.", 400_000, "frontier", UNSURE, Budget(),
     Route.HYBRID, "beyond-window", ["a comparison question"]),
    ("budget-cut-tokens", "Summarize the main themes of the book.", 120_000, "frontier", None,
     Budget(max_tokens=5_000), Route.RAG, "whole-text-beyond-window",
     ["budget 5,000 tokens < mr estimate", "mr excluded", "hybrid excluded"]),
    ("budget-cut-cost", "Compare the two methods in paper 0.", 20_000, "frontier", UNSURE,
     Budget(max_cost=0.02), Route.RAG, "complex-fits-window", ["budget $0.02 < lc estimate", "lc excluded"]),
]


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_rule_table(case):
    _, question, tokens, size, probe, budget, route, code, words = case
    f, profile = features(question, tokens, size, probe=probe, budget=budget)
    d = RulesRouter().route(f, profile, budget)
    assert d.route == route, d.reasons
    assert d.reasons[0].startswith(code + ":"), d.reasons
    text = " | ".join(d.reasons)
    for w in words:
        assert w in text, (w, text)
    assert d.policy == "rules"
    assert {e.route for e in d.estimates} == set(Route)
    assert d.features["total_tokens"] == float(f.total_tokens)
    assert d.route not in d.fallbacks


def test_every_rule_in_the_table_is_covered():
    from ctxroute.router.rules import DEFAULT_RULE_LIST

    covered = {c[7] for c in CASES}
    assert {r.name for r in DEFAULT_RULE_LIST} <= covered


def test_lc_infeasible_reason_names_sizes():
    f, profile = features("Compare the two methods.", 41_000, "large")
    d = RulesRouter().route(f, profile)
    lc = next(e for e in d.estimates if e.route is Route.LC)
    assert not lc.feasible
    assert lc.why_not == "doc 41k tokens > usable window 32.8k"
    assert Route.LC not in d.fallbacks and d.route is not Route.LC


def test_fallbacks_prefer_lc_when_it_fits():
    f, profile = features("Who signed the lease on behalf of the tenant?", 30_000, "frontier", probe=CONFIDENT)
    d = RulesRouter().route(f, profile)
    assert d.route is Route.RAG and d.fallbacks[0] is Route.LC


def test_nothing_fits_the_budget_raises():
    f, profile = features("Who signed the lease?", 100_000, "small", budget=Budget(max_tokens=500))
    with pytest.raises(BudgetExceeded, match=r"cheapest is rag at 3,\d{3} tokens"):
        RulesRouter().route(f, profile, Budget(max_tokens=500))


def test_custom_thresholds_table():
    from ctxroute.router import RuleTable, Thresholds
    from ctxroute.router.features import ProbeSignals

    peaked = ProbeSignals(top_score=0.7, margin=0.02, entropy=0.3, n_docs_in_top=1, n_sections_in_top=2,
                          spread=0.1, n_hits=10, source="dense")
    f, profile = features("Who signed the lease?", 30_000, "frontier", probe=peaked)
    assert RulesRouter().route(f, profile).reasons[0].startswith("default")
    table = RuleTable(thresholds=Thresholds(confident_entropy=0.5))
    assert RulesRouter(table).route(f, profile).reasons[0].startswith("confident-lookup")


def test_bm25_probe_needs_a_wider_margin():
    from ctxroute.router.features import ProbeSignals

    def probe(margin: float) -> ProbeSignals:
        return ProbeSignals(top_score=9.0, margin=margin, entropy=0.9, n_docs_in_top=1, n_sections_in_top=5,
                            spread=0.3, n_hits=10, source="bm25")

    f, profile = features("Who signed the lease?", 30_000, "frontier", probe=probe(0.15))
    assert RulesRouter().route(f, profile).reasons[0].startswith("default")  # 0.15 < 0.25: not confident
    f, profile = features("Who signed the lease?", 30_000, "frontier", probe=probe(0.31))
    d = RulesRouter().route(f, profile)
    assert d.route is Route.RAG and "margin 0.31 >= 0.25" in d.reasons[0]


def test_weak_probe_only_flags_lookups():
    f, profile = features("How do papers 0 and 1 differ in their use of LSTMs?", 20_000, "frontier", probe=EMPTY)
    d = RulesRouter().route(f, profile)
    assert d.route is Route.LC and d.reasons[0].startswith("complex-fits-window")
