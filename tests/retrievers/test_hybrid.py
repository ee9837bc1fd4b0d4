from __future__ import annotations

import pytest

from ctxroute.errors import InputError
from ctxroute.retrievers.graph import GraphIndex, GraphRetriever
from ctxroute.retrievers.hybrid import HybridRetriever, expand_hits, rrf
from ctxroute.types import Chunk, Level, ScoredChunk

from tests.retrievers._graph_fixtures import make_doc


def _c(cid: str, doc: str = "d", start: int = 0, n_tokens: int = 10, parent: str | None = "s0") -> Chunk:
    return Chunk(id=cid, doc_id=doc, level=Level.PASSAGE, start=start, end=start + 10,
                 parent_id=parent, ordinal=start // 10, n_tokens=n_tokens)


def _hits(name: str, ids: list[str], scores: list[float] | None = None) -> list[ScoredChunk]:
    scores = scores or [float(len(ids) - i) for i in range(len(ids))]
    return [ScoredChunk(_c(i), s, name) for i, s in zip(ids, scores)]


def test_rrf_math_on_hand_made_lists() -> None:
    fused = rrf({"bm25": _hits("bm25", ["a", "b", "c"]), "dense": _hits("dense", ["b", "c", "d"])}, rrf_k=60)
    score = {h.chunk.id: h.score for h in fused}
    assert score["b"] == pytest.approx(1 / 62 + 1 / 61)
    assert score["c"] == pytest.approx(1 / 63 + 1 / 62)
    assert score["a"] == pytest.approx(1 / 61)
    assert score["d"] == pytest.approx(1 / 63)
    assert [h.chunk.id for h in fused] == ["b", "c", "a", "d"]
    assert all(h.retriever == "hybrid" for h in fused)


def test_rrf_keeps_per_retriever_ranks_and_scores() -> None:
    fused = rrf({"bm25": _hits("bm25", ["a", "b"], [7.5, 2.0]), "dense": _hits("dense", ["b"], [0.8])})
    b = next(h for h in fused if h.chunk.id == "b")
    assert dict(b.ranks) == {"bm25": 2, "dense": 1}
    assert dict(b.scores) == {"bm25": 2.0, "dense": 0.8}
    a = next(h for h in fused if h.chunk.id == "a")
    assert dict(a.ranks) == {"bm25": 1}


def test_rrf_weights_change_the_order() -> None:
    lists = {"bm25": _hits("bm25", ["a", "b"]), "dense": _hits("dense", ["b", "a"])}
    assert rrf(lists, {"bm25": 2.0})[0].chunk.id == "a"
    assert rrf(lists, {"dense": 2.0})[0].chunk.id == "b"
    zero = rrf(lists, {"dense": 0.0})
    assert zero[0].score == pytest.approx(1 / 61)
    with pytest.raises(InputError, match="weight"):
        rrf(lists, {"bm25": -1.0})
    with pytest.raises(InputError, match="rrf_k"):
        rrf(lists, rrf_k=-1)


def test_rrf_duplicate_in_one_list_keeps_best_rank() -> None:
    fused = rrf({"bm25": _hits("bm25", ["a", "a", "b"])}, rrf_k=0)
    assert {h.chunk.id: h.score for h in fused} == {"a": pytest.approx(1.0), "b": pytest.approx(1 / 3)}


class _Fixed:
    def __init__(self, name: str, hits: list[ScoredChunk]) -> None:
        self.name = name
        self.hits = hits
        self.calls: list[int] = []

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]:
        self.calls.append(k)
        return self.hits[:k]


def test_hybrid_retriever_fuses_and_asks_each_retriever_once() -> None:
    bm25 = _Fixed("bm25", _hits("bm25", ["a", "b", "c"]))
    dense = _Fixed("dense", _hits("dense", ["b", "c", "e"]))
    h = HybridRetriever({"bm25": bm25, "dense": dense}, weights={"dense": 1.0}, per_retriever_k=7)
    hits = h.retrieve("q", k=2)
    assert [x.chunk.id for x in hits] == ["b", "c"]
    assert bm25.calls == [7] and dense.calls == [7]
    assert hits[0].ranks == {"bm25": 2, "dense": 1}
    with pytest.raises(InputError, match="unknown retrievers"):
        HybridRetriever({"bm25": bm25}, weights={"dense": 1.0})


