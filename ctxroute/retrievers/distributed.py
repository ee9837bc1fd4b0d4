"""Bulk ingestion over a Ray cluster: loading, chunking and embedding sharded over actors
that each hold the embedder once, then ONE commit into the collection.

Ray is imported inside functions only (an optional extra, ``ctxroute[scale]``): importing this
module, or a plain ingest, never imports it.

How a Ray ingest runs (``ray_ingest``):

1. files are loaded (PDF/HTML/text extraction, ``documents.load_path_report``) on the actor
   pool, one file per call; the driver puts the documents back in file order and drops
   duplicate ids exactly as ``load_paths`` does, and skips documents the collection already
   holds (same text), so they are not embedded again;
2. the new documents are cut into shards of similar text size (a few per actor) and each
   actor chunks its shard with the collection's ``ChunkingConfig`` and embeds the passages'
   index texts with ``ingest_embed.embed_passages`` (the function a plain ingest uses: each
   distinct text once, longest first);
3. the driver commits every document in one ``Collection.add_documents`` call, with the
   collection's embedder swapped for a ``PrecomputedEmbedder`` that answers from the actors'
   vectors (keyed by content hash of the passage text) and falls back to the real embedder
   for a miss. The version, documents, passages and indexes are what a plain ingest of the
   same files builds; the vectors agree within floating-point noise (batch composition).

The commit itself (BM25, FAISS, graph, writing the version) runs on the driver, as one
version: that is the serial part of a bulk ingest (see docs/SCALING-ray.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

from ctxroute.errors import DocumentError, InputError
from ctxroute.retrievers.chunking import ChunkingConfig, DocumentChunks, chunk_document
from ctxroute.retrievers.collection_config import IngestStats, content_hash, index_text
from ctxroute.retrievers.documents import LoadReport, iter_files, load_path_report
from ctxroute.retrievers.documents import _load as _load_bytes  # what load_path_report does with a file's bytes
from ctxroute.retrievers.ingest_embed import embed_passages
from ctxroute.retrievers.ray_cluster import actor_cpus, cluster_cpus, import_ray, ray_session  # noqa: F401 - ray_session: public here too
from ctxroute.types import Document

Progress = Callable[[str, int, int], None]
SHARDS_PER_WORKER = 4  # shards of the embedding work per actor: balance against per-call overhead
SHARD_CHARS = 2_000_000  # and no shard much above ~2M characters (~2k passages): bounded messages, finer progress


class PrecomputedEmbedder:
    """An embedder that answers from precomputed vectors (keyed by ``content_hash(text)``)
    and embeds only the texts it has no vector for, with ``inner``. Name, dim, dtype and
    ``long_text`` are ``inner``'s, so a collection sees the embedder it was created with."""

    def __init__(self, inner: Any, vectors: Mapping[str, np.ndarray]) -> None:
        self.inner = inner
        self._vectors = vectors
        self.hits = 0
        self.misses = 0

    @property
    def name(self) -> str:
        return str(self.inner.name)

    @property
    def dim(self) -> int:
        return int(self.inner.dim)

    def __getattr__(self, attr: str) -> Any:  # dtype, long_text, bf16, ...: the inner embedder's
        if attr in ("inner", "_vectors"):
            raise AttributeError(attr)
        return getattr(self.inner, attr)

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        missing: list[int] = []
        for i, text in enumerate(texts):
            vec = self._vectors.get(content_hash(text))
            if vec is None:
                missing.append(i)
            else:
                out[i] = vec
        self.hits += len(texts) - len(missing)
        self.misses += len(missing)
        if missing:
            out[missing] = np.asarray(self.inner.embed([texts[i] for i in missing]), dtype=np.float32)
        return out


