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