def test_hybrid_hands_first_stage_hits_to_the_graph_reranker() -> None:
    doc, chunks = make_doc(
        "g",
        [["Alice Cooper met Bob Stone in Paris.", "Nothing to see here at all."],
         ["Weather report for the coast.", "Bob Stone later lived in Paris with Alice Cooper."]],
    )
    by_id = {p.id: p for p in chunks.passages}
    bm25 = _Fixed("bm25", [ScoredChunk(by_id["g:p0"], 2.0, "bm25")])
    dense = _Fixed("dense", [ScoredChunk(by_id["g:p0"], 0.9, "dense"), ScoredChunk(by_id["g:p2"], 0.2, "dense")])
    graph = GraphRetriever(GraphIndex.build([doc], [chunks]), by_id, [bm25, dense])
    h = HybridRetriever({"bm25": bm25, "dense": dense, "graph": graph})
    hits = h.retrieve("who met bob stone", k=4)
    assert len(bm25.calls) == 1 and len(dense.calls) == 1  # the graph did not query them again
    assert hits[0].chunk.id == "g:p0"
    linked = next(x for x in hits if x.chunk.id == "g:p3")  # found only through shared terms
    assert set(linked.ranks) == {"graph"}


# --- expansion ---------------------------------------------------------------------------
def _doc_passages() -> tuple[dict[str, list[Chunk]], dict[str, Chunk]]:
    ps = [_c(f"p{i}", start=i * 10, n_tokens=10, parent="s0" if i < 6 else "s1") for i in range(10)]
    other = [_c(f"q{i}", doc="e", start=i * 10, n_tokens=10, parent="t0") for i in range(3)]
    sections = {
        "s0": Chunk("s0", "d", Level.SECTION, 0, 60, "d0", 0),
        "s1": Chunk("s1", "d", Level.SECTION, 60, 100, "d0", 1),
        "t0": Chunk("t0", "e", Level.SECTION, 0, 30, "e0", 0),
    }
    return {"d": ps[::-1], "e": other}, sections  # passages deliberately out of order


def _ids(chunks: list[Chunk]) -> list[str]:
    return [c.id for c in chunks]


def test_expand_returns_document_order_with_neighbours_first() -> None:
    by_doc, sections = _doc_passages()
    hits = [ScoredChunk(by_doc["d"][9 - 7], 1.0, "x"), ScoredChunk(by_doc["e"][1], 0.5, "x"),
            ScoredChunk(by_doc["d"][9 - 2], 0.4, "x")]
    out = expand_hits(hits, passages_by_doc=by_doc, sections_by_id=sections, token_budget=60)
    # hits (30 tokens), then neighbours best hit first: p6, p8, q0, q2 ... until the budget ends
    assert _ids(out) == ["p2", "p6", "p7", "p8", "q0", "q1"]
    assert out == sorted(out, key=lambda c: (c.doc_id, c.start))


def test_expand_respects_the_budget_and_prefers_hits() -> None:
    by_doc, sections = _doc_passages()
    hits = [ScoredChunk(by_doc["d"][9 - 7], 1.0, "x"), ScoredChunk(by_doc["d"][9 - 2], 0.4, "x")]
    for budget in range(0, 120, 7):
        out = expand_hits(hits, passages_by_doc=by_doc, sections_by_id=sections, token_budget=budget)
        assert sum(c.n_tokens for c in out) <= budget
        assert len(set(_ids(out))) == len(out)
    assert _ids(expand_hits(hits, passages_by_doc=by_doc, sections_by_id=sections, token_budget=25)) == ["p2", "p7"]


def test_expand_fills_the_parent_section_nearest_first() -> None:
    by_doc, sections = _doc_passages()
    hits = [ScoredChunk(by_doc["d"][9 - 7], 1.0, "x")]  # p7, section s1 = p6..p9
    out = expand_hits(hits, passages_by_doc=by_doc, sections_by_id=sections, token_budget=40, neighbours=1)
    assert _ids(out) == ["p6", "p7", "p8", "p9"]
    out = expand_hits(hits, passages_by_doc=by_doc, sections_by_id=sections, token_budget=1000, neighbours=0)
    assert _ids(out) == ["p6", "p7", "p8", "p9"]  # the whole section, not the other one


def test_expand_maps_sentence_hits_to_their_passage() -> None:
    by_doc, sections = _doc_passages()
    sentence = Chunk("sent", "d", Level.SENTENCE, 42, 45, "p4", 0, 1)
    out = expand_hits([ScoredChunk(sentence, 1.0, "x")], passages_by_doc=by_doc, sections_by_id=sections,
                      token_budget=10)
    assert _ids(out) == ["p4"]