@dataclass(frozen=True)
class EmbedderSpec:
    """What an actor needs to build the same embedder as the driver's (resolved on the
    driver, so every node uses the same dtype even where its CPU differs)."""

    spec: str
    bf16: bool | None = None
    threads: int | None = 1  # one torch thread per actor: each actor gets one CPU
    batch_size: int = 16
    long_text: str = "truncate"

    @staticmethod
    def of(embedder: Any, threads: int | None = 1) -> "EmbedderSpec":
        from ctxroute.retrievers.embedders import SentenceTransformerEmbedder, embedder_spec

        inner = getattr(embedder, "inner", embedder)
        if isinstance(inner, SentenceTransformerEmbedder):
            return EmbedderSpec(embedder_spec(inner), bool(inner.bf16), threads, inner.batch_size, inner.long_text)
        return EmbedderSpec(embedder_spec(inner), None, threads)

    def build(self) -> Any:
        from ctxroute.retrievers.embedders import make_embedder

        return make_embedder(self.spec, bf16=self.bf16, batch_size=self.batch_size, threads=self.threads,
                             long_text=self.long_text)


class IngestWorker:
    """The body of one Ray actor: builds the embedder once, then loads files and chunks and
    embeds shards of documents. Plain Python (``ray_ingest`` applies ``ray.remote``)."""

    def __init__(self, make_embedder: Callable[[], Any], chunking: ChunkingConfig, collection: str) -> None:
        self.embedder = make_embedder()
        self.chunking = chunking
        self.collection = collection

    def load(self, index: int, where: str, path: str, data: bytes | None = None
             ) -> tuple[int, list[Document], list[tuple[str, str]]]:
        """The documents of one file, named ``where`` (the path as the user gave it, maybe
        relative: an actor's working directory is not the driver's), read from the absolute
        ``path`` or from ``data`` (its bytes, shipped by the driver when the file may not be
        on this node), exactly as ``load_path_report(where)`` loads it on the driver."""
        if data is None:
            report = _renamed(load_path_report(Path(path)), path, where)
        else:
            try:
                docs, errors = _load_bytes(data, Path(where).name, where)
                report = LoadReport(tuple(docs), tuple(errors))
            except DocumentError as exc:
                report = LoadReport((), (exc,))
        return index, list(report.documents), [(e.path, e.reason) for e in report.errors]

    def embed(self, index: int, docs: Sequence[Document]
              ) -> tuple[int, list[str], np.ndarray, dict[str, DocumentChunks]]:
        """Content hashes and vectors of the passage index texts of ``docs``, and their chunk
        hierarchies (handed to the commit, which then does not chunk them again; a document
        that fails to chunk is left to the commit, which records why)."""
        texts: list[str] = []
        chunks: dict[str, DocumentChunks] = {}
        for d in docs:
            try:
                dc = chunk_document(d, self.chunking)
            except InputError:
                continue
            chunks[d.id] = dc
            texts.extend(index_text(d, p) for p in dc.passages)
        dim = int(self.embedder.dim)
        vectors = embed_passages(self.embedder, texts, dim, self.collection, None, None, batch=256)
        return index, [content_hash(t) for t in texts], vectors, chunks


def _renamed(report: LoadReport, path: str, where: str) -> LoadReport:
    """``report`` of a file loaded by its absolute ``path``, as if loaded by the name ``where``."""
    import dataclasses

    def name(s: str) -> str:
        return where + s[len(path):] if s.startswith(path) else s  # jsonl errors are "path:line"

    docs = tuple(dataclasses.replace(d, source=name(d.source)) for d in report.documents)
    return LoadReport(docs, tuple(DocumentError(name(e.path), e.reason) for e in report.errors))


@dataclass(frozen=True)
class RayIngestResult:
    """What ``ray_ingest`` did: the commit's stats, the load report (load failures and
    duplicate ids, as ``load_paths`` reports them) and how the work was spread."""

    stats: IngestStats | None  # None when no document loaded (nothing was committed)
    load: LoadReport
    workers: int
    shards: int
    vectors_computed: int  # distinct passage texts the actors embedded
    vectors_reused: int  # lookups the commit answered from them
    vectors_missed: int  # lookups the commit had to embed itself (should be 0)
    seconds: Mapping[str, float]
    shipped: bool = False  # the driver sent the files' bytes to the actors


