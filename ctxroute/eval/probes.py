"""Retrieval stand-ins for replay: BM25 over fixed-size windows of a document.

Recorded answers come without the passages their RAG step saw. Replay needs two things from a
retrieval run: the probe signals the router reads before answering, and the retrieved text the
answer-side signals compare the answer with. Both come from ctxroute's BM25 over windows of
about 600 tokens (LaRA's RAG chunk size), the top 5 standing in for LaRA's 5 x 600-token context.
"""
from __future__ import annotations

from pathlib import Path
from typing import Any, Callable

from ctxroute.router import ProbeSignals, probe_signals
from ctxroute.types import Chunk, Level, ScoredChunk


class WindowIndex:
    """One document cut into character windows of ``width``, indexed with ``SparseIndex``."""

    def __init__(self, text: str, doc_id: str, width: int) -> None:
        from ctxroute.retrievers.sparse import SparseIndex

        self.text = text
        self.doc_id = doc_id
        self.spans = [(s0, min(len(text), s0 + width)) for s0 in range(0, len(text), width)] or [(0, 0)]
        self.chunks = [Chunk(f"{doc_id}#{i}", doc_id, Level.PASSAGE, a, b, None, i) for i, (a, b) in enumerate(self.spans)]
        self.index = SparseIndex().build([text[a:b] for a, b in self.spans])

    def search(self, question: str, k: int = 10, context_k: int = 5) -> tuple[list[ScoredChunk], list[str]]:
        """(top ``k`` hits, texts of the top ``context_k`` windows)."""
        found = self.index.search(question, k)
        hits = [ScoredChunk(self.chunks[i], float(sc), "bm25") for i, sc in found]
        return hits, [self.text[self.spans[i][0]:self.spans[i][1]] for i, _ in found[:context_k]]

    def probe(self, question: str, k: int = 10, context_k: int = 5) -> tuple[ProbeSignals, list[str]]:
        hits, texts = self.search(question, k, context_k)
        return probe_signals(hits, top_n=k, doc_chars={self.doc_id: len(self.text)}), texts


def window_retrieval(text: str, question: str, doc_id: str, *, chunk_tokens: int = 600, k: int = 10, context_k: int = 5) -> tuple[list[ScoredChunk], list[str]]:
    """BM25 over ``chunk_tokens`` windows (4 characters a token) of one inline document: (probe
    hits, top ``context_k`` window texts). For replay records that carry their document's text."""
    return WindowIndex(text, doc_id, max(200, chunk_tokens * 4)).search(question, k, context_k)


def lara_retrieval(
    root: str | Path, *, chunk_tokens: int = 600, k: int = 10, context_k: int = 5, progress: Callable[[int, int], None] | None = None
) -> tuple[dict[str, ProbeSignals], dict[str, list[str]]]:
    """BM25 retrieval for every LaRA question (keyed like outcomes): probe signals and the
    retrieved text. Windows are scaled by each document's characters per cl100k token."""
    from ctxroute.eval.datasets import load_lara
    from ctxroute.retrievers.tokens import get_counter

    ds = load_lara(Path(root), length=None)
    counter = get_counter("cl100k_base")
    by_doc: dict[str, list[Any]] = {}
    for it in ds.items:
        by_doc.setdefault(it.docs[0], []).append(it)
    probes: dict[str, ProbeSignals] = {}
    texts: dict[str, list[str]] = {}
    done = 0
    for dk, items in by_doc.items():
        text = ds.documents[dk].text
        width = max(200, int(len(text) / max(1, counter.count(text)) * chunk_tokens))
        windows = WindowIndex(text, dk, width)
        for it in items:
            probes[it.id], texts[it.id] = windows.probe(it.question, k, context_k)
        done += len(items)
        if progress:
            progress(done, len(ds.items))
    return probes, texts


def lara_probes(root: str | Path, *, chunk_tokens: int = 600, k: int = 10, progress: Callable[[int, int], None] | None = None) -> dict[str, ProbeSignals]:
    """BM25 probe signals for every LaRA question (see :func:`lara_retrieval`)."""
    return lara_retrieval(root, chunk_tokens=chunk_tokens, k=k, progress=progress)[0]


__all__ = ["WindowIndex", "lara_probes", "lara_retrieval", "window_retrieval"]
