"""The query-aware compressor and the compressed-lc route (scripted LLM, hashing-embedder collection)."""
from __future__ import annotations

import re
from pathlib import Path

import pytest

from ctxroute.errors import InputError
from ctxroute.pipelines.compress import CompressConfig, DocSentences, compress, select_sentences
from ctxroute.pipelines.engine import Engine
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.pipelines.result import Corpus
from ctxroute.retrievers.collection import CollectionStore
from ctxroute.retrievers.documents import document_from_text
from ctxroute.retrievers.embedders import HashingEmbedder
from ctxroute.types import ModelProfile, Route

from tests.pipelines.test_strategies import SECOND, report_text

TABLE_DOC = (
    "# Price list\n\n## Fees\n\nThe fees below apply from March.\n\n"
    "| service | fee |\n|---|---|\n| water delivery | 30 dollars. Billed monthly. |\n| power supply | 50 dollars |\n\n"
    "## Other\n\n" + " ".join(f"Filler sentence number {i} about gardens and walls." for i in range(40)) + "\n"
)


@pytest.fixture
def coll(tmp_path: Path):
    s = CollectionStore(tmp_path / "collections")
    c = s.create("demo", embedder=HashingEmbedder())
    c.add_documents([
        document_from_text(report_text(), title="Lumen Works annual report", format="md"),
        document_from_text(SECOND, title="Field notes", format="md"),
        document_from_text(TABLE_DOC, title="Prices", format="md"),
    ])
    return c


QUESTION = "Compare the operating margin of the Northern division with the revenue of the Southern division."


@pytest.mark.parametrize("ratio", [0.1, 0.2, 0.35, 0.5])
def test_budget_order_markers_and_exact_spans(coll, ratio):
    corpus = Corpus(coll)
    out = compress(QUESTION, corpus, CompressConfig(ratio=ratio))
    sel, packed = out.selection, out.packed
    full = sum(coll.chunks(d).document.n_tokens for d in corpus.doc_ids())
    assert sel.full_tokens == full
    assert sel.budget == int(ratio * full)
    assert 0 < sel.kept_tokens <= sel.budget
    # kept sentences' own tokens + ids + markers never exceed the budget
    kept_cost = sum(coll.chunks(d).sentences[i].n_tokens + 4 for d, idx in sel.kept.items() for i in idx)
    assert kept_cost <= sel.budget
    # document order: ids run in rendering order, spans increase within each document
    refs = list(packed.sentence_map.refs.values())
    assert [r.sid for r in refs] == [f"S{i}" for i in range(1, len(refs) + 1)]
    order = {d: i for i, d in enumerate(corpus.doc_ids())}
    keys = [(order[r.doc_id], r.start) for r in refs]
    assert keys == sorted(keys)
    # omission markers with counts that add up
    omitted = sum(int(n) for n in re.findall(r"\[\.\.\. (\d+) sentences? omitted \.\.\.\]", packed.text))
    kept_docs_sents = sum(len(coll.chunks(d).sentences) for d in sel.kept)
    assert omitted == kept_docs_sents - len(refs) > 0
    # every kept line is the exact source sentence at its span
    for r in refs:
        doc = coll.document(r.doc_id)
        assert doc.text[r.start:r.end] == coll.sentence_at(r.doc_id, r.start).text_of(doc)
        assert f"[{r.sid}] " in packed.text


def test_query_relevant_sentences_kept_and_headings(coll):
    # sentence scores alone (no seed of whole top passages, which may carry unrelated sentences)
    out = compress(QUESTION, Corpus(coll), CompressConfig(ratio=0.2, seed_share=0.0))
    kept_text = [out.packed.sentence_map.text(s) for s in out.packed.sentence_map.refs]
    assert any("operating margin of 12.4%" in t for t in kept_text)
    assert any("fell to 40 million dollars" in t for t in kept_text)
    assert "## Northern division" in kept_text and "## Southern division" in kept_text  # headings of kept sections
    assert not any("Rainfall" in t for t in kept_text)


def test_table_row_kept_whole_with_header(coll):
    out = compress("What is the fee for water delivery billed?", Corpus(coll), CompressConfig(ratio=0.1))
    kept_text = [out.packed.sentence_map.text(s) for s in out.packed.sentence_map.refs]
    assert "| water delivery | 30 dollars." in kept_text
    assert "Billed monthly." in kept_text  # the same table row, a second sentence
    assert "| service | fee |" in kept_text  # the table's first row


