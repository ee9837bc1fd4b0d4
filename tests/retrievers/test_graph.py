from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxroute.errors import ManifestMismatch, NotFound
from ctxroute.retrievers.graph import ARRAYS_FILE, GRAPH_FILE, GraphConfig, GraphIndex, GraphRetriever
from ctxroute.types import Level, ScoredChunk

from tests.retrievers._graph_fixtures import make_doc

DOC_A = make_doc(
    "a",
    [
        ["Alice Cooper met Bob Stone in Paris in 1999.", "The weather was cold and grey.",
         "Later that year Bob Stone moved to Lyon."],
        ["Dogs bark at night near the river.", "Alice Cooper wrote a memoir about Lyon."],
    ],
)
DOC_B = make_doc(
    "b",
    [["Carol Diaz founded Acme Corp in 2004.", "Acme Corp sells tools to Bob Stone."],
     ["Unrelated text about gardening and soil."]],
)


def _index(config: GraphConfig | None = None) -> GraphIndex:
    return GraphIndex.build([DOC_A[0], DOC_B[0]], [DOC_A[1], DOC_B[1]], config=config)


def _snapshot(g: GraphIndex) -> tuple[set, set]:
    return set(g.graph.nodes(data=False)), {(u, v, d["kind"]) for u, v, d in g.graph.edges(data=True)}


def test_structure_nodes_and_edges() -> None:
    g = _index()
    data = g.graph.nodes
    assert data["a:p0"]["kind"] == Level.PASSAGE.value and data["a:p0"]["doc_id"] == "a"
    assert data["a:p3"]["ordinal"] == 3
    assert g.graph.edges["a:s0", "a:p0"]["kind"] == "child"
    assert g.graph.edges["a:d", "a:s1"]["kind"] == "child"
    assert g.graph.edges["a:p0", "a:p1"]["kind"] == "next"
    assert g.graph.edges["a:s0", "a:s1"]["kind"] == "next"
    assert g.graph.edges["a:p0", "term:bob stone"]["kind"] == "term"
    assert "bob stone" in g.terms_of("b:p1")  # terms are shared across documents
    assert g.doc_ids == ["a", "b"]


CHUNKS = {"a": DOC_A[1], "b": DOC_B[1]}


def test_save_load_round_trip_is_arrays_not_objects_per_node(tmp_path: Path) -> None:
    g = _index(GraphConfig(alpha=0.4))
    g.save(tmp_path)
    raw = json.loads((tmp_path / GRAPH_FILE).read_text())
    assert set(raw) == {"format_version", "config", "docs", "terms"}  # no node or edge objects
    assert "bob stone" in raw["terms"]
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted([GRAPH_FILE, ARRAYS_FILE])  # no temp file left
    loaded = GraphIndex.load(tmp_path, CHUNKS)
    assert _snapshot(loaded) == _snapshot(g)
    assert loaded.config == g.config
    assert loaded.doc_ids == g.doc_ids
    seeds = {"a:p0": 1.0}
    assert loaded.personalized_pagerank(seeds, 5) == g.personalized_pagerank(seeds, 5)


def test_load_refuses_other_format_and_missing_file(tmp_path: Path) -> None:
    with pytest.raises(NotFound, match="no graph index"):
        GraphIndex.load(tmp_path, CHUNKS)
    _index().save(tmp_path)
    path = tmp_path / GRAPH_FILE
    raw = json.loads(path.read_text())
    raw["format_version"] = 999
    path.write_text(json.dumps(raw))
    with pytest.raises(ManifestMismatch, match="re-ingest"):
        GraphIndex.load(tmp_path, CHUNKS)
    # a format-1 file (networkx node-link JSON) is refused the same way
    path.write_text(json.dumps({"graph": {"format_version": 1}, "nodes": [], "edges": []}))
    with pytest.raises(ManifestMismatch, match="graph format 1, this code reads 2"):
        GraphIndex.load(tmp_path, CHUNKS)


def test_add_then_remove_leaves_no_dangling_nodes() -> None:
    only_a = GraphIndex.build([DOC_A[0]], [DOC_A[1]])
    both = _index()
    both.remove("b")
    assert _snapshot(both) == _snapshot(only_a)
    assert not [n for n in both.graph if both.graph.degree(n) == 0]
    both.remove("a")
    assert both.graph.number_of_nodes() == 0
    with pytest.raises(NotFound):
        both.remove("a")


def test_re_adding_a_document_replaces_it() -> None:
    g = _index()
    before = _snapshot(g)
    g.add(*DOC_B)
    assert _snapshot(g) == before


def test_neighbours_are_next_and_previous_passages_in_order() -> None:
    g = _index()
    assert g.neighbours("a:p2") == ["a:p1", "a:p3"]
    assert g.neighbours("a:p0", hops=2) == ["a:p1", "a:p2"]
    assert g.neighbours("a:p4", hops=10) == ["a:p0", "a:p1", "a:p2", "a:p3"]
    assert g.neighbours("b:p0") == ["b:p1"]
    with pytest.raises(NotFound):
        g.neighbours("zzz")