def _shards(docs: Sequence[Document], n: int) -> list[list[Document]]:
    """``docs`` in at most ``n`` shards of similar total text length (longest document first
    into the lightest shard), the heaviest shard first so it starts first. The commit does
    not depend on which shard a document is in: vectors are looked up by text."""
    import heapq

    if not docs:
        return []
    n = max(1, min(n, len(docs)))
    heap = [(0, i) for i in range(n)]
    bins: list[list[Document]] = [[] for _ in range(n)]
    for d in sorted(docs, key=lambda d: len(d.text), reverse=True):
        size, i = heapq.heappop(heap)
        bins[i].append(d)
        heapq.heappush(heap, (size + len(d.text), i))
    return sorted(bins, key=lambda b: sum(len(d.text) for d in b), reverse=True)


def _run_pool(ray: Any, actors: list[Any], method: str, jobs: Iterable[tuple[Any, ...]], n_jobs: int,
              tick: Callable[[Any], None]) -> list[Any]:
    """Results of ``actor.method(*job)`` for every job, in job order (the first element of a
    job is its index). Jobs are taken from ``jobs`` lazily, two per actor in flight, and an
    actor that finishes takes the next one."""
    from ray.util import ActorPool

    pool = ActorPool(actors)
    pending = iter(jobs)

    def submit() -> None:
        job = next(pending, None)
        if job is not None:
            pool.submit(lambda actor, j: getattr(actor, method).remote(*j), job)

    for _ in range(2 * len(actors)):
        submit()
    out: list[Any] = [None] * n_jobs
    while pool.has_next():
        result = pool.get_next_unordered()
        out[result[0]] = result
        tick(result)
        submit()
    return out


def ray_ingest(
    collection: Any,
    paths: Iterable[Path],
    *,
    workers: int | None = None,
    embedder_factory: Callable[[], Any] | None = None,
    threads: int | None = 1,
    chunking: ChunkingConfig | None = None,
    embedder: Any = None,
    ship_files: bool | None = None,
    progress: Progress | None = None,
) -> RayIngestResult:
    """Load, chunk and embed ``paths`` on Ray actors and add the documents to ``collection``
    in one version. Needs a Ray connection (``ray_session``).

    ``collection`` is a ``Collection``, or a zero-argument callable that opens (or creates)
    one, called only once at least one document has loaded (nothing is created when every
    file fails; ``stats`` is then None); with a callable pass the ``chunking`` config and the
    ``embedder`` the collection will have. ``workers`` actors (default: the cluster's CPUs)
    each build the embedder once with ``embedder_factory`` (default: that embedder rebuilt
    from its spec, dtype included, with ``threads`` torch threads). ``progress(stage, done,
    total)`` reports ``load``, ``ray embed`` and then the commit's own stages.

    ``ship_files``: the driver reads each file and sends its bytes to the actor (needed when
    the paths are not on every node); ``None`` ships when the cluster has more than one node,
    else actors read the files themselves."""
    import time

    ray = import_ray()
    if not ray.is_initialized():
        raise InputError("ray_ingest needs a Ray connection: call it inside `with ray_session(...)`")
    files = iter_files(paths)
    if not files:
        raise InputError("no file to ingest")
    n_workers = workers or cluster_cpus(ray)
    if n_workers < 1:
        raise InputError(f"workers must be >= 1, got {n_workers}", workers=n_workers)
    if callable(collection) and not hasattr(collection, "add_documents"):
        if chunking is None or embedder is None:
            raise InputError("ray_ingest with a collection opener needs chunking= and embedder=")
        opener, name = collection, "(new)"
    else:
        chunking, embedder, name = collection.config.chunking, collection.embedder, collection.name
        opener = lambda: collection  # noqa: E731
    factory = embedder_factory or EmbedderSpec.of(embedder, threads).build
    seconds: dict[str, float] = {}
    t0 = time.perf_counter()
    actor_cls = ray.remote(num_cpus=actor_cpus(ray, n_workers))(IngestWorker)
    actors = [actor_cls.remote(factory, chunking, name) for _ in range(n_workers)]
    try:
        if ship_files is None:
            ship_files = sum(1 for node in ray.nodes() if node.get("Alive")) > 1
        report = _load(ray, actors, files, progress, ship_files)
        seconds["load"] = time.perf_counter() - t0
        if not report.documents:
            return RayIngestResult(None, report, n_workers, 0, 0, 0, 0, seconds, ship_files)
        t0 = time.perf_counter()
        collection = opener()
        known = {collection.content_hash(d.id) for d in collection.documents()}
        todo = [d for d in report.documents if d.text.strip() and content_hash(d.text) not in known]
        chars = sum(len(d.text) for d in todo)
        shards = _shards(todo, max(n_workers * SHARDS_PER_WORKER, math.ceil(chars / SHARD_CHARS)))
        table, chunked = _embed(ray, actors, shards, progress)
        seconds["ray embed"] = time.perf_counter() - t0
    finally:
        for actor in actors:
            ray.kill(actor)

    t0 = time.perf_counter()
    real = collection.embedder
    lookup = PrecomputedEmbedder(real, table)
    collection.embedder = lookup  # read by add_documents at call time; restored below
    try:
        stats = collection.add_documents(report.documents, progress=progress, chunked=chunked)
    finally:
        collection.embedder = real
    seconds["commit"] = time.perf_counter() - t0
    return RayIngestResult(stats, report, n_workers, len(shards), len(table), lookup.hits, lookup.misses, seconds,
                           ship_files)


