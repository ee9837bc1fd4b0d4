"""The retrieval benchmarks: quality on a slice of the real QA sets (../shared/data; skips
without it) and a small smoke run of the throughput/latency benchmark."""
from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType

import pytest

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"
sys.path.insert(0, str(BENCH_DIR))  # as the benchmark scripts do: one loader, one module per script
from _siblings import sibling  # noqa: E402


def _module(script: str = "retrieval_quality") -> ModuleType:
    return sibling(script)


def test_locator_survives_lost_accents_citations_wrapping_and_elisions() -> None:
    text = (
        "Intro. The ceiling of Malatya Erhaç Airport experienced a partial collapse,[131] as did the "
        "historic Yeni Camii mosque.[132] Filler sentence here. At least 300 buildings were razed in Malatya. "
        "More filler text that is not evidence at all. Later the airport reopened on 12 February."
    )
    loc = _module().EvidenceLocator(text)
    spans = loc.locate("The ceiling of Malatya Erha? Airport experienced a\npartial collapse, as did the historic Yeni Camii mosque.")
    assert len(spans) == 1
    assert text[spans[0][0] : spans[0][1]].startswith("The ceiling") and text[spans[0][0] : spans[0][1]].endswith("mosque")
    elided = loc.locate("At least 300 buildings were razed in Malatya. ......Later the airport reopened on 12 February.")
    assert [text[s:e] for s, e in elided] == [
        "At least 300 buildings were razed in Malatya", "Later the airport reopened on 12 February"
    ]
    assert loc.locate("Something that the text never says anywhere at all.") == []


@pytest.mark.data
def test_hybrid_recall_on_a_slice_of_loogle_and_leval(shared_data: Path) -> None:
    mod = _module()
    results = {r.dataset: r for r in mod.run(shared_data, [1, 10], "hashing", limit_docs=2)}
    assert set(results) == {"loogle", "leval_contracts"}
    for res in results.values():
        assert res.scored_questions >= 10
        assert res.unlocated <= 0.1 * res.evidence
        # floors below what this slice measured with the hashing embedder: a regression net, not outputs
        assert res.recall["hybrid"][10] >= 0.6
        assert res.recall["bm25"][10] >= 0.7
        assert res.recall["hybrid"][10] >= res.recall["hybrid"][1]


@pytest.mark.data
def test_sec_10q_gold_numbers_and_lara_slices(shared_data: Path) -> None:
    data = _module()._data
    if not (shared_data / data.SEC_DIR).is_dir():
        pytest.skip("SEC 10-Q set not found")
    [sec] = data.load_sec(shared_data, limit_docs=1)
    assert sec.dataset == "sec_10q" and sec.items
    for item in sec.items:
        assert item.numbers and not item.evidence
        assert all(n in data.numbers_in(sec.doc.text) or n for n in item.numbers)
    assert data.answer_numbers("Sales were $1,577 million in 2023 (SOURCE: 2023 Q3 AAPL.pdf)") == ["1577"]
    lara = data.load_lara(shared_data, limit_docs=1)
    assert {d.dataset for d in lara} == {"lara_32k_location"}
    for d in lara:
        for item in d.items:
            (s, e), = item.evidence[0]
            assert 0 <= s < e <= len(d.doc.text)


def test_bench_retrieval_smoke_run_reports_every_stage_and_query_kind() -> None:
    mod = _module("bench_retrieval")
    seen: set[str] = set()
    result = mod.run(tokens=4000, queries=12, embedder_kind="hashing", progress=lambda s, d, t: seen.add(s))
    assert result.tokens > 1000 and result.passages > 5
    assert {"chunk", "embed", "sparse", "dense", "graph", "total"} <= set(result.ingest_tokens_per_s)
    assert all(v > 0 for v in result.ingest_tokens_per_s.values())
    assert result.embed_ratio > 0 and result.bm25_speedup_vs_rank_bm25 > 0
    assert {"bm25", "rank_bm25 (reference)", "hybrid (precomputed query vector)"} <= set(result.latency)
    assert all(lat.n >= 1 and lat.p95_ms >= lat.p50_ms for lat in result.latency.values())
    assert {"embed", "raw embed", "queries"} <= seen
    table = mod.markdown(result)
    assert "| hybrid (precomputed query vector) |" in table and "rank_bm25" in table
