from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxroute.errors import InputError
from ctxroute.retrievers.tokens import TokenCounter, get_counter


def test_known_cl100k_ids() -> None:
    # reference ids from OpenAI's tiktoken for cl100k_base
    assert TokenCounter().encode("hello world") == [15339, 1917]
    assert TokenCounter().count("hello world") == 2


def test_empty_text_counts_zero() -> None:
    assert get_counter().count("") == 0


def test_special_token_text_is_ordinary() -> None:
    counter = get_counter()
    assert counter.count("<|endoftext|>") > 1


def test_get_counter_is_cached_per_encoding() -> None:
    assert get_counter("cl100k_base") is get_counter("cl100k_base")
    assert get_counter("o200k_base").encoding == "o200k_base"


def test_unknown_encoding_names_the_choices() -> None:
    with pytest.raises(InputError, match="cl100k_base"):
        TokenCounter("p50k_nope")


@settings(max_examples=50, deadline=None)
@given(st.text(max_size=200))
def test_round_trip(text: str) -> None:
    counter = get_counter()
    ids = counter.encode(text)
    assert counter.count(text) == len(ids)
    assert counter.decode(ids) == text
