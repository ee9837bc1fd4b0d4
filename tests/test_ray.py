"""Ray for bulk work, on a real local cluster (one per module): ingestion sharded over actors
stores what a plain ingest stores; evaluation fanned out over actors writes the records a
sequential run writes, in the same order, with the LLM calls per endpoint bounded."""
from __future__ import annotations

import asyncio
import functools
import json
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import pytest
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="Ray is not installed (pip install 'ctxroute[scale]')")

from ctxroute.cli import app  # noqa: E402
from ctxroute.eval.datasets import EvalItem  # noqa: E402
from ctxroute.eval.distributed import EvalRecipe, run_eval_ray, store_factory_of  # noqa: E402
from ctxroute.eval.runner import engine_answer_fn, run_eval  # noqa: E402
from ctxroute.pipelines.engine import Engine  # noqa: E402
from ctxroute.pipelines.llm.scripted import ScriptedLLM  # noqa: E402
from ctxroute.retrievers import CollectionConfig, CollectionStore, HashingEmbedder, document_from_text  # noqa: E402
from ctxroute.retrievers.chunking import ChunkingConfig  # noqa: E402
from ctxroute.retrievers.distributed import PrecomputedEmbedder, ray_ingest, ray_session  # noqa: E402
from ctxroute.retrievers.documents import load_paths  # noqa: E402

WORDS = ("lease notice rent deposit tenant landlord repair revenue margin division quarter growth "
         "lighthouse keeper lamp harbour storm ship cargo ledger audit").split()


@pytest.fixture(scope="module")
def cluster() -> Iterator[Any]:
    with ray_session(num_cpus=2) as r:  # starts a local cluster, shuts it down at the end
        yield r


