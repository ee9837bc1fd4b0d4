"""One contract for every storage backend: ``files`` (directories, fcntl) and ``postgres`` (a
real PostgreSQL 16 + pgvector from ``pgserver``; skipped with the reason when it is missing).

Each test gets a ``make_store`` that opens a NEW ``CollectionStore`` (a new backend object, as
another process or replica would) on the same record, so loading is exercised, not a cache.
"""
from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path
from typing import Any, Callable

import numpy as np
import pytest

from ctxroute.errors import CollectionNotFound, Conflict, InputError, ManifestMismatch
from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
from ctxroute.retrievers.documents import document_from_text
from ctxroute.retrievers.embedders import HashingEmbedder
from ctxroute.synthetic import generate_corpus
from ctxroute.types import Document

ROOT = Path(__file__).resolve().parents[2]
EMB = HashingEmbedder(64)
QUERIES = ("revenue of the division", "remote inspections of equipment", "who chairs the board",
           "operating margin fell", "new factory opened in", "dividend per share")

MakeStore = Callable[..., CollectionStore]


@pytest.fixture(params=["files", "postgres"])
def spec(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """What ``CollectionStore`` is given: a directory or a postgresql:// URL (fresh per test)."""
    if request.param == "files":
        return str(tmp_path / "collections")
    return request.getfixturevalue("pg_url")


@pytest.fixture
def make_store(spec: str) -> MakeStore:
    def make(namespace: str = "t1") -> CollectionStore:
        if spec.startswith("postgresql://"):
            return CollectionStore(spec, namespace=namespace)
        return CollectionStore(Path(spec) / namespace)
    return make


def _corpus(n_docs: int = 6, seed: int = 3) -> list[Document]:
    return [document_from_text(d.text, title=d.title, source=f"report-{seed}-{i}.md", format="md")
            for i, d in enumerate(generate_corpus(seed=seed, n_docs=n_docs, n_words=900))]


def _note(i: int, tag: str = "") -> Document:
    return document_from_text(f"Note {tag}{i}. The harbour pilot {i} moored vessel {i * 7} at berth {i % 5}. "
                              f"Fees of {100 + i} dollars were paid.", doc_id=f"note-{tag}{i}", title=f"Note {i}")


# --- lifecycle ---------------------------------------------------------------------------
def test_create_open_list_manifest_delete(make_store: MakeStore) -> None:
    store = make_store()
    assert store.list() == [] and not store.exists("c1") and store.current("c1") is None
    col = store.create("c1", embedder=EMB)
    assert store.exists("c1") and store.current("c1") == col._state.version_dir
    stats = col.add_documents(_corpus(3))
    other = make_store()
    [info] = other.list()
    assert (info.name, info.n_docs, info.n_passages, info.version) == ("c1", 3, stats.passages, col.version)
    assert info.embedder_name == EMB.name and info.embedder_dim == EMB.dim and info.updated_at
    manifest = other.manifest("c1")
    assert manifest["version"] == col.version and manifest["counts"]["documents"] == 3
    assert manifest["config"] == col.config.to_dict()
    assert set(manifest["documents"]) == {d.id for d in col.documents()}
    row = manifest["documents"][col.documents()[0].id]
    assert row["passages"] == len(col.chunks(col.documents()[0].id).passages) and row["hash"]
    opened = other.open("c1", EMB)
    assert [d.id for d in opened.documents()] == [d.id for d in col.documents()]
    assert [d.text for d in opened.documents()] == [d.text for d in col.documents()]
    assert opened.passages() == col.passages()
    for d in col.documents():
        assert opened.chunks(d.id) == col.chunks(d.id)  # hierarchy and sentence spans round-trip
    other.delete("c1")
    assert not store.exists("c1") and store.list() == []
    with pytest.raises(CollectionNotFound):
        store.open("c1", EMB)


def test_bad_input_errors(make_store: MakeStore) -> None:
    store = make_store()
    with pytest.raises(CollectionNotFound):
        store.open("missing", EMB)
    with pytest.raises(CollectionNotFound):
        store.delete("missing")
    with pytest.raises(CollectionNotFound):
        store.manifest("missing")
    with pytest.raises(CollectionNotFound):
        with store.backend.write_lock("missing"):
            pass
    with pytest.raises(InputError, match="invalid collection name"):
        store.create("../escape", embedder=EMB)
    col = store.create("c1", embedder=EMB)
    col.add_documents([_note(1)])
    with pytest.raises(Conflict, match="already exists"):
        make_store().create("c1", embedder=EMB)
    with pytest.raises(ManifestMismatch, match="hashing-64"):
        make_store().open("c1", HashingEmbedder(32))
    assert [d.id for d in make_store().open("c1", EMB).documents()] == ["note-1"]  # nothing lost


def test_namespaces_are_separate(make_store: MakeStore) -> None:
    make_store("t1").create("same", embedder=EMB).add_documents([_note(1)])
    make_store("t2").create("same", embedder=EMB).add_documents([_note(2), _note(3)])
    assert len(make_store("t1").open("same", EMB)) == 1
    assert len(make_store("t2").open("same", EMB)) == 2
    make_store("t1").delete("same")
    assert len(make_store("t2").open("same", EMB)) == 2


# --- writes and versions -----------------------------------------------------------------
def test_add_replace_remove_and_versions(make_store: MakeStore) -> None:
    store = make_store()
    col = store.create("c1", embedder=EMB)
    versions = [col.version]
    tags = [store.current("c1")]
    col.add_documents([_note(1), _note(2)])
    versions.append(col.version)
    tags.append(store.current("c1"))
    again = col.add_documents([_note(1)])  # same text: skipped, no new version
    assert again.skipped == ("note-1",) and col.version == versions[-1] and store.current("c1") == tags[-1]
    replaced = col.add_documents([document_from_text("Note 1 was rewritten: the pilot retired.", doc_id="note-1")])
    assert replaced.replaced == ("note-1",)
    versions.append(col.version)
    tags.append(store.current("c1"))
    col.remove_document("note-2")
    versions.append(col.version)
    tags.append(store.current("c1"))
    assert len(set(versions)) == len(versions) and len(set(tags)) == len(tags)
    fresh = make_store().open("c1", EMB)
    assert fresh.version == col.version and [d.id for d in fresh.documents()] == ["note-1"]
    assert fresh.document("note-1").text.startswith("Note 1 was rewritten")
    assert [h.chunk.doc_id for h in fresh.search("pilot retired", k=3, retriever="bm25")] == ["note-1"]
    col.remove_document("note-1")
    assert len(make_store().open("c1", EMB)) == 0


def test_version_is_the_content_not_the_backend(make_store: MakeStore, tmp_path: Path) -> None:
    """The same documents give the same version on every backend (a content hash), so an
    answer cached under it is valid wherever the collection is stored."""
    col = make_store().create("c1", embedder=EMB)
    col.add_documents(_corpus(2))
    reference = CollectionStore(tmp_path / "reference").create("c1", embedder=EMB)
    reference.add_documents(_corpus(2))
    assert col.version == reference.version


def test_search_agrees_with_the_files_backend(make_store: MakeStore, tmp_path: Path) -> None:
    """bm25, dense, graph and hybrid give the same top 5 on both backends (exact dense)."""
    docs = _corpus(6)
    col = make_store().create("c1", embedder=EMB)
    col.add_documents(docs[:4])
    col.add_documents(docs[4:])
    col = make_store().open("c1", EMB)  # loaded from the record
    ref = CollectionStore(tmp_path / "reference").create("c1", embedder=EMB)
    ref.add_documents(docs)
    assert len(col.passages()) == len(ref.passages()) > 30
    for retriever in ("bm25", "dense", "graph", "hybrid"):
        for q in QUERIES:
            got = col.search(q, k=5, retriever=retriever)
            want = ref.search(q, k=5, retriever=retriever)
            assert [h.chunk.id for h in got] == [h.chunk.id for h in want], (retriever, q)
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-4, atol=1e-5)
    scoped = col.search(QUERIES[0], k=3, retriever="dense", doc_ids=[docs[5].id])
    assert scoped and {h.chunk.doc_id for h in scoped} == {docs[5].id}


