"""The router's map-reduce estimate against the calls the strategy really makes.

The strategy runs with the scripted LLM over a multi-document collection chunked by the real
chunker; its map workers reply with notes of realistic size (two facts citing sentences of
their part, a rationale, a partial answer). The estimate sees only what the router sees: the
collection's sizes and the question.
"""
from __future__ import annotations

import asyncio
import json
import re

import pytest

from ctxroute.pipelines.llm.base import LLMRequest
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.pipelines.map_reduce import MapReduce, MapReduceConfig, group_passages
from ctxroute.pipelines.result import Corpus
from ctxroute.retrievers.chunking import chunk_document
from ctxroute.retrievers.documents import document_from_text
from ctxroute.router import CollectionStats, QuestionTyper, build_features, estimate_routes
from ctxroute.router.estimates import greedy_groups, map_group_tokens, plan_map_reduce
from ctxroute.synthetic import generate_corpus
from ctxroute.types import ModelProfile, Route

QUESTION = "How did revenue change across all divisions from 2030 to 2031?"


class MemoryCollection:
    """The parts of a Collection the strategy and the router read, chunked by the real chunker."""

    name = "memory"

    def __init__(self, n_docs: int, n_words: int) -> None:
        docs = [document_from_text(d.text, title=d.title, format="md")
                for d in generate_corpus(seed=3, n_docs=n_docs, n_words=n_words)]
        self._docs = {d.id: d for d in docs}
        self._chunks = {d.id: chunk_document(d) for d in docs}

    def documents(self):  # type: ignore[no-untyped-def]
        return list(self._docs.values())

    def document(self, doc_id: str):  # type: ignore[no-untyped-def]
        return self._docs[doc_id]

    def chunks(self, doc_id: str):  # type: ignore[no-untyped-def]
        return self._chunks[doc_id]

    def search(self, query: str, k: int = 10, retriever: str = "hybrid") -> list:
        return []

    def stats(self) -> CollectionStats:  # as Collection.stats: each document's n_tokens
        doc_tokens = tuple(int(c.document.n_tokens) for c in self._chunks.values())
        return CollectionStats(len(doc_tokens), sum(doc_tokens), doc_tokens,
                               sum(len(c.passages) for c in self._chunks.values()))


def _reply(request: LLMRequest) -> str:
    ids = re.findall(r"\[(S\d+)\]", request.messages[-1].content)
    if request.stage.startswith(("mr.map", "mr.collapse")):
        a, b = (ids[3], ids[7]) if len(ids) > 7 else (ids[0], ids[0])
        return json.dumps({
            "facts": [
                {"text": "Revenue of the division grew by four percent on the previous year, on higher volumes",
                 "sentences": [a]},
                {"text": "The operating margin improved slightly as input costs fell in the second half",
                 "sentences": [b]},
            ],
            "rationale": "This part reports the revenue change and the margin for the year in question.",
            "answer": "Revenue grew about 4% year on year.",
            "confidence": 3,
        })
    return f"Revenue grew about 4% [{ids[0]}]."


@pytest.fixture(scope="module")
def collections() -> dict[str, MemoryCollection]:
    return {"4x3000": MemoryCollection(4, 3000), "6x2000": MemoryCollection(6, 2000), "8x4000": MemoryCollection(8, 4000)}


@pytest.mark.parametrize(
    "corpus, usable",
    [("4x3000", 8000), ("6x2000", 4000), ("8x4000", 16000), ("6x2000", 2000), ("8x4000", 4096)],
)
def test_estimate_is_within_10_percent_of_the_real_calls_and_prompt_tokens(collections, corpus: str, usable: int) -> None:
    coll = collections[corpus]
    profile = ModelProfile("t", usable * 2, usable, 0.001, 0.002, size_class="small")
    llm = ScriptedLLM(rules=[(".", _reply)], profile=profile)
    result = asyncio.run(MapReduce(llm, MapReduceConfig()).run(QUESTION, coll))
    real_calls = len(result.usage)
    real_prompt = sum(u.prompt_tokens for u in result.usage)
    assert real_calls >= 4 and [u.stage for u in result.usage][-1] == "mr.reduce"

    features = build_features(QUESTION, coll.stats(), profile, question_profile=QuestionTyper().classify(QUESTION),
                              count_tokens=llm.count_tokens)
    est = {e.route: e for e in estimate_routes(features, profile)}[Route.MR]
    assert est.feasible
    assert abs(est.calls - real_calls) <= 0.1 * real_calls, (est.calls, real_calls)
    assert abs(est.prompt_tokens - real_prompt) <= 0.1 * real_prompt, (est.prompt_tokens, real_prompt)


def test_strategy_and_estimate_share_the_grouping(collections) -> None:
    coll = collections["8x4000"]
    profile = ModelProfile("t", 8192, 4096, size_class="small")
    llm = ScriptedLLM(profile=profile)
    mr = MapReduce(llm)
    gtok = mr._group_tokens(QUESTION)
    q = llm.count_tokens(QUESTION)
    # the strategy's group size is the shared function's (its overhead counts its real system prompt)
    assert abs(gtok - map_group_tokens(4096, 170 + 2 * q + 120, 300)) <= 20
    groups = group_passages(Corpus(coll), llm.count_tokens, gtok)
    assert sum(len(g) for g in groups) == coll.stats().n_passages  # every passage once, in order
    plan = plan_map_reduce(coll.stats().doc_tokens, q, 4096,
                           passage_tokens=round(coll.stats().total_tokens / coll.stats().n_passages))
    assert abs(plan.groups - len(groups)) <= max(1, 0.1 * len(groups))


def test_greedy_groups() -> None:
    assert greedy_groups([], 10) == []
    assert greedy_groups([4, 4, 4, 4], 8) == [2, 2]
    assert greedy_groups([4, 5, 20, 1], 8) == [1, 1, 1, 1]  # an oversized unit gets its own group
    assert greedy_groups([0, 3, 3, 3], 6) == [3, 1]
    assert sum(greedy_groups([7] * 50, 20)) == 50