def test_absolute_budget_and_bad_config(coll):
    out = compress(QUESTION, Corpus(coll), CompressConfig(ratio=None, max_tokens=120))
    assert out.selection.budget == 120 and out.selection.kept_tokens <= 120
    with pytest.raises(InputError):
        CompressConfig(ratio=0.0)
    with pytest.raises(InputError):
        CompressConfig(ratio=None, max_tokens=None)


def test_select_sentences_without_signal_keeps_the_start(coll):
    corpus = Corpus(coll)
    d = corpus.doc_ids()[1]
    docs = [DocSentences(corpus.document(d), corpus.sentences(d))]
    sel = select_sentences("zzz qqq", docs, [], CompressConfig(ratio=0.5))
    assert sel.kept[d][0] == 0


def _answer_from_prompt(request) -> str:  # type: ignore[no-untyped-def]
    prompt = "\n".join(m.content for m in request.messages)
    margin = re.search(r"\[(S\d+)\] [^\n]*operating margin of 12\.4%", prompt)
    revenue = re.search(r"\[(S\d+)\] [^\n]*fell to 40 million dollars", prompt)
    assert margin and revenue, prompt[:500]
    return (f"The Northern division reported an operating margin of 12.4% in 2031 [{margin.group(1)}]. "
            f"Revenue of the Southern division fell to 40 million dollars in 2031 [{revenue.group(1)}].")


def test_engine_compressed_route_citations_verify(coll):
    llm = ScriptedLLM(rules=[(r"omitted", _answer_from_prompt)], default="NOT_FOUND: no rule matched")
    engine = Engine({"demo": coll}, llm)
    ans = engine.answer_sync(QUESTION, "demo", route="compressed-lc")
    assert ans.route_taken is Route.COMPRESSED
    assert len(ans.citations) == 2, (ans.text, ans.warnings)
    for c in ans.citations:
        assert c.quote == coll.document(c.doc_id).text[c.start:c.end]
    prompt = "\n".join(m.content for m in llm.requests[0].messages)
    assert "sentences omitted" in prompt
    full = sum(coll.chunks(d).document.n_tokens for d in Corpus(coll).doc_ids())
    assert ans.prompt_tokens < full  # the whole collection would not have been cheaper
    assert {e.route for e in ans.decision.estimates} >= {Route.COMPRESSED}


def test_engine_caps_to_the_window(coll):
    profile = ModelProfile(name="tinywin", context_window=2048, usable_window=1200, size_class="large")
    llm = ScriptedLLM(rules=[(r"omitted", _answer_from_prompt)], profile=profile)
    engine = Engine({"demo": coll}, llm)
    from ctxroute.pipelines.compress import CompressConfig as CC
    from ctxroute.pipelines.compressed_lc import CompressedLCConfig
    from ctxroute.pipelines.engine import EngineConfig

    engine = Engine({"demo": coll}, llm, config=EngineConfig(compressed=CompressedLCConfig(compress=CC(ratio=0.9))))
    ans = engine.answer_sync(QUESTION, "demo", route="compressed-lc")
    assert ans.route_taken is Route.COMPRESSED
    assert any("compressed to fit" in w for w in ans.warnings)
    assert llm.requests and all(u.prompt_tokens + 300 <= 1200 for u in ans.usage)


def test_lexical_scores_match_content_terms():
    from ctxroute.pipelines.compress import lexical_scores
    from ctxroute.router.answer import content_terms

    q = "How many employees did the Northern offices report in 2031, and who runs them?"
    texts = ["The Northern office reported 1,200 employees in 2031.", "Nothing here.", "Offices run by Maria.", ""]
    got = lexical_scores(q, texts)
    qt = content_terms(q)
    assert [bool(v) for v in got] == [bool(content_terms(t) & qt) for t in texts]
    assert got[0] > got[2] > 0 and got[1] == 0 == got[3]


def test_search_k_covers_the_budget(coll):
    from ctxroute.pipelines.compress import search_k

    corpus = Corpus(coll)
    n = sum(len(corpus.passages(d)) for d in corpus.doc_ids())
    full = sum(coll.chunks(d).document.n_tokens for d in corpus.doc_ids())
    assert search_k(CompressConfig(k=1, ratio=0.1), full, corpus) <= search_k(CompressConfig(k=1, ratio=0.5), full, corpus) <= n
    assert search_k(CompressConfig(k=3, ratio=0.01), full, corpus) == 3