def test_hnsw_above_the_threshold(make_store: MakeStore, tmp_path: Path) -> None:
    """Above ``hnsw_threshold`` both backends search an HNSW index: approximate, so the top 10
    must overlap the exact top 10 almost entirely rather than be equal."""
    docs = _corpus(6)
    config = CollectionConfig.for_embedder(EMB, hnsw_threshold=20)
    col = make_store().create("c1", config, EMB)
    col.add_documents(docs)
    col = make_store().open("c1", EMB)
    exact = CollectionStore(tmp_path / "exact").create("c1", embedder=EMB)
    exact.add_documents(docs)
    overlap = []
    for q in QUERIES:
        got = {h.chunk.id for h in col.search(q, k=10, retriever="dense")}
        want = {h.chunk.id for h in exact.search(q, k=10, retriever="dense")}
        overlap.append(len(got & want) / 10)
    assert np.mean(overlap) >= 0.9, overlap


def test_two_handles_see_each_others_writes(make_store: MakeStore) -> None:
    a = make_store().create("c1", embedder=EMB)
    b = make_store().open("c1", EMB)
    a.add_documents([_note(1)])
    assert len(b) == 0 and b.refresh() and [d.id for d in b.documents()] == ["note-1"]
    assert b.search("harbour pilot", k=1, retriever="dense")[0].chunk.doc_id == "note-1"
    b.add_documents([_note(2)])  # b writes on top of a's version
    assert a.refresh() and sorted(d.id for d in a.documents()) == ["note-1", "note-2"]
    a.remove_document("note-2")
    assert b.refresh() and not b.refresh() and [d.id for d in b.documents()] == ["note-1"]
    assert b.search("harbour pilot", k=5, retriever="hybrid")[0].chunk.doc_id == "note-1"


