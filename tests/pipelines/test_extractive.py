from __future__ import annotations

import numpy as np

from ctxroute.pipelines.extractive import ExtractiveConfig, ExtractiveReader
from ctxroute.pipelines.result import Corpus
from ctxroute.types import Route
from tests.pipelines.test_strategies import collection, store  # noqa: F401  (fixtures)


def test_best_sentence_is_quoted_with_its_span(collection) -> None:  # noqa: F811
    result = ExtractiveReader().run("Who was appointed chief executive of the Eastern division?", collection)
    assert result.route == Route.EXTRACTIVE and not result.abstained and result.usage == ()
    assert result.citations[0].quote == (
        "The board appointed Maria Keller as chief executive of the Eastern division in March.")
    for c in result.citations:
        assert collection.document(c.doc_id).text[c.start:c.end] == c.quote
        assert 0 < c.supports <= 1
    assert result.text.endswith("[1]") or "[1]" in result.text


def test_scores_rank_matching_sentence_first_and_skip_headings(collection) -> None:  # noqa: F811
    reader = ExtractiveReader()
    corpus = Corpus(collection)
    hits = collection.search("rainfall coastal station", 5)
    ranked = reader.score("How much rainfall fell at the coastal station?", corpus, hits)
    texts = [r.sentence.text_of(corpus.document(r.sentence.doc_id)) for r in ranked]
    assert texts[0] == "Rainfall reached 812 millimetres at the coastal station."
    assert not any(t.lstrip().startswith("#") for t in texts)
    assert all(a.score >= b.score for a, b in zip(ranked, ranked[1:]))


def test_abstains_when_nothing_matches(collection) -> None:  # noqa: F811
    result = ExtractiveReader(ExtractiveConfig(min_score=0.6)).run("quantum chromodynamics of gluons", collection)
    assert result.abstained and "min_score" in result.abstain_reason and result.citations == ()


def test_empty_hits_abstain(collection) -> None:  # noqa: F811
    result = ExtractiveReader().run("anything at all", collection, hits=[])
    assert result.abstained


class _Const:
    name, dim = "const", 2

    def embed(self, texts):
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(texts), 1))


def test_lexical_only_when_weight_is_one(collection) -> None:  # noqa: F811
    reader = ExtractiveReader(ExtractiveConfig(lexical_weight=1.0), embedder=_Const())
    result = reader.run("operating margin Northern division", collection)
    assert result.citations[0].quote.startswith("The Northern division reported an operating margin")


# --- answering what is asked ---------------------------------------------------------
def _filing(tmp_path):
    from ctxroute.retrievers import CollectionStore, HashingEmbedder
    from ctxroute.retrievers.documents import document_from_text

    text = (
        "# Results of Operations\n\n"
        "Gross margin discussion: the gross margin of the company was affected by currency and mix this quarter.\n"
        "Gross margin discussion: the gross margin of the company was affected by currency and mix this quarter.\n"
        "I, the officer, certify this quarterly report on gross margin under 18 U.S.C. Section 1350 and Section 906.\n\n"
        "## Gross Margin\n\n"
        "Three Months Ended\n2023 2022\n"
        "Total gross margin $ 36,413 $ 35,885\n"
        "Total net sales $ 81,797 $ 82,959\n\n"
        "## Events\n\nThe merger closed on March 3, 2023 after the regulators agreed to the terms of the merger.\n"
        "The merger was approved by the board of the company after long talks about the merger terms.\n"
    )
    coll = CollectionStore(tmp_path / "c").create("f", embedder=HashingEmbedder())
    coll.add_documents([document_from_text(text, title="Acme 10-Q", format="md")])
    return coll


def test_how_much_prefers_an_amount_and_a_table_row_over_boilerplate(tmp_path) -> None:
    coll = _filing(tmp_path)
    corpus = Corpus(coll)
    ranked = ExtractiveReader().score("What was the gross margin in the quarter?", corpus, coll.search("gross margin", 10))
    texts = [r.sentence.text_of(corpus.document(r.sentence.doc_id)) for r in ranked]
    assert texts[0] == "Total gross margin $ 36,413 $ 35,885"
    # the repeated line is one candidate, not two
    assert sum(t.startswith("Gross margin discussion") for t in texts) == 1


def test_when_prefers_a_sentence_with_a_date(tmp_path) -> None:
    coll = _filing(tmp_path)
    corpus = Corpus(coll)
    ranked = ExtractiveReader().score("When did the merger close?", corpus, coll.search("merger", 10))
    assert ranked[0].sentence.text_of(corpus.document(ranked[0].sentence.doc_id)).startswith("The merger closed on March 3")


def test_asked_type() -> None:
    from ctxroute.pipelines.extractive import asked_type, has_type

    assert asked_type("How much did Amazon spend on fulfillment?") == "number"
    assert asked_type("What was Apple's total net sales in the quarter?") == "number"
    assert asked_type("When did the merger close?") == "date"
    assert asked_type("Who is the chief executive?") == ""
    assert has_type("Sales were $1,577 million", "number") and has_type("12.5 %", "number")
    assert has_type("Rainfall reached 812 millimetres at the station.", "number")
    assert not has_type("pursuant to 18 U.S.C. Section 1350", "number")