def _write_corpus(folder: Path) -> Path:
    """Seven markdown files of different sizes, a duplicate, a bad (binary) file and an empty one."""
    rng = np.random.default_rng(7)
    folder.mkdir()
    for i in range(7):
        sections = []
        for s in range(1 + i % 3):
            sentences = [" ".join(rng.choice(WORDS, size=10)).capitalize() + "." for _ in range(20 + 15 * i)]
            sections.append(f"## Part {s}\n\n" + " ".join(sentences))
        (folder / f"doc{i}.md").write_text(f"# Report {i}\n\n" + "\n\n".join(sections) + "\n")
    (folder / "copy.md").write_text((folder / "doc2.md").read_text())
    (folder / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    (folder / "empty.txt").write_text("   \n")
    return folder


def _vectors(coll: Any) -> np.ndarray:
    return np.asarray(coll._state.dense.vectors, dtype=np.float32)


def test_ray_ingest_stores_what_a_plain_ingest_stores(cluster: Any, tmp_path: Path) -> None:
    docs = _write_corpus(tmp_path / "docs")
    store = CollectionStore(tmp_path / "store")
    emb = HashingEmbedder()
    config = CollectionConfig.for_embedder(emb, chunking=ChunkingConfig(passage_tokens=64))
    plain = store.create("plain", config, emb)
    report = load_paths([docs])
    plain_stats = plain.add_documents(report.documents)

    seen: list[str] = []
    distributed = store.create("ray", config, emb)
    res = ray_ingest(distributed, [docs], workers=2, progress=lambda stage, done, total: seen.append(stage))

    assert res.stats is not None and res.stats.version == plain_stats.version == distributed.version
    # binary.txt, empty.txt and the duplicate copy.md: reported as load_paths reports them
    assert [(e.path, e.reason) for e in res.load.errors] == [(e.path, e.reason) for e in report.errors]
    assert len(report.errors) == 3 and res.stats.failed == plain_stats.failed
    assert res.workers == 2 and res.shards > 2  # several shards per actor
    assert res.vectors_missed == 0 and res.vectors_reused == len(distributed.passages())
    assert {"load", "ray embed", "save"} <= set(seen)
    # reopened from disk: same documents, passages and vectors as the plain ingest
    a, b = store.open("plain", emb), store.open("ray", emb)
    assert [d.id for d in a.documents()] == [d.id for d in b.documents()]
    assert [d.text for d in a.documents()] == [d.text for d in b.documents()]
    assert a.passages() == b.passages() and len(a.passages()) > 20
    np.testing.assert_allclose(_vectors(a), _vectors(b), atol=1e-3)  # stored as float16
    assert a.search("lighthouse keeper", k=3)[0].chunk.id == b.search("lighthouse keeper", k=3)[0].chunk.id

    # files shipped by the driver (what a multi-node cluster does) load exactly as files read on the node
    shipped = ray_ingest(store.create("shipped", config, emb), [docs], workers=1, ship_files=True)
    assert shipped.shipped and not res.shipped and shipped.stats is not None
    assert shipped.stats.version == plain_stats.version
    assert [(e.path, e.reason) for e in shipped.load.errors] == [(e.path, e.reason) for e in report.errors]
    assert [d.source for d in store.open("shipped", emb).documents()] == [d.source for d in a.documents()]

    # a second run embeds nothing (every document is already there) and commits nothing new
    again = ray_ingest(b, [docs], workers=1)
    assert again.vectors_computed == 0 and again.stats is not None and again.stats.version == plain_stats.version
    assert len(again.stats.skipped) == 7


def test_ray_ingest_creates_nothing_when_no_file_loads(cluster: Any, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    (bad / "x.txt").write_bytes(b"\x00\x01\x02")
    store = CollectionStore(tmp_path / "store")
    emb = HashingEmbedder()
    res = ray_ingest(lambda: store.create("never", CollectionConfig.for_embedder(emb), emb), [bad],
                     chunking=ChunkingConfig(), embedder=emb, workers=1)
    assert res.stats is None and len(res.load.errors) == 1 and not store.exists("never")


def test_precomputed_embedder_falls_back_for_misses() -> None:
    emb = HashingEmbedder(dim=32)
    from ctxroute.retrievers.collection_config import content_hash

    known = emb.embed(["alpha beta"])[0]
    pre = PrecomputedEmbedder(emb, {content_hash("alpha beta"): known})
    out = pre.embed(["alpha beta", "gamma delta"])
    assert np.array_equal(out[0], known) and np.array_equal(out[1], emb.embed(["gamma delta"])[0])
    assert (pre.hits, pre.misses, pre.name, pre.dim) == (1, 1, emb.name, 32)


@pytest.fixture(scope="module")
def kb(tmp_path_factory: pytest.TempPathFactory) -> CollectionStore:
    root = tmp_path_factory.mktemp("kb")
    store = CollectionStore(root / "store")
    emb = HashingEmbedder()
    coll = store.create("kb", CollectionConfig.for_embedder(emb), emb)
    coll.add_documents([
        document_from_text("# Lighthouse\n\nThe lighthouse keeper was named Ada Byrne. She kept the lamp lit for forty "
                           "years. The harbour had three ships.\n", source="light.md", format="md"),
        document_from_text("# Lease\n\n## Rent\nRent is 1,200 dollars a month.\n\n## Termination\nEither party may "
                           "terminate with sixty days written notice.\n", source="lease.md", format="md"),
    ])
    return store


ITEMS = [
    EvalItem(id=f"q{i}", question=q, answers=(a,), docs=())
    for i, (q, a) in enumerate([
        ("Who kept the lighthouse?", "Ada Byrne"), ("How long was the lamp lit?", "forty years"),
        ("How much is the rent?", "1,200 dollars"), ("How much notice ends the lease?", "sixty days"),
        ("How many ships were in the harbour?", "three"), ("What colour was the lamp?", "unknown"),
    ])
]
SCRIPTED = functools.partial(ScriptedLLM, default="Ada Byrne kept the lamp lit for forty years.", latency_s=0.05)


def _records(path: Path) -> list[dict[str, Any]]:
    rows = [json.loads(line) for line in (path / "results.jsonl").read_text(encoding="utf-8").splitlines()]
    for r in rows:
        r.pop("latency_ms")  # timings are the only field that may differ
    return rows


@pytest.mark.parametrize("llm", [None, SCRIPTED], ids=["extractive", "scripted-llm"])
def test_ray_eval_writes_the_records_of_a_sequential_run(cluster: Any, kb: CollectionStore, tmp_path: Path,
                                                         llm: Any) -> None:
    routes = ("auto", "rag", "lc")
    engine = Engine(kb, llm() if llm else None)
    asyncio.run(run_eval(ITEMS, engine_answer_fn(engine, "kb"), tmp_path / "seq", routes=routes, concurrency=1))
    res = run_eval_ray(ITEMS, EvalRecipe(store_factory_of(kb), "kb", llm_factory=llm), tmp_path / "ray",
                       routes=routes, concurrency=6, llm_calls=1, workers=2)
    seq, dist = _records(tmp_path / "seq"), _records(tmp_path / "ray")
    assert dist == seq and len(dist) == len(ITEMS) * len(routes)  # same content, same order
    assert res.run.done == 18 and res.run.errors == 0 and res.workers == 2
    if llm is None:
        assert res.limiter == {}
    else:  # 6 questions in flight on 2 actors, yet never more than one LLM call at a time
        assert res.limiter["peak"] == 1 and res.limiter["calls"] >= sum(r["calls"] for r in dist) > 0
    rerun = run_eval_ray(ITEMS, EvalRecipe(store_factory_of(kb), "kb", llm_factory=llm), tmp_path / "ray",
                         routes=routes, concurrency=6, workers=2)
    assert rerun.run.skipped == 18 and rerun.run.done == 0  # resumes like a plain run


@pytest.mark.timeout(300)
def test_cli_ingest_and_eval_with_ray(cluster: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    monkeypatch.delenv("CTXROUTE_EMBEDDER", raising=False)
    monkeypatch.delenv("CTXROUTE_STORE", raising=False)
    _write_corpus(tmp_path / "docs")
    monkeypatch.chdir(tmp_path)  # a relative path: the actors' working directory is not this one
    runner = CliRunner()
    # 3 actors on a 2-CPU cluster: each reserves a share of a CPU, none waits for one forever
    res = runner.invoke(app, ["ingest", "docs", "-c", "viaray", "--embedder", "hashing", "--ray", "--ray-workers", "3"])
    assert res.exit_code == 0, res.output
    assert "ray: 3 workers" in res.output and "binary.txt" in res.output and "duplicate document id" in res.output
    res = runner.invoke(app, ["ingest", "docs", "-c", "plain", "--embedder", "hashing"])
    assert res.exit_code == 0, res.output
    store = CollectionStore(tmp_path / "home" / "collections")
    a, b = store.open("plain"), store.open("viaray")
    assert a.version == b.version and a.passages() == b.passages()
    sources = [d.source for d in b.documents()]
    assert sources == [d.source for d in a.documents()] and len(sources) == 7
    assert all(s.startswith("docs/") for s in sources), sources  # as given, not the absolute path read
    np.testing.assert_allclose(_vectors(a), _vectors(b), atol=1e-3)

    qa = tmp_path / "qa.jsonl"
    qa.write_text("".join(json.dumps({"id": f"q{i}", "question": q, "answers": [ans], "docs": []}) + "\n"
                          for i, (q, ans) in enumerate([("Who audits the ledger?", "audit"),
                                                        ("What grew this quarter?", "revenue")])))
    for name, extra in (("seq", ["--concurrency", "1"]), ("ray", ["--ray", "--ray-workers", "2", "--llm-calls", "1"])):
        res = runner.invoke(app, ["eval", "run", str(qa), "-c", "plain", "--routes", "auto,rag", "--llm", "extractive",
                                  "--out", str(tmp_path / name), *extra])
        assert res.exit_code == 0, res.output
    assert "ray: 2 engine actors" in res.output
    assert _records(tmp_path / "ray") == _records(tmp_path / "seq")


def test_ray_ingest_and_eval_on_the_postgres_backend(cluster: Any, pg_url: str, tmp_path: Path) -> None:
    """The same Ray paths with PostgreSQL as the record: one commit, the plain version; engine
    actors open the store by DSN (a store with a connection pool does not pickle)."""
    docs = _write_corpus(tmp_path / "docs")
    emb = HashingEmbedder()
    config = CollectionConfig.for_embedder(emb, chunking=ChunkingConfig(passage_tokens=64))
    files = CollectionStore(tmp_path / "files")
    plain = files.create("plain", config, emb)
    plain.add_documents(load_paths([docs]).documents)
    pg = CollectionStore(pg_url)
    res = ray_ingest(pg.create("viaray", config, emb), [docs], workers=2)
    assert res.stats is not None and res.stats.version == plain.version and res.vectors_missed == 0
    reopened = pg.open("viaray", emb)
    assert reopened.passages() == plain.passages()
    items = ITEMS[:3]
    asyncio.run(run_eval(items, engine_answer_fn(Engine(pg, None), "viaray"), tmp_path / "seq", routes=("auto",),
                         concurrency=1))
    run_eval_ray(items, EvalRecipe(store_factory_of(pg), "viaray"), tmp_path / "ray", routes=("auto",), workers=2)
    assert _records(tmp_path / "ray") == _records(tmp_path / "seq")


def test_shards_balance_documents_and_lose_none() -> None:
    from ctxroute.retrievers.distributed import _shards

    docs = [document_from_text(("word " * n) + "end.", source=f"d{n}.txt") for n in (900, 500, 400, 300, 200, 100, 50)]
    shards = _shards(docs, 3)
    assert sorted(d.id for s in shards for d in s) == sorted(d.id for d in docs)
    sizes = [sum(len(d.text) for d in s) for s in shards]
    assert len(shards) == 3 and sizes == sorted(sizes, reverse=True) and max(sizes) <= 1.2 * min(sizes)
    assert [len(s) for s in _shards(docs[:2], 8)] == [1, 1]  # two documents, two actors: one each
    assert _shards([], 4) == []
