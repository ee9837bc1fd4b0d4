from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ctxroute.retrievers.keyterms import extract_keyterms, normalise_term, query_ngrams

TEXT = (
    "The Northern Division reported revenue of $3.2 million in 2019, up 12.5 % from 2018. "
    "Analysts said the Northern Division would lay 40 km of track. The interest rate rose "
    "in spring and the interest rate fell in autumn. The Bank of England met John Smith in London."
)


def test_capitalised_phrases_are_normalised_and_stripped_of_leading_articles() -> None:
    terms = extract_keyterms(TEXT)
    assert "northern division" in terms
    assert "bank of england" in terms
    assert "john smith" in terms
    assert not any(t.startswith("the ") for t in terms)


def test_numbers_with_units_amounts_and_years() -> None:
    terms = extract_keyterms(TEXT)
    for expected in ("$3.2 million", "12.5%", "40 km", "2019", "2018"):
        assert expected in terms


def test_bigrams_need_two_occurrences() -> None:
    terms = extract_keyterms(TEXT)
    assert "interest rate" in terms
    assert "revenue of" not in terms and "lay 40" not in terms
    assert "spring" not in " ".join(terms)


def test_repeated_terms_rank_first_and_max_terms_caps() -> None:
    terms = extract_keyterms(TEXT, max_terms=2)
    assert len(terms) == 2
    assert terms[0] == "northern division"  # a repeated multi-word name outranks the rest
    assert extract_keyterms(TEXT, max_terms=0) == []


def test_sentence_initial_common_words_are_not_names() -> None:
    terms = extract_keyterms("However, prices rose. Yesterday the market fell. Prices matter.")
    assert terms == []


def test_normalise_term_variants_agree() -> None:
    assert normalise_term("12.5 per cent") == normalise_term("12.5%") == "12.5%"
    assert normalise_term("$ 1,200  Million") == "$1200 million"
    assert normalise_term("  Northern\n Division ") == "northern division"


def test_query_ngrams_match_extracted_terms() -> None:
    grams = query_ngrams("what did the northern division earn in 2019 (12.5 percent)?")
    assert {"northern division", "2019", "12.5%"} <= grams
    assert "the northern" not in grams  # n-grams never start or end with a stopword


@settings(max_examples=60, deadline=None)
@given(st.text(max_size=300))
def test_terms_are_normalised_unique_and_bounded(text: str) -> None:
    terms = extract_keyterms(text, max_terms=7)
    assert len(terms) <= 7
    assert len(set(terms)) == len(terms)
    for t in terms:
        assert t == normalise_term(t) and t
