"""Persisted collections: documents, their chunk hierarchy and the sparse, dense and graph
indexes, versioned on disk with atomic commits.

Layout of one collection (``<root>/<name>/``)::

    CURRENT                  name of the live version directory, replaced atomically
    .lock                    flock'ed by writers (processes and threads)
    versions/v000007/
        manifest.json        format version, configs, embedder name/dim, per-document hashes
        documents.jsonl      one Document per line (text included)
        chunks.jsonl         one DocumentChunks per line
        sparse/              bm25s arrays (np.save, allow_pickle=False) + JSON
        dense.faiss          faiss.write_index; vectors.npy (source of truth) + dense.json
        graph.json           networkx node-link JSON

A write builds a whole new version in ``versions/.tmp-*``, renames it into place and then
replaces ``CURRENT``; a crash at any point leaves the previous version loadable. Adding or
removing documents never re-embeds the other documents: their vectors are copied.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ctxroute.errors import CollectionNotFound, Conflict, DocumentNotFound, InputError, ManifestMismatch, NotFound
from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.chunking import ChunkingConfig, DocumentChunks, chunk_document
from ctxroute.retrievers.dense import DenseIndex, DenseRetriever
from ctxroute.retrievers.embedders import embedder_spec, make_embedder
from ctxroute.retrievers.graph import GraphIndex, GraphRetriever
from ctxroute.retrievers.hybrid import TUNED_RRF_K, TUNED_WEIGHTS, HybridRetriever
from ctxroute.retrievers.sparse import SparseConfig, SparseIndex, SparseRetriever
from ctxroute.types import Chunk, Document, Level, ScoredChunk

FORMAT_VERSION = 1
RETRIEVERS = ("bm25", "dense", "graph", "hybrid")
# Tuned on LooGLE + L-Eval contracts with MiniLM (benchmarks/README.md): sharp RRF (k=5) and a
# graph weight of 2 beat the textbook k=60, which makes the graph weight irrelevant.
DEFAULT_FUSION_WEIGHTS: Mapping[str, float] = {k: float(v) for k, v in TUNED_WEIGHTS.items()}
DEFAULT_RRF_K = TUNED_RRF_K
NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
EMBED_BATCH = 64
_KEEP_VERSIONS = 2  # the live one and its predecessor (a reader may still be loading it)

Progress = Callable[[str, int, int], None]


def _before_commit(tmp_dir: Path) -> None:
    """Test seam: called when a new version is fully written, just before it goes live."""


# --- configuration and results ------------------------------------------------------------
@dataclass(frozen=True)
class CollectionConfig:
    """How a collection is chunked, indexed and embedded. Fixed at creation."""

    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    embedder_name: str = "all-MiniLM-L6-v2"
    embedder_dim: int = 384
    hnsw_threshold: int = 50_000
    fusion_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FUSION_WEIGHTS))
    embedder_spec: str = ""  # what make_embedder() needs to rebuild the embedder ("" = by name)
    fusion_rrf_k: int = DEFAULT_RRF_K

    def __post_init__(self) -> None:
        unknown = set(self.fusion_weights) - {"bm25", "dense", "graph"}
        if unknown:
            raise InputError(f"fusion_weights name unknown retrievers {sorted(unknown)}; use bm25, dense, graph")
        if self.embedder_dim < 1 or self.hnsw_threshold < 1:
            raise InputError(
                f"embedder_dim and hnsw_threshold must be >= 1, got {self.embedder_dim}, {self.hnsw_threshold}"
            )

    @classmethod
    def for_embedder(cls, embedder: Any, **kwargs: Any) -> "CollectionConfig":
        """A config whose embedder fields describe ``embedder``."""
        return cls(embedder_name=str(embedder.name), embedder_dim=int(embedder.dim),
                   embedder_spec=embedder_spec(embedder), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunking": self.chunking.to_dict(),
            "sparse": self.sparse.to_dict(),
            "embedder_name": self.embedder_name,
            "embedder_dim": self.embedder_dim,
            "embedder_spec": self.embedder_spec,
            "hnsw_threshold": self.hnsw_threshold,
            "fusion_weights": dict(self.fusion_weights),
            "fusion_rrf_k": self.fusion_rrf_k,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CollectionConfig":
        return cls(
            chunking=ChunkingConfig.from_dict(dict(data["chunking"])),
            sparse=SparseConfig.from_dict(dict(data["sparse"])),
            embedder_name=str(data["embedder_name"]),
            embedder_dim=int(data["embedder_dim"]),
            embedder_spec=str(data.get("embedder_spec", "")),
            hnsw_threshold=int(data["hnsw_threshold"]),
            fusion_weights={str(k): float(v) for k, v in dict(data["fusion_weights"]).items()},
            fusion_rrf_k=int(data.get("fusion_rrf_k", 60)),  # collections written before tuning used 60
        )


@dataclass(frozen=True)
class IngestStats:
    """What ``add_documents`` did: ids added/skipped (same text already stored)/replaced (same
    id, new text)/failed (with the reason), counts over the added documents and seconds per
    stage (chunk, embed, sparse, dense, graph, save)."""

    added: tuple[str, ...]
    skipped: tuple[str, ...]
    replaced: tuple[str, ...]
    documents: int
    sections: int
    passages: int
    sentences: int
    tokens: int
    seconds: Mapping[str, float]
    version: str
    failed: tuple[tuple[str, str], ...] = ()  # (document id, reason)


@dataclass(frozen=True)
class CollectionStats:
    """Sizes the router needs (field names match ``ctxroute.router.features.CollectionStats``)."""

    n_docs: int
    total_tokens: int
    doc_tokens: tuple[int, ...]
    n_passages: int
    n_sections: int
    n_sentences: int
    passage_tokens: int
    doc_ids: tuple[str, ...]
    doc_chars: Mapping[str, int]


@dataclass(frozen=True)
class CollectionInfo:
    """One line of ``CollectionStore.list()``."""

    name: str
    version: str
    n_docs: int
    n_passages: int
    total_tokens: int
    embedder_name: str
    embedder_dim: int
    updated_at: str
    path: str


# --- (de)serialisation ----------------------------------------------------------------
def _chunk_to_json(c: Chunk) -> list[Any]:
    return [c.id, c.level.value, c.start, c.end, c.parent_id, c.ordinal, c.n_tokens, c.heading]


def _chunk_from_json(doc_id: str, row: Sequence[Any]) -> Chunk:
    cid, level, start, end, parent, ordinal, n_tokens, heading = row
    return Chunk(id=cid, doc_id=doc_id, level=Level(level), start=int(start), end=int(end),
                 parent_id=parent, ordinal=int(ordinal), n_tokens=int(n_tokens), heading=heading)


def _chunks_to_json(dc: DocumentChunks) -> dict[str, Any]:
    return {
        "doc_id": dc.document.doc_id,
        "document": _chunk_to_json(dc.document),
        "sections": [_chunk_to_json(c) for c in dc.sections],
        "passages": [_chunk_to_json(c) for c in dc.passages],
        "sentences": [_chunk_to_json(c) for c in dc.sentences],
    }


def _chunks_from_json(data: Mapping[str, Any]) -> DocumentChunks:
    doc_id = str(data["doc_id"])
    return DocumentChunks(
        document=_chunk_from_json(doc_id, data["document"]),
        sections=tuple(_chunk_from_json(doc_id, r) for r in data["sections"]),
        passages=tuple(_chunk_from_json(doc_id, r) for r in data["passages"]),
        sentences=tuple(_chunk_from_json(doc_id, r) for r in data["sentences"]),
    )


def _doc_to_json(d: Document) -> dict[str, Any]:
    return {"id": d.id, "title": d.title, "source": d.source, "format": d.format,
            "page_starts": list(d.page_starts), "metadata": dict(d.metadata), "text": d.text}


def _doc_from_json(data: Mapping[str, Any]) -> Document:
    return Document(id=str(data["id"]), text=str(data["text"]), title=str(data.get("title", "")),
                    source=str(data.get("source", "")), metadata=dict(data.get("metadata", {})),
                    page_starts=tuple(int(p) for p in data.get("page_starts", ())),
                    format=str(data.get("format", "txt")))


def content_hash(text: str) -> str:
    """sha256 hex of a document's text: equal texts are stored once per collection."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def index_text(doc: Document, passage: Chunk) -> str:
    """What the sparse and dense indexes see for a passage: a short title/heading header
    (context the passage itself may lack) followed by the passage text."""
    parts = [doc.title] if doc.title else []
    if passage.heading and passage.heading != doc.title:
        parts.append(passage.heading)
    header = " / ".join(parts)
    body = passage.text_of(doc)
    return f"{header}\n{body}" if header else body


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


