"""The compressor's lead prior and quoted terms, and hybrid's fill="compressed" option (strategy,
engine dispatch, estimates and the rules' reasons). Scripted LLM, hashing-embedder collection."""
from __future__ import annotations

import re

import pytest

from ctxroute.errors import InputError
from ctxroute.pipelines.compress import CompressConfig, DocSentences, select_sentences
from ctxroute.pipelines.compress_score import lead_scores, lexical_scores, quoted_terms
from ctxroute.pipelines.engine import Engine, EngineConfig
from ctxroute.pipelines.hybrid import HybridConfig
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.pipelines.result import Corpus
from ctxroute.router import RulesRouter
from ctxroute.router.answer import content_terms
from ctxroute.router.estimates import EstimateSettings, estimates_for
from ctxroute.types import ModelProfile, Route

from tests.pipelines.test_compress import QUESTION, _answer_from_prompt, coll  # noqa: F401  (fixture)
from tests.router.helpers import UNSURE, features


def test_quoted_terms_and_their_boost():
    q = 'Highlight the parts related to "Expiration Date" that a lawyer should review.'
    assert quoted_terms(q) == content_terms("Expiration Date") == {"expir", "date"}
    texts = ["The expiration date is 1 May.", "A lawyer should review the parts.", "Nothing."]
    plain = lexical_scores(q, texts)
    boosted = lexical_scores(q, texts, quote_boost=3.0)
    # the quoted phrase's sentence gains on the boilerplate's, the unrelated one stays 0
    assert boosted[0] / max(boosted[1], 1e-9) > plain[0] / max(plain[1], 1e-9)
    assert boosted[2] == plain[2] == 0.0
    assert quoted_terms("curly \u201cRenewal Term\u201d quotes") == {"renew", "term"}
    assert not quoted_terms("no quotes at all")


def test_lead_scores_fall_linearly_over_the_opening():
    s = lead_scores([100, 100, 100, 100], 250)
    assert s.tolist() == pytest.approx([1.0, 0.6, 0.2, 0.0])
    assert not lead_scores([10, 10], 0).any() and lead_scores([], 300).size == 0


def test_lead_prior_keeps_a_documents_opening(coll):  # noqa: F811
    corpus = Corpus(coll)
    d = corpus.doc_ids()[0]
    docs = [DocSentences(corpus.document(d), corpus.sentences(d))]
    q = "What was the operating margin of the Northern division?"
    with_lead = select_sentences(q, docs, [], CompressConfig(ratio=0.1, w_lead=2.0, lead_tokens=30))
    without = select_sentences(q, docs, [], CompressConfig(ratio=0.1, w_lead=0.0))
    # sentences 0 and 1 are headings (kept either way: cheap, and they spare a marker); 2 and 3 are
    # the opening's plain sentences, which match nothing in the question: only the prior keeps them
    assert {0, 1, 2, 3} <= set(with_lead.kept[d]) and not {2, 3} & set(without.kept[d])
    assert with_lead.scores[d][0] >= 2.0 > without.scores[d][0]  # the first sentence carries the whole prior
    with pytest.raises(InputError):
        CompressConfig(w_lead=-1.0)


def test_hybrid_fill_must_be_known():
    with pytest.raises(InputError, match="hybrid fill"):
        HybridConfig(fill="sentences")


def _prompt(llm: ScriptedLLM) -> str:
    return "\n".join(m.content for m in llm.requests[0].messages)


def test_engine_hybrid_compressed_fill_fills_the_room_and_cites(coll):  # noqa: F811
    profile = ModelProfile(name="win", context_window=4096, usable_window=1500, size_class="large")
    llm = ScriptedLLM(rules=[(r"omitted", _answer_from_prompt)], default="NOT_FOUND: no rule matched", profile=profile)
    engine = Engine({"demo": coll}, llm, config=EngineConfig(hybrid=HybridConfig(fill="compressed")))
    ans = engine.answer_sync(QUESTION, "demo", route="hybrid")
    assert ans.route_taken is Route.HYBRID
    assert len(ans.citations) == 2, (ans.text, ans.warnings)
    for c in ans.citations:
        assert c.quote == coll.document(c.doc_id).text[c.start:c.end]
    prompt = _prompt(llm)
    assert re.search(r"\[\.\.\. \d+ sentences? omitted \.\.\.\]", prompt)
    assert all(u.prompt_tokens + 300 <= 1500 for u in ans.usage)
    # the passages fill packs whole passages: no omission markers, different context
    llm2 = ScriptedLLM(default="NOT_FOUND: not in the passages", profile=profile)
    Engine({"demo": coll}, llm2).answer_sync(QUESTION, "demo", route="hybrid")
    assert "omitted" not in _prompt(llm2)
    # the forced route's estimates carry the setting: hybrid's context is the room, not more
    hyb = {e.route: e for e in ans.decision.estimates}[Route.HYBRID]
    assert hyb.prompt_tokens <= 1500


def test_estimates_and_rules_reasons_follow_hybrid_fill():
    f, profile = features("Compare the two methods in paper 0.", 400_000, "frontier", probe=UNSURE)
    passages = {e.route: e for e in estimates_for(f, profile, EstimateSettings())}[Route.HYBRID]
    comp = {e.route: e for e in estimates_for(f, profile, EstimateSettings(hybrid_fill="compressed"))}[Route.HYBRID]
    assert comp.prompt_tokens == passages.prompt_tokens and comp.feasible  # both fill the same room
    small, sp = features("Compare the two methods in paper 0.", 1_000, "frontier", probe=UNSURE)
    tiny = {e.route: e for e in estimates_for(small, sp, EstimateSettings(hybrid_fill="compressed"))}[Route.HYBRID]
    assert tiny.prompt_tokens == 1_000 + small.question_tokens + 200  # never more than the text itself
    d = RulesRouter(settings=EstimateSettings(hybrid_fill="compressed")).route(f, profile)
    assert d.route is Route.HYBRID and d.reasons[0].startswith("beyond-window:")
    assert "hybrid fills the usable window" in d.reason and "compressed text" in d.reason
    d0 = RulesRouter().route(f, profile)
    assert "hybrid packs retrieved passages" in d0.reason and "compressed text" not in d0.reason


def test_seed_keeps_the_top_passages_whole(coll):  # noqa: F811
    corpus = Corpus(coll)
    hits = coll.search(QUESTION, 10, retriever="hybrid")
    docs = [DocSentences(corpus.document(d), corpus.sentences(d)) for d in corpus.doc_ids()]
    seeded = select_sentences(QUESTION, docs, hits, CompressConfig(ratio=0.2, seed_share=0.5))
    plain = select_sentences(QUESTION, docs, hits, CompressConfig(ratio=0.2, seed_share=0.0))
    top = hits[0].chunk
    top_sents = [i for i, s in enumerate(corpus.sentences(top.doc_id)) if s.start >= top.start and s.end <= top.end]
    assert top_sents and set(top_sents) <= set(seeded.kept[top.doc_id])
    assert seeded.kept_tokens <= seeded.budget and seeded.kept != plain.kept
    with pytest.raises(InputError):
        CompressConfig(seed_share=1.5)