def _read(path: Path) -> bytes | None:
    try:
        return path.read_bytes() if path.is_file() else None
    except OSError:
        return None  # the actor reports why, as load_path_report would


def _load(ray: Any, actors: list[Any], files: Sequence[Path], progress: Progress | None, ship: bool) -> LoadReport:
    """Every file loaded on the pool; documents in file order, a later duplicate id reported
    and dropped (as ``load_paths`` does)."""
    done = [0]

    def tick(_: Any) -> None:
        done[0] += 1
        if progress:
            progress("load", done[0], len(files))

    jobs = ((i, str(f), str(f.absolute()), _read(f) if ship else None)  # read as they are sent
            for i, f in enumerate(files))
    loaded = _run_pool(ray, actors, "load", jobs, len(files), tick)
    docs: list[Document] = []
    errors: list[DocumentError] = []
    seen: dict[str, str] = {}
    for _, file_docs, file_errors in loaded:
        errors.extend(DocumentError(p, r) for p, r in file_errors)
        for d in file_docs:
            if d.id in seen:
                errors.append(DocumentError(d.source, f"duplicate document id {d.id!r} (same as {seen[d.id]}); skipped"))
                continue
            seen[d.id] = d.source
            docs.append(d)
    return LoadReport(tuple(docs), tuple(errors))


def _embed(ray: Any, actors: list[Any], shards: list[list[Document]], progress: Progress | None
           ) -> tuple[dict[str, np.ndarray], dict[str, DocumentChunks]]:
    """content hash of a passage's index text -> its vector, for every passage of ``shards``;
    document id -> its chunk hierarchy, as the actors made them."""
    total = sum(len(s) for s in shards)
    done = [0]

    def tick(result: Any) -> None:
        done[0] += len(shards[result[0]])
        if progress:
            progress("ray embed", done[0], total)

    table: dict[str, np.ndarray] = {}
    chunked: dict[str, DocumentChunks] = {}
    for _, hashes, vectors, chunks in _run_pool(ray, actors, "embed", enumerate(shards), len(shards), tick):
        for h, v in zip(hashes, vectors):
            table[h] = v
        chunked.update(chunks)
    return table, chunked


__all__ = ["EmbedderSpec", "IngestWorker", "PrecomputedEmbedder", "RayIngestResult", "actor_cpus", "cluster_cpus",
           "import_ray", "ray_ingest", "ray_session"]