def test_concurrent_writers_in_threads_lose_nothing(make_store: MakeStore) -> None:
    make_store().create("c1", embedder=EMB)
    errors: list[BaseException] = []

    def writer(tag: str) -> None:
        try:
            col = make_store().open("c1", EMB)
            for i in range(6):
                col.add_documents([_note(i, tag)])
        except BaseException as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,)) for t in ("a", "b", "c")]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not errors, errors
    final = make_store().open("c1", EMB)
    ids = [d.id for d in final.documents()]
    assert sorted(ids) == sorted(f"note-{t}{i}" for t in "abc" for i in range(6))
    assert len(final.passages()) == len({p.id for p in final.passages()}) == 18


_WRITER = textwrap.dedent("""
    import sys
    from pathlib import Path
    from ctxroute.retrievers.collection import CollectionStore
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.retrievers.embedders import HashingEmbedder
    spec, tag, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    store = CollectionStore(spec, namespace="t1") if spec.startswith("postgresql://") else CollectionStore(Path(spec) / "t1")
    col = store.open("c1", HashingEmbedder(64))
    for i in range(n):
        col.add_documents([document_from_text(f"Process {tag} wrote record {i} about turbines and glaciers {i}.",
                                              doc_id=f"proc-{tag}{i}")])
""")


def test_concurrent_writer_processes_lose_nothing(make_store: MakeStore, spec: str) -> None:
    make_store().create("c1", embedder=EMB)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _WRITER, spec, tag, "5"], env=env, cwd=ROOT,
                              stderr=subprocess.PIPE) for tag in ("x", "y")]
    for p in procs:
        _, err = p.communicate(timeout=180)
        assert p.returncode == 0, err.decode(errors="replace")[-2000:]
    final = make_store().open("c1", EMB)
    assert sorted(d.id for d in final.documents()) == sorted(f"proc-{t}{i}" for t in "xy" for i in range(5))


# --- postgres only -----------------------------------------------------------------------
@pytest.fixture
def pg_store(pg_url: str) -> Callable[[], CollectionStore]:
    return lambda: CollectionStore(pg_url, namespace="t1")