def test_pagerank_returns_passages_only_and_favours_shared_terms() -> None:
    g = _index()
    ranked = g.personalized_pagerank({"a:p1": 1.0}, 20)
    ids = [pid for pid, _ in ranked]
    assert all(g.graph.nodes[p]["kind"] == Level.PASSAGE.value for p in ids)
    assert ids[0] == "a:p1"
    # seeded on p0 (Alice Cooper, Bob Stone, Paris): b:p1 shares "bob stone"; b:p2 shares nothing
    scores = dict(g.personalized_pagerank({"a:p0": 1.0}, 20))
    assert scores["b:p1"] > scores.get("b:p2", 0.0)
    assert scores["a:p4"] > scores.get("a:p3", 0.0)  # shares "alice cooper" with the seed
    scores = [s for _, s in ranked]
    assert scores == sorted(scores, reverse=True)


def test_local_pagerank_agrees_with_the_whole_graph_near_the_seeds() -> None:
    whole = _index(GraphConfig(local_hops=0)).personalized_pagerank({"a:p0": 1.0}, 20)
    local = _index(GraphConfig(local_hops=2)).personalized_pagerank({"a:p0": 1.0}, 20)
    assert len(whole) == len(DOC_A[1].passages) + len(DOC_B[1].passages)  # every passage is reachable
    assert {p for p, _ in local} < {p for p, _ in whole}  # the local walk stops 2 hops out
    assert [p for p, _ in local][:3] == [p for p, _ in whole][:3]
    assert sum(s for _, s in whole) <= 1.0 + 1e-5


def test_pagerank_ignores_unknown_seeds() -> None:
    g = _index()
    assert g.personalized_pagerank({"nope": 1.0}, 5) == []
    assert g.personalized_pagerank({"a:p0": 1.0}, 0) == []


def test_hub_terms_are_left_out_of_pagerank() -> None:
    paras = [f"Omega Holdings filed report number {i} about widget {i}." for i in range(30)]
    doc, chunks = make_doc("h", [paras])
    g = GraphIndex.build([doc], [chunks], config=GraphConfig(max_df_fraction=0.1, min_df_cap=2))
    assert "omega holdings" in g.terms_of("h:p0")  # kept in the graph ...
    assert g.query_term_nodes("omega holdings") == []  # ... but not a PageRank bridge


class _Fixed:
    def __init__(self, name: str, hits: list[ScoredChunk]) -> None:
        self.name = name
        self.hits = hits
        self.calls = 0

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]:
        self.calls += 1
        return self.hits[:k]


def test_graph_retriever_seeds_from_seeders_and_query_terms() -> None:
    g = _index(GraphConfig(query_term_share=0.3))
    assert g.query_term_nodes("Where did BOB STONE move?") == ["term:bob stone"]
    by_id = {p.id: p for _, c in (DOC_A, DOC_B) for p in c.passages}
    sparse = _Fixed("bm25", [ScoredChunk(by_id["a:p2"], 3.0, "bm25")])
    dense = _Fixed("dense", [ScoredChunk(by_id["a:p2"], 0.9, "dense"), ScoredChunk(by_id["b:p2"], 0.1, "dense")])
    r = GraphRetriever(g, by_id, [sparse, dense], seed_k=5)
    hits = r.retrieve("where did bob stone move", k=4)
    assert hits[0].chunk.id == "a:p2"
    assert all(h.retriever == "graph" and h.chunk.level == Level.PASSAGE for h in hits)
    assert [h.ranks["graph"] for h in hits] == list(range(1, len(hits) + 1))
    assert sparse.calls == dense.calls == 1
    reranked = r.rerank("bob stone", [ScoredChunk(by_id["b:p0"], 1.0, "bm25")], k=3)
    assert reranked[0].chunk.id == "b:p0"
    assert "b:p1" in [h.chunk.id for h in reranked]  # shares "acme corp" with the seed


def test_build_on_real_chunker_output(tmp_path: Path) -> None:
    from ctxroute.retrievers.chunking import ChunkingConfig, chunk_document
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.synthetic import generate_corpus

    report = generate_corpus(seed=3, n_docs=1, n_words=3000)[0]
    doc = document_from_text(report.text, title=report.title, doc_id="r0", format="md")
    chunks = chunk_document(doc, ChunkingConfig(passage_tokens=128))
    g = GraphIndex.build([doc], [chunks])
    assert set(g.passage_ids()) == {p.id for p in chunks.passages}
    assert all(g.graph.nodes[s.id]["kind"] == Level.SECTION.value for s in chunks.sections)
    first, second = sorted(chunks.passages, key=lambda p: p.start)[:2]
    assert g.neighbours(first.id) == [second.id]
    company = " ".join(report.title.lower().split()[:2])
    assert any(company in t for p in chunks.passages for t in g.terms_of(p.id))
    g.save(tmp_path)
    assert _snapshot(GraphIndex.load(tmp_path, {"r0": chunks})) == _snapshot(g)
