from __future__ import annotations

import random

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxroute.pipelines.citations import (
    CitationConfig,
    abstention,
    lexical_support,
    parse_markers,
    strip_markers,
    verify_citations,
)
from ctxroute.pipelines.packing import pack_evidence
from tests.pipelines.test_packing import make_doc, words

TEXT = (
    "The Northern division reported an operating margin of 12.4% in 2031. "
    "Revenue of the Southern division fell to 40 million dollars. "
    "The board appointed Maria Keller as chief executive in March. "
    "Weather in the region was mild throughout the year."
)


def packed():
    doc, sents, passages = make_doc(TEXT, per_passage=4)
    return doc, pack_evidence(passages, documents={doc.id: doc}, sentences_by_doc={doc.id: sents},
                              count_tokens=words, token_budget=1000)


def test_parse_marker_forms() -> None:
    text = "A [S12]. B [S3, S7]. C [S3][S4]. D [s5 ; S6]. E [S8-S10]. F [S1 and S2]."
    ids = [m.ids for m in parse_markers(text)]
    assert ids == [("S12",), ("S3", "S7"), ("S3",), ("S4",), ("S5", "S6"), ("S8", "S9", "S10"), ("S1", "S2")]
    assert strip_markers("Margin was 12.4% [S1].") == "Margin was 12.4%."


def test_supported_citation_kept_with_exact_quote_and_renumbered() -> None:
    doc, p = packed()
    v = verify_citations("The Northern margin was 12.4% in 2031 [S1]. Maria Keller became CEO [S3].", p.sentence_map)
    assert [c.sentence_id for c in v.citations] == ["S1", "S3"]
    assert v.text == "The Northern margin was 12.4% in 2031 [1]. Maria Keller became CEO [2]."
    for c in v.citations:
        assert c.quote == doc.text[c.start:c.end]
        assert c.doc_id == doc.id and c.title == "Doc" and c.supports >= 0.35
    assert v.warnings == () and v.n_removed == 0 and v.n_cited == 2


def test_hallucinated_id_removed_with_warning() -> None:
    _, p = packed()
    v = verify_citations("The Northern margin was 12.4% [S1, S99].", p.sentence_map)
    assert [c.sentence_id for c in v.citations] == ["S1"]
    assert v.n_removed == 1
    assert any("S99" in w and "hallucinated" in w for w in v.warnings)
    assert "S99" not in v.text


def test_unsupported_citation_removed_and_reported() -> None:
    _, p = packed()
    v = verify_citations("The Northern margin was 12.4% in 2031 [S4].", p.sentence_map)
    assert v.citations == ()
    assert v.text == "The Northern margin was 12.4% in 2031."
    assert len(v.warnings) == 1 and "S4" in v.warnings[0] and "min_support" in v.warnings[0]


def test_threshold_is_configurable() -> None:
    _, p = packed()
    claim = "Maria Keller led the Northern expansion [S3]."
    assert verify_citations(claim, p.sentence_map, config=CitationConfig(min_support=0.3)).citations
    assert not verify_citations(claim, p.sentence_map, config=CitationConfig(min_support=0.9)).citations


def test_short_claim_checked_with_question() -> None:
    _, p = packed()
    q = "Who was appointed chief executive by the board?"
    assert verify_citations("Maria Keller [S3].", p.sentence_map, question=q).citations
    assert not verify_citations("Maria Keller [S4].", p.sentence_map, question=q).citations
    yes_no = "Did the Northern division report an operating margin of 12.4% in 2031?"
    assert verify_citations("Yes [S1].", p.sentence_map, question=yes_no).citations
    assert not verify_citations("Yes [S3].", p.sentence_map, question=yes_no).citations


def test_marker_on_its_own_line_supports_previous_sentence() -> None:
    _, p = packed()
    v = verify_citations("Southern revenue fell to 40 million dollars.\n[S2]", p.sentence_map)
    assert [c.sentence_id for c in v.citations] == ["S2"]


class _ToyEmbedder:
    name, dim = "toy", 2

    def embed(self, texts):
        # paraphrase-aware toy: everything about weather points one way
        return np.array([[1.0, 0.0] if ("climate" in t or "Weather" in t) else [0.0, 1.0] for t in texts],
                        dtype=np.float32)


def test_embedding_support_rescues_paraphrase() -> None:
    _, p = packed()
    text = "The climate in the region stayed gentle [S4]."
    assert verify_citations(text, p.sentence_map).citations == ()
    assert verify_citations(text, p.sentence_map, embedder=_ToyEmbedder()).citations[0].sentence_id == "S4"


class _AllSame:
    name, dim = "same", 2

    def embed(self, texts):
        return np.tile(np.array([[1.0, 0.0]], dtype=np.float32), (len(texts), 1))