def test_postgres_failed_commit_changes_nothing(pg_store: Callable[[], CollectionStore],
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    """A replace deletes the old rows first; an error later in the same transaction must
    leave the old document, its passages and the version as they were."""
    from ctxroute.retrievers import pgstore

    col = pg_store().create("c1", embedder=EMB)
    col.add_documents([_note(1), _note(2)])
    before, tag = col.version, pg_store().current("c1")

    def broken(*_: Any) -> Any:
        raise RuntimeError("disk full (simulated)")

    monkeypatch.setattr(pgstore, "encode_chunks", broken)
    with pytest.raises(RuntimeError, match="simulated"):
        col.add_documents([document_from_text("Note 1 replaced by a new text.", doc_id="note-1")])
    monkeypatch.undo()
    assert pg_store().current("c1") == tag and col.version == before
    fresh = pg_store().open("c1", EMB)
    assert fresh.document("note-1").text.startswith("Note 1.") and len(fresh.passages()) == 2
    assert fresh.search("harbour pilot 1", k=2, retriever="dense")
    col.add_documents([document_from_text("Note 1 replaced by a new text.", doc_id="note-1")])  # still writable
    assert pg_store().open("c1", EMB).document("note-1").text.startswith("Note 1 replaced")


def test_postgres_full_text_candidates(pg_store: Callable[[], CollectionStore]) -> None:
    col = pg_store().create("c1", embedder=EMB)
    col.add_documents(_corpus(3) + [_note(4)])
    fts = col.backend.text_retriever("c1", col._state)
    hits = fts.retrieve("harbour pilots mooring", k=3)
    assert hits and hits[0].chunk.doc_id == "note-4" and hits[0].retriever == "fts"
    assert fts.retrieve("the of and", k=3) == []  # stop words only: no query, no hits


def test_postgres_unreachable_is_a_clear_error() -> None:
    from ctxroute.retrievers.pg_schema import StoreUnavailable

    pytest.importorskip("psycopg_pool", reason="the postgres backend needs psycopg_pool (ctxroute[scale])")
    with pytest.raises(StoreUnavailable, match=r"cannot reach the PostgreSQL store .*:\*\*\*@"):
        CollectionStore("postgresql://u:secret@127.0.0.1:1/db?connect_timeout=2", namespace="t1")


def test_postgres_plan_follows_the_threshold(pg_store: Callable[[], CollectionStore]) -> None:
    """Exact below ``hnsw_threshold`` (no HNSW index is even made), the HNSW index above it."""
    small = pg_store().create("small", embedder=EMB)
    small.add_documents(_corpus(2))
    vector = EMB.embed(["revenue of the division"])[0]
    plan = small._state.dense.explain(vector, k=5)
    assert "Seq Scan" in plan and "hnsw" not in plan, plan
    big = pg_store().create("big", CollectionConfig.for_embedder(EMB, hnsw_threshold=20), EMB)
    big.add_documents(_corpus(2))
    plan = pg_store().open("big", EMB)._state.dense.explain(vector, k=5)
    assert "Index Scan using passages_" in plan and "_hnsw" in plan, plan


def test_postgres_refresh_reads_only_changed_documents(pg_store: Callable[[], CollectionStore]) -> None:
    writer = pg_store().create("c1", embedder=EMB)
    writer.add_documents(_corpus(3))
    reader = pg_store().open("c1", EMB)
    before = {d.id: d for d in reader.documents()}
    writer.add_documents([_note(9)])
    assert reader.refresh()
    after = {d.id: d for d in reader.documents()}
    assert set(after) == set(before) | {"note-9"}
    assert all(after[d] is before[d] for d in before)  # reused, not read again
    assert reader.search("harbour pilot 9", k=1, retriever="bm25")[0].chunk.doc_id == "note-9"


def test_postgres_incremental_reload_searches_as_a_fresh_load(pg_store: Callable[[], CollectionStore]) -> None:
    """A replica that follows adds, a replace and removals by refreshing (BM25 grown by segments,
    graph by documents) ranks exactly as one that loads the final version whole."""
    docs = _corpus(6)
    writer = pg_store().create("c1", embedder=EMB)
    writer.add_documents(docs[:3])
    reader = pg_store().open("c1", EMB)
    for step in (lambda: writer.add_documents(docs[3:5]), lambda: writer.remove_document(docs[1].id),
                 lambda: writer.add_documents([document_from_text(docs[0].text + " Restated.", doc_id=docs[0].id)]),
                 lambda: writer.add_documents([docs[5], _note(1)]), lambda: writer.remove_document("note-1")):
        step()
        assert reader.refresh()
    assert reader._state.sparse.n_segments > 1  # grown, not rebuilt
    whole = pg_store().open("c1", EMB)
    assert [d.id for d in reader.documents()] == [d.id for d in whole.documents()]
    assert reader.passages() == whole.passages() and reader.version == whole.version
    for retriever in ("bm25", "dense", "graph", "hybrid"):
        for q in QUERIES:
            got = reader.search(q, k=5, retriever=retriever)
            want = whole.search(q, k=5, retriever=retriever)
            assert [h.chunk.id for h in got] == [h.chunk.id for h in want], (retriever, q)
            np.testing.assert_allclose([h.score for h in got], [h.score for h in want], rtol=1e-5, atol=1e-6)


def test_postgres_outage_is_a_clear_error_and_recovers(pg_server: Any, tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    """A PostgreSQL server stopped under an open collection: reads and writes fail with a
    retryable ``store_unavailable`` error naming the store (no password); once the server is
    back the same objects work again, and nothing committed is lost."""
    import pgserver

    from ctxroute.retrievers import pg_schema
    from ctxroute.retrievers.pg_schema import StoreUnavailable, close_pool

    monkeypatch.setattr(pg_schema, "POOL_TIMEOUT_S", 2.0)
    server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
    url = server.get_uri()
    try:
        store = CollectionStore(url, namespace="t1")
        col = store.create("c1", embedder=EMB)
        col.add_documents([_note(1)])
        server.cleanup()  # the server stops
        with pytest.raises(StoreUnavailable, match="retry when it is reachable") as err:
            col.search("harbour pilot", k=1, retriever="dense")
        assert err.value.retryable and err.value.code == "store_unavailable"
        with pytest.raises(StoreUnavailable):
            col.add_documents([_note(2)])
        with pytest.raises(StoreUnavailable):
            store.current("c1")
        server = pgserver.get_server(tmp_path / "pg", cleanup_mode="stop")
        assert server.get_uri() == url
        assert col.search("harbour pilot", k=1, retriever="dense")[0].chunk.doc_id == "note-1"
        col.add_documents([_note(2)])
        assert sorted(d.id for d in CollectionStore(url, namespace="t1").open("c1", EMB).documents()) == [
            "note-1", "note-2"]
    finally:
        close_pool(url)
        server.cleanup()
