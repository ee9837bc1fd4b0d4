"""The retention benchmark's measures (synthetic spans) and `ctxroute bench compress` on two L-Eval
contracts (skipped when ../shared/data is absent)."""
from __future__ import annotations

import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxroute.cli import app
from ctxroute.types import Chunk

ROOT = Path(__file__).resolve().parents[2]
DATA = ROOT.parent / "shared" / "data"
sys.path.insert(0, str(ROOT / "benchmarks"))  # as the benchmark scripts do: one loader, one module per script
from _siblings import sibling  # noqa: E402


def _bench():  # type: ignore[no-untyped-def]
    return sibling("compression_retention")


def _sent(i: int, start: int, end: int) -> Chunk:
    return Chunk(id=f"s{i}", doc_id="d", level="sentence", start=start, end=end, parent_id=None, ordinal=i, n_tokens=10)


def test_char_share_counts_non_space_characters_inside_kept_spans():
    mod = _bench()
    text = "aaaa bbbb cccc"
    assert mod.char_share([(0, 9)], [(0, 4)], text) == pytest.approx(0.5)  # 4 of the 8 letters
    assert mod.char_share([(0, 9)], [(0, 4), (5, 9)], text) == 1.0
    assert mod.char_share([(10, 14)], [(0, 9)], text) == 0.0


def test_rag_keep_takes_ranked_passages_while_they_fit_and_random_keep_respects_the_budget():
    from ctxroute.types import ScoredChunk

    mod = _bench()
    sents = [_sent(i, 10 * i, 10 * i + 9) for i in range(6)]
    p1 = Chunk(id="p1", doc_id="d", level="passage", start=30, end=59, parent_id=None, ordinal=1, n_tokens=30)
    p0 = Chunk(id="p0", doc_id="d", level="passage", start=0, end=29, parent_id=None, ordinal=0, n_tokens=30)
    ranking = [ScoredChunk(p1, 1.0, "bm25"), ScoredChunk(p0, 0.5, "bm25")]
    assert mod.rag_keep(ranking, sents, 45) == [3, 4, 5]  # 3 x (10 + 4) fits, the second passage does not
    assert mod.rag_keep(ranking, sents, 100) == [0, 1, 2, 3, 4, 5]
    kept = mod.random_keep(sents, 30, seed=1)
    assert len(kept) == 2 and len(set(kept)) == 2
    # with a gap between two kept passages, RAG pays for its "[...]" line (3 tokens)
    p2 = Chunk(id="p2", doc_id="d", level="passage", start=0, end=9, parent_id=None, ordinal=2, n_tokens=10)
    gap = [ScoredChunk(p1, 1.0, "bm25"), ScoredChunk(p2, 0.9, "bm25")]
    assert mod.rag_keep(gap, sents, 58) == [3, 4, 5] and mod.rag_keep(gap, sents, 59) == [0, 3, 4, 5]  # 42 + 14 + 3


def test_paired_interval_resamples_documents():
    mod = _bench()
    same = mod.paired_interval([[0.0, 0.0], [0.0]])
    assert same == {"diff": 0.0, "low": 0.0, "high": 0.0, "wins": 0, "losses": 0}
    up = mod.paired_interval([[0.5, 0.0], [1.0], [0.0, 0.25, 0.25]])
    assert up["diff"] == pytest.approx(2.0 / 6) and up["wins"] == 4 and up["losses"] == 0
    assert 0.0 <= up["low"] < up["diff"] < up["high"] <= 1.0
    mixed = mod.paired_interval([[1.0], [-1.0], [0.5], [-0.5]])
    assert mixed["low"] < 0 < mixed["high"] and (mixed["wins"], mixed["losses"]) == (2, 2)
    assert mod.paired_interval([]) == same


@pytest.mark.skipif(not (DATA / "L-Eval").is_dir(), reason="L-Eval not found at ../shared/data (data is never copied into the repo)")
def test_bench_compress_cli_on_two_contracts(tmp_path):
    import json

    out = tmp_path / "r.json"
    res = CliRunner().invoke(app, ["bench", "compress", "--datasets", "leval_contracts", "--limit-docs", "2", "--no-speed",
                                   "--ablation", "--ratios", "0.2,0.35", "--out", str(out)])
    assert res.exit_code == 0, res.output
    assert "compressor without seed/lead/quote" in res.output and "rag top passages" in res.output
    rows = {r["dataset"]: r for r in json.loads(out.read_text())["results"]}
    main = rows["leval_contracts"]
    assert main["questions"] == 16 and set(main["compressor"]) == {"0.2", "0.35"}
    assert all(0.0 <= v <= 1.0 for v in main["compressor"].values())
    assert all(0.0 < v <= 0.36 for v in main["kept_share"].values())  # the budget holds
    assert "leval_contracts#0" in rows


def test_cache_keeps_collections_and_rankings_and_gives_the_same_numbers(tmp_path):
    from ctxroute.types import Document

    mod = _bench()
    text = " ".join(f"Clause {i} covers the {w} of the parties." for i, w in enumerate(
        ["term", "payment", "renewal", "audit", "notice", "warranty", "liability", "venue"] * 6))
    doc = Document(id="c1", text=text, title="contract")
    s0 = text.index("Clause 3 ")
    gold = mod.GoldDoc("leval_contracts", doc, (mod.Gold("What about the audit?", ((s0, s0 + 40),)),))
    first = mod.evaluate([gold], (0.2, 0.5), retriever="bm25", cache_dir=tmp_path)
    from ctxroute.retrievers.collection_config import CollectionConfig
    from ctxroute.retrievers.embedders import HashingEmbedder

    policy = CollectionConfig.for_embedder(HashingEmbedder(dim=256)).long_text
    pkl = tmp_path / f"prepared-hashing-{policy}-bm25.pkl"
    assert pkl.exists() and (tmp_path / f"collections-hashing-{policy}").is_dir()
    stamp = pkl.stat().st_mtime_ns
    again = mod.evaluate([gold], (0.2, 0.5), retriever="bm25", cache_dir=tmp_path)
    assert pkl.stat().st_mtime_ns == stamp  # nothing re-searched or re-written
    fresh = mod.evaluate([gold], (0.2, 0.5), retriever="bm25")  # no cache: a temporary folder
    for a, b, c in zip(first, again, fresh):
        assert a.compressor == b.compressor == c.compressor and a.rag == b.rag == c.rag
    assert first[0].questions == 1 and 0.0 <= first[0].compressor[0.2] <= 1.0