def test_similarity_cannot_vouch_for_new_numbers_or_names() -> None:
    _, p = packed()
    q = "What was the operating margin of the Northern division?"
    same = _AllSame()  # cosine 1 for everything: only the gates can reject
    wrong_number = verify_citations("The Northern division's operating margin was 21.1% [S1].", p.sentence_map,
                                    embedder=same, question=q)
    assert wrong_number.citations == () and "S1" in wrong_number.warnings[0]
    right = verify_citations("The Northern division's operating margin was 12.4% [S1].", p.sentence_map,
                             embedder=same, question=q)
    assert [c.sentence_id for c in right.citations] == ["S1"]
    q2 = "Who was appointed chief executive by the board?"
    wrong_name = verify_citations("The board appointed Dmitri Halvorsen as chief executive [S3].", p.sentence_map,
                                  embedder=same, question=q2)
    assert wrong_name.citations == ()


def test_abstention_forms() -> None:
    assert abstention("NOT_FOUND: the report has no 2040 figures") == (True, "the report has no 2040 figures")
    assert abstention("  NO_INFORMATION") == (True, "the documents do not contain the answer")
    assert abstention("")[0] is True
    assert abstention("Margin was 12% [S1]") == (False, "")


def test_lexical_support_bounds() -> None:
    assert lexical_support("", "anything") == 0.0
    assert lexical_support("margin 12.4", "The margin was 12.4%.") == 1.0


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.integers(1, 8), st.sampled_from(["Northern margin 12.4", "Keller executive", "x"])),
                max_size=6), st.integers(0, 1000))
def test_every_returned_citation_quotes_its_source(parts, seed) -> None:
    doc, p = packed()
    rng = random.Random(seed)
    answer = " ".join(f"{claim} [S{i}{', S' + str(rng.randint(1, 9)) if rng.random() < 0.3 else ''}]." for i, claim in parts)
    v = verify_citations(answer, p.sentence_map, config=CitationConfig(min_support=rng.random()))
    for c in v.citations:
        assert c.quote == doc.text[c.start:c.end]
    assert len(v.warnings) == v.n_removed <= v.n_cited  # every removal is reported
    assert "[S" not in v.text


def test_attribution_is_opt_in_labelled_and_exact() -> None:
    doc, p = packed()
    text = "The Northern division had an operating margin of 12.4% in 2031. Bananas are yellow."
    assert verify_citations(text, p.sentence_map).citations == ()
    v = verify_citations(text, p.sentence_map, config=CitationConfig(attribute_uncited=True))
    assert [(c.sentence_id, c.origin) for c in v.citations] == [("S1", "attributed")]
    assert v.citations[0].quote == doc.text[v.citations[0].start:v.citations[0].end]
    assert v.text == "The Northern division had an operating margin of 12.4% in 2031 [1]. Bananas are yellow."
    assert v.warnings and "attributed" in v.warnings[0]
    # a model that cites gets no attribution, and an abstention gets none either
    assert all(c.origin == "model" for c in verify_citations(
        "Margin 12.4% in 2031 [S1].", p.sentence_map, config=CitationConfig(attribute_uncited=True)).citations)
    assert verify_citations("NOT_FOUND: Northern margin 12.4% not given", p.sentence_map,
                            config=CitationConfig(attribute_uncited=True)).citations == ()


def test_claim_about_another_entity_is_not_supported() -> None:
    doc, sents, passages = make_doc("The Fjord division reported an operating margin of 6.9% for 2029. "
                                    "The Nimbus division reported an operating margin of 12.8% for 2032.")
    p = pack_evidence(passages, documents={doc.id: doc}, sentences_by_doc={doc.id: sents},
                      count_tokens=words, token_budget=1000)
    q = "What was the operating margin of the Nimbus division in 2032?"
    wrong = verify_citations("The operating margin of the Nimbus division in 2032 was 6.9% [S1].", p.sentence_map,
                             question=q)
    assert wrong.citations == () and "S1" in wrong.warnings[0]
    right = verify_citations("The operating margin of the Nimbus division in 2032 was 12.8% [S2].", p.sentence_map,
                             question=q)
    assert [c.sentence_id for c in right.citations] == ["S2"]


def test_attribution_skips_claims_that_only_repeat_the_question() -> None:
    _, p = packed()
    q = "What did the Northern division report?"
    text = "- Northern division\n- Northern division\n- The operating margin was 12.4% in 2031."
    v = verify_citations(text, p.sentence_map, question=q,
                         config=CitationConfig(attribute_uncited=True))
    assert [c.claim for c in v.citations] == ["- The operating margin was 12.4% in 2031."]
    many = " ".join(f"Margin {i} was 12.4% in 2031 for the Northern division." for i in range(9))
    capped = verify_citations(many, p.sentence_map, config=CitationConfig(attribute_uncited=True, max_attributions=3))
    assert len(capped.citations) <= 3


@pytest.mark.parametrize("garbage", ["[S]] [S1,,] ]] [[S", "[S1-S999999]", "[S0]", "\x00\ufffd [S-3]", "[S2" * 50])
def test_malformed_model_output_never_crashes(garbage: str) -> None:
    _, p = packed()
    v = verify_citations(garbage, p.sentence_map, question="margin?")
    assert len(v.warnings) == v.n_removed
    for c in v.citations:
        assert c.sentence_id in p.sentence_map