def _write_jsonl(path: Path, rows: Iterable[Any]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False, separators=(",", ":")))
            fh.write("\n")


def _read_jsonl(path: Path) -> Iterator[Any]:
    with path.open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                yield json.loads(line)


def _fsync_dir(path: Path) -> None:
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


# --- in-memory state ------------------------------------------------------------------
@dataclass
class _State:
    """One version of a collection, never mutated after it is built (writers build a new one)."""

    docs: dict[str, Document]
    chunks: dict[str, DocumentChunks]
    hashes: dict[str, str]
    passages: list[Chunk]
    sparse: SparseIndex
    dense: DenseIndex
    graph: GraphIndex
    version: str
    version_dir: str
    created_at: str
    updated_at: str
    passage_by_id: dict[str, Chunk] = field(default_factory=dict)
    retrievers: dict[str, Retriever] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.passage_by_id = {p.id: p for p in self.passages}


def _version_of(config: CollectionConfig, hashes: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    h.update(f"ctxroute-collection/{FORMAT_VERSION}\n".encode())
    h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for doc_id, digest in sorted(hashes.items()):
        h.update(f"\n{doc_id}:{digest}".encode())
    return h.hexdigest()[:16]


class Collection:
    """A named, persisted set of documents with sparse, dense and graph indexes.

    Get one from ``CollectionStore.create``/``open``. Reads (search, documents, chunks) see a
    consistent snapshot; writes (add_documents, remove_document) commit a new version on disk
    first and then swap it in, so a failed write changes nothing.
    """

    def __init__(self, path: Path, name: str, config: CollectionConfig, embedder: Any, state: _State) -> None:
        self.path = path
        self.name = name
        self.config = config
        self.embedder = embedder
        self._state = state
        self._lock = threading.RLock()

    # --- reading ----------------------------------------------------------------------
    @property
    def version(self) -> str:
        """Changes whenever the documents change (hash of the document hashes and config)."""
        return self._state.version

    def __len__(self) -> int:
        return len(self._state.docs)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._state.docs

    def documents(self) -> list[Document]:
        """Documents in the order they were added."""
        return list(self._state.docs.values())

    def document(self, doc_id: str) -> Document:
        try:
            return self._state.docs[doc_id]
        except KeyError:
            raise self._doc_not_found(doc_id) from None

    def chunks(self, doc_id: str) -> DocumentChunks:
        try:
            return self._state.chunks[doc_id]
        except KeyError:
            raise self._doc_not_found(doc_id) from None

    def content_hash(self, doc_id: str) -> str:
        self.document(doc_id)
        return self._state.hashes[doc_id]

    def passages(self) -> list[Chunk]:
        """All passages, in index order (documents in insertion order)."""
        return list(self._state.passages)

    def passage(self, chunk_id: str) -> Chunk:
        try:
            return self._state.passage_by_id[chunk_id]
        except KeyError:
            raise NotFound(f"passage {chunk_id!r} is not in collection {self.name!r}", chunk_id=chunk_id) from None

    def text(self, chunk: Chunk) -> str:
        """The text of any chunk of this collection."""
        return chunk.text_of(self.document(chunk.doc_id))

    def sentence_at(self, doc_id: str, offset: int) -> Chunk | None:
        """The sentence containing character ``offset`` of a document (None between sentences)."""
        import bisect

        sentences = self.chunks(doc_id).sentences
        i = bisect.bisect_right([s.start for s in sentences], offset) - 1
        if i >= 0 and sentences[i].start <= offset < sentences[i].end:
            return sentences[i]
        return None

    def sentences_in(self, chunk: Chunk) -> list[Chunk]:
        """Sentences of ``chunk``'s document that lie inside its span."""
        return [s for s in self.chunks(chunk.doc_id).sentences if s.start >= chunk.start and s.end <= chunk.end]

    def stats(self) -> CollectionStats:
        st = self._state
        doc_tokens = tuple(self._doc_tokens(st.chunks[d]) for d in st.docs)
        return CollectionStats(
            n_docs=len(st.docs),
            total_tokens=sum(doc_tokens),
            doc_tokens=doc_tokens,
            n_passages=len(st.passages),
            n_sections=sum(len(c.sections) for c in st.chunks.values()),
            n_sentences=sum(len(c.sentences) for c in st.chunks.values()),
            passage_tokens=int(self.config.chunking.passage_tokens),
            doc_ids=tuple(st.docs),
            doc_chars={d: len(doc.text) for d, doc in st.docs.items()},
        )

    def info(self) -> CollectionInfo:
        stats = self.stats()
        return CollectionInfo(self.name, self.version, stats.n_docs, stats.n_passages, stats.total_tokens,
                              self.config.embedder_name, self.config.embedder_dim, self._state.updated_at,
                              str(self.path))

    def retriever(self, name: str = "hybrid") -> Retriever:
        """``bm25``, ``dense``, ``graph`` (PageRank seeded by bm25+dense) or ``hybrid`` (weighted RRF)."""
        if name not in RETRIEVERS:
            raise InputError(f"unknown retriever {name!r}; use one of {', '.join(RETRIEVERS)}", retriever=name)
        return self._retriever_for(self._state, name)

    def _retriever_for(self, st: _State, name: str) -> Retriever:
        """Retrievers are built per state (snapshot), so a concurrent write never mixes two."""
        cached = st.retrievers.get(name)
        if cached is not None:
            return cached
        if name == "bm25":
            made: Retriever = SparseRetriever(st.sparse, st.passages)
        elif name == "dense":
            made = DenseRetriever(st.dense, self.embedder, st.passages)
        elif name == "graph":
            made = GraphRetriever(st.graph, st.passage_by_id,
                                  [self._retriever_for(st, "bm25"), self._retriever_for(st, "dense")])
        else:
            made = HybridRetriever(
                {n: self._retriever_for(st, n) for n in ("bm25", "dense", "graph")},
                weights=dict(self.config.fusion_weights),
                rrf_k=self.config.fusion_rrf_k,
            )
        st.retrievers[name] = made
        return made

    def search(
        self, query: str, k: int = 10, retriever: str = "hybrid", doc_ids: Iterable[str] | None = None
    ) -> list[ScoredChunk]:
        """Top ``k`` passages for ``query``; ``doc_ids`` keeps only hits from those documents
        (the retriever is asked for more hits until ``k`` in scope are found or none are left)."""
        if not query.strip():
            raise InputError("empty query; pass the question text to search for")
        if k < 1:
            raise InputError(f"k must be >= 1, got {k}", k=k)
        st = self._state
        if doc_ids is None:
            return self.retriever(retriever).retrieve(query, k)
        scope = set(doc_ids)
        for d in scope:
            if d not in st.docs:
                raise self._doc_not_found(d)
        in_scope = sum(len(st.chunks[d].passages) for d in scope)
        if in_scope == 0:
            return []
        if retriever not in RETRIEVERS:
            raise InputError(f"unknown retriever {retriever!r}; use one of {', '.join(RETRIEVERS)}", retriever=retriever)
        ret = self._retriever_for(st, retriever)
        total = len(st.passages)
        fetch = min(total, max(4 * k, k + 50))
        while True:
            hits = [h for h in ret.retrieve(query, fetch) if h.chunk.doc_id in scope]
            if len(hits) >= k or fetch >= total:
                return hits[:k]
            fetch = min(total, fetch * 4)

    # --- writing ----------------------------------------------------------------------
    def add_documents(self, docs: Iterable[Document], progress: Progress | None = None) -> IngestStats:
        """Chunk, index and persist ``docs``. A document whose text is already stored is
        skipped; one whose id exists with different text replaces the old one."""
        docs = list(docs)
        with self._write_lock():
            st = self._state
            seconds: dict[str, float] = {}
            known_hashes = set(st.hashes.values())
            new_docs: list[Document] = []
            skipped: list[str] = []
            replaced: list[str] = []
            batch_ids: set[str] = set()
            failed: list[tuple[str, str]] = []
            for d in docs:
                if not isinstance(d, Document):
                    raise InputError(f"add_documents takes Document objects, got {type(d).__name__}; "
                                     "build them with ctxroute.retrievers.document_from_text or load_paths")
                if not d.text.strip():
                    failed.append((d.id, "empty document: it has no text"))
                    continue
                h = content_hash(d.text)
                if h in known_hashes or d.id in batch_ids:
                    skipped.append(d.id)
                    continue
                if d.id in st.docs:
                    replaced.append(d.id)
                known_hashes.add(h)
                batch_ids.add(d.id)
                new_docs.append(d)
            t0 = time.perf_counter()
            kept: list[Document] = []
            new_chunks: list[DocumentChunks] = []
            for i, d in enumerate(new_docs, start=1):
                try:
                    dc = chunk_document(d, self.config.chunking)
                except InputError as exc:  # one bad document never stops the others
                    failed.append((d.id, exc.message))
                else:
                    if dc.passages:
                        kept.append(d)
                        new_chunks.append(dc)
                    else:
                        failed.append((d.id, "no passage to index: the document has no sentences"))
                if progress:
                    progress("chunk", i, len(new_docs))
            seconds["chunk"] = time.perf_counter() - t0
            new_docs = kept
            batch_ids = {d.id for d in new_docs}
            replaced = [r for r in replaced if r in batch_ids]
            if not new_docs:
                return IngestStats((), tuple(skipped), (), 0, 0, 0, 0, 0, seconds, st.version, tuple(failed))

            t0 = time.perf_counter()
            texts = [index_text(d, p) for d, dc in zip(new_docs, new_chunks) for p in dc.passages]
            vectors = self._embed(texts, progress)
            seconds["embed"] = time.perf_counter() - t0

            docs_map = {k: v for k, v in st.docs.items() if k not in batch_ids}
            chunks_map = {k: v for k, v in st.chunks.items() if k not in batch_ids}
            hashes = {k: v for k, v in st.hashes.items() if k not in batch_ids}
            for d, dc in zip(new_docs, new_chunks):
                docs_map[d.id] = d
                chunks_map[d.id] = dc
                hashes[d.id] = content_hash(d.text)
            state = self._derive(st, docs_map, chunks_map, hashes, removed=set(replaced),
                                 added=list(zip(new_docs, new_chunks)), new_vectors=vectors,
                                 progress=progress, seconds=seconds)
            self._commit(state, progress, seconds)
            return IngestStats(
                added=tuple(d.id for d in new_docs),
                skipped=tuple(skipped),
                replaced=tuple(replaced),
                documents=len(new_docs),
                sections=sum(len(c.sections) for c in new_chunks),
                passages=sum(len(c.passages) for c in new_chunks),
                sentences=sum(len(c.sentences) for c in new_chunks),
                tokens=sum(self._doc_tokens(c) for c in new_chunks),
                seconds=seconds,
                version=state.version,
                failed=tuple(failed),
            )

    def remove_document(self, doc_id: str) -> None:
        """Remove one document and its chunks from every index (others are not re-embedded)."""
        with self._write_lock():
            st = self._state
            if doc_id not in st.docs:
                raise self._doc_not_found(doc_id)
            docs_map = {k: v for k, v in st.docs.items() if k != doc_id}
            chunks_map = {k: v for k, v in st.chunks.items() if k != doc_id}
            hashes = {k: v for k, v in st.hashes.items() if k != doc_id}
            seconds: dict[str, float] = {}
            state = self._derive(st, docs_map, chunks_map, hashes, removed={doc_id}, added=[],
                                 new_vectors=np.zeros((0, self.config.embedder_dim), dtype=np.float32),
                                 progress=None, seconds=seconds)
            self._commit(state, None, seconds)

    def refresh(self) -> bool:
        """Reload from disk if another process committed a newer version; True if it did."""
        with self._lock:
            current = _read_current(self.path)
            if current is None or current == self._state.version_dir:
                return False
            self._state = _load_state(self.path, current, self.config)
            return True

    # --- internals --------------------------------------------------------------------
    def _doc_not_found(self, doc_id: str) -> DocumentNotFound:
        return DocumentNotFound(
            f"document {doc_id!r} is not in collection {self.name!r}; list them with "
            f"`ctxroute docs list --collection {self.name}`",
            doc_id=doc_id, collection=self.name,
        )

    def _doc_tokens(self, dc: DocumentChunks) -> int:
        if dc.document.n_tokens:
            return int(dc.document.n_tokens)
        return sum(int(s.n_tokens) for s in dc.sentences)

    @contextlib.contextmanager
    def _write_lock(self) -> Iterator[None]:
        with self._lock:
            if not self.path.is_dir():
                raise CollectionNotFound(self.name)
            with (self.path / ".lock").open("a+") as fh:
                fcntl.flock(fh, fcntl.LOCK_EX)
                try:
                    if not self.path.is_dir() or _read_current(self.path) is None:
                        raise CollectionNotFound(self.name)
                    self.refresh()  # another process may have committed since we loaded
                    yield
                finally:
                    fcntl.flock(fh, fcntl.LOCK_UN)

    def _embed(self, texts: Sequence[str], progress: Progress | None) -> np.ndarray:
        dim = self.config.embedder_dim
        parts: list[np.ndarray] = []
        for start in range(0, len(texts), EMBED_BATCH):
            batch = texts[start : start + EMBED_BATCH]
            vec = np.asarray(self.embedder.embed(batch), dtype=np.float32)
            if vec.shape != (len(batch), dim):
                raise ManifestMismatch(
                    f"embedder {self.embedder.name!r} returned shape {vec.shape}, collection {self.name!r} "
                    f"expects (n, {dim}); use the embedder the collection was created with",
                )
            parts.append(vec)
            if progress:
                progress("embed", min(start + EMBED_BATCH, len(texts)), len(texts))
        return np.concatenate(parts) if parts else np.zeros((0, dim), dtype=np.float32)

    def _derive(
        self,
        st: _State,
        docs_map: dict[str, Document],
        chunks_map: dict[str, DocumentChunks],
        hashes: dict[str, str],
        *,
        removed: set[str],
        added: list[tuple[Document, DocumentChunks]],
        new_vectors: np.ndarray,
        progress: Progress | None,
        seconds: dict[str, float],
    ) -> _State:
        """The next state: old passages/vectors minus ``removed`` docs, plus ``added`` ones."""
        keep = [i for i, p in enumerate(st.passages) if p.doc_id not in removed]
        passages = [st.passages[i] for i in keep] + [p for _, dc in added for p in dc.passages]

        t0 = time.perf_counter()
        sparse = SparseIndex(self.config.sparse).build([index_text(docs_map[p.doc_id], p) for p in passages])
        seconds["sparse"] = time.perf_counter() - t0
        if progress:
            progress("sparse", 1, 1)

        t0 = time.perf_counter()
        dense = DenseIndex(self.config.embedder_dim, self.config.hnsw_threshold)
        dense.add(np.concatenate([st.dense.vectors[keep], new_vectors]))
        seconds["dense"] = time.perf_counter() - t0
        if progress:
            progress("dense", 1, 1)

        t0 = time.perf_counter()
        graph = GraphIndex(st.graph.config, st.graph.graph.copy())
        for doc_id in removed:
            if doc_id in graph.doc_ids:
                graph.remove(doc_id)
        for i, (d, dc) in enumerate(added, start=1):
            graph.add(d, dc)
            if progress:
                progress("graph", i, len(added))
        seconds["graph"] = time.perf_counter() - t0

        now = _now()
        return _State(docs=docs_map, chunks=chunks_map, hashes=hashes, passages=passages, sparse=sparse,
                      dense=dense, graph=graph, version=_version_of(self.config, hashes), version_dir="",
                      created_at=st.created_at, updated_at=now)

    def _commit(self, state: _State, progress: Progress | None, seconds: dict[str, float]) -> None:
        t0 = time.perf_counter()
        state.version_dir = _write_version(self.path, self.name, self.config, state)
        seconds["save"] = time.perf_counter() - t0
        if progress:
            progress("save", 1, 1)
        self._state = state


# --- disk -----------------------------------------------------------------------------
def _read_current(path: Path) -> str | None:
    try:
        value = (path / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return value or None


def _manifest(name: str, config: CollectionConfig, st: _State) -> dict[str, Any]:
    docs = {}
    for doc_id, doc in st.docs.items():
        dc = st.chunks[doc_id]
        docs[doc_id] = {"hash": st.hashes[doc_id], "title": doc.title, "source": doc.source, "format": doc.format,
                        "chars": len(doc.text), "tokens": int(dc.document.n_tokens),
                        "sections": len(dc.sections), "passages": len(dc.passages), "sentences": len(dc.sentences)}
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": st.version,
        "created_at": st.created_at,
        "updated_at": st.updated_at,
        "config": config.to_dict(),
        "embedder": {"name": config.embedder_name, "dim": config.embedder_dim},
        "counts": {"documents": len(st.docs), "passages": len(st.passages),
                   "tokens": sum(d["tokens"] for d in docs.values())},
        "documents": docs,
    }


def _write_version(path: Path, name: str, config: CollectionConfig, st: _State) -> str:
    """Write ``st`` as a new version directory and make it live atomically; returns its name."""
    versions = path / "versions"
    versions.mkdir(parents=True, exist_ok=True)
    numbers = [int(p.name[1:]) for p in versions.iterdir() if re.fullmatch(r"v\d+", p.name)]
    vname = f"v{max(numbers, default=0) + 1:06d}"
    tmp = versions / f".tmp-{vname}-{os.getpid()}-{threading.get_ident()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir()
    try:
        _write_jsonl(tmp / "documents.jsonl", (_doc_to_json(d) for d in st.docs.values()))
        _write_jsonl(tmp / "chunks.jsonl", (_chunks_to_json(st.chunks[d]) for d in st.docs))
        st.sparse.save(tmp / "sparse")
        st.dense.save(tmp)
        st.graph.save(tmp)
        _write_json(tmp / "manifest.json", _manifest(name, config, st))
        _before_commit(tmp)
        _fsync_dir(tmp)
        os.rename(tmp, versions / vname)
        _fsync_dir(versions)
        pointer = path / f".CURRENT.{os.getpid()}.tmp"
        with pointer.open("w", encoding="utf-8") as fh:
            fh.write(vname + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer, path / "CURRENT")
        _fsync_dir(path)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    _prune(path, vname)
    return vname


def _prune(path: Path, live: str) -> None:
    """Drop old versions (keeping the live one and its predecessor) and stale temp dirs."""
    versions = path / "versions"
    done = sorted((p for p in versions.iterdir() if re.fullmatch(r"v\d+", p.name)), key=lambda p: p.name)
    for p in done[:-_KEEP_VERSIONS]:
        if p.name != live:
            shutil.rmtree(p, ignore_errors=True)
    for p in versions.iterdir():
        if p.name.startswith(".tmp-"):  # writers hold the lock, so these are left by crashed ones
            shutil.rmtree(p, ignore_errors=True)


def _read_manifest(path: Path, vname: str) -> dict[str, Any]:
    mpath = path / "versions" / vname / "manifest.json"
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestMismatch(f"cannot read {mpath}: {exc}; the collection is damaged, re-ingest it") from exc
    found = manifest.get("format_version")
    if found != FORMAT_VERSION:
        raise ManifestMismatch(
            f"collection at {path} has format version {found!r} but this code reads {FORMAT_VERSION}; "
            f"delete it with `ctxroute collections rm {path.name}` and ingest the documents again",
            found=found, expected=FORMAT_VERSION,
        )
    return manifest


def _load_state(path: Path, vname: str, config: CollectionConfig) -> _State:
    manifest = _read_manifest(path, vname)
    vdir = path / "versions" / vname
    docs = {d.id: d for d in (_doc_from_json(r) for r in _read_jsonl(vdir / "documents.jsonl"))}
    chunks = {c.document.doc_id: c for c in (_chunks_from_json(r) for r in _read_jsonl(vdir / "chunks.jsonl"))}
    hashes = {doc_id: str(meta["hash"]) for doc_id, meta in manifest["documents"].items()}
    if set(docs) != set(chunks) or set(docs) != set(hashes):
        raise ManifestMismatch(f"{vdir}: documents, chunks and manifest disagree; re-ingest the collection")
    passages = [p for d in docs for p in chunks[d].passages]
    sparse = SparseIndex.load(vdir / "sparse", config.sparse)
    dense = DenseIndex.load(vdir, dim=config.embedder_dim)
    graph = GraphIndex.load(vdir)
    if len(sparse) != len(passages) or len(dense) != len(passages):
        raise ManifestMismatch(
            f"{vdir}: {len(passages)} passages but sparse holds {len(sparse)} and dense {len(dense)}; "
            "re-ingest the collection"
        )
    return _State(docs=docs, chunks=chunks, hashes=hashes, passages=passages, sparse=sparse, dense=dense,
                  graph=graph, version=str(manifest["version"]), version_dir=vname,
                  created_at=str(manifest.get("created_at", "")), updated_at=str(manifest.get("updated_at", "")))


def _check_embedder(name: str, config: CollectionConfig, embedder: Any) -> None:
    if str(embedder.name) != config.embedder_name or int(embedder.dim) != config.embedder_dim:
        raise ManifestMismatch(
            f"collection {name!r} was embedded with {config.embedder_name!r} (dim {config.embedder_dim}) but the "
            f"configured embedder is {embedder.name!r} (dim {embedder.dim}); configure {config.embedder_name!r} "
            f"or re-ingest into a new collection",
            stored=config.embedder_name, configured=str(embedder.name),
        )


class CollectionStore:
    """Directory of collections: ``<root>/<name>/`` each."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @staticmethod
    def validate_name(name: str) -> str:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise InputError(
                f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit",
                name=name,
            )
        return name

    def _path(self, name: str) -> Path:
        return self.root / self.validate_name(name)

    def exists(self, name: str) -> bool:
        return _read_current(self._path(name)) is not None

    def create(self, name: str, config: CollectionConfig | None = None, embedder: Any = None) -> Collection:
        """A new, empty collection. ``embedder`` defaults to the one ``config`` names."""
        path = self._path(name)
        if embedder is not None and config is None:
            config = CollectionConfig.for_embedder(embedder)
        config = config or CollectionConfig()
        embedder = embedder if embedder is not None else make_embedder(config.embedder_spec or config.embedder_name)
        _check_embedder(name, config, embedder)
        path.mkdir(parents=True, exist_ok=True)
        with (path / ".lock").open("a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                if _read_current(path) is not None:
                    raise Conflict(
                        f"collection {name!r} already exists; open it, or delete it with "
                        f"`ctxroute collections rm {name}`",
                        name=name,
                    )
                now = _now()
                state = _State(docs={}, chunks={}, hashes={}, passages=[], sparse=SparseIndex(config.sparse).build([]),
                               dense=DenseIndex(config.embedder_dim, config.hnsw_threshold), graph=GraphIndex(),
                               version=_version_of(config, {}), version_dir="", created_at=now, updated_at=now)
                state.version_dir = _write_version(path, name, config, state)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        return Collection(path, name, config, embedder, state)

    def open(self, name: str, embedder: Any = None) -> Collection:
        """Load a collection. Raises CollectionNotFound, or ManifestMismatch when the stored
        format or embedder does not match the code or ``embedder``."""
        path = self._path(name)
        vname = _read_current(path)
        if vname is None:
            raise CollectionNotFound(name)
        manifest = _read_manifest(path, vname)
        config = CollectionConfig.from_dict(manifest["config"])
        if embedder is None:
            embedder = make_embedder(config.embedder_spec or config.embedder_name)
        _check_embedder(name, config, embedder)
        try:
            state = _load_state(path, vname, config)
        except FileNotFoundError:
            # a writer pruned this version while we read it: the pointer has moved on
            vname = _read_current(path) or vname
            state = _load_state(path, vname, config)
        return Collection(path, name, config, embedder, state)

    def open_or_create(self, name: str, config: CollectionConfig, embedder: Any = None) -> Collection:
        try:
            return self.open(name, embedder)
        except CollectionNotFound:
            try:
                return self.create(name, config, embedder)
            except Conflict:  # created concurrently
                return self.open(name, embedder)

    def list(self) -> list[CollectionInfo]:
        out: list[CollectionInfo] = []
        if not self.root.is_dir():
            return out
        for p in sorted(self.root.iterdir()):
            if not p.is_dir() or not NAME_PATTERN.fullmatch(p.name):
                continue
            vname = _read_current(p)
            if vname is None:
                continue
            try:
                m = _read_manifest(p, vname)
            except ManifestMismatch:
                continue
            counts = m.get("counts", {})
            out.append(CollectionInfo(
                name=p.name, version=str(m.get("version", "")), n_docs=int(counts.get("documents", 0)),
                n_passages=int(counts.get("passages", 0)), total_tokens=int(counts.get("tokens", 0)),
                embedder_name=str(m["embedder"]["name"]), embedder_dim=int(m["embedder"]["dim"]),
                updated_at=str(m.get("updated_at", "")), path=str(p),
            ))
        return out

    def manifest(self, name: str) -> dict[str, Any]:
        """The live manifest of a collection (no indexes loaded)."""
        path = self._path(name)
        vname = _read_current(path)
        if vname is None:
            raise CollectionNotFound(name)
        return _read_manifest(path, vname)

    def delete(self, name: str) -> None:
        path = self._path(name)
        if _read_current(path) is None:
            raise CollectionNotFound(name)
        with (path / ".lock").open("a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                # drop the pointer first: a crash mid-delete leaves no half-readable collection
                (path / "CURRENT").unlink(missing_ok=True)
                shutil.rmtree(path / "versions", ignore_errors=True)
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)
        shutil.rmtree(path, ignore_errors=True)


__all__ = [
    "Collection", "CollectionConfig", "CollectionInfo", "CollectionStats", "CollectionStore", "IngestStats",
    "FORMAT_VERSION", "RETRIEVERS", "content_hash", "index_text",
]
