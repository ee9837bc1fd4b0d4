"""Persisted collections: documents, their chunk hierarchy and the sparse, dense and graph
indexes, versioned on disk with atomic commits (layout in ``persist.py``).

Adding or removing documents never re-embeds, re-tokenises or rewrites the other documents:
a write adds one segment to each index and marks removed rows dead (``derive.next_state``).
Configuration types live in ``collection_config.py``, the disk format in ``persist.py``,
building retrievers and scoped search in ``collection_search.py`` and ``CollectionStore`` in
``store.py``; all are importable from here as before.
"""
from __future__ import annotations

import contextlib
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping, Sequence

import numpy as np

from ctxroute.errors import DocumentNotFound, InputError, NotFound
from ctxroute.retrievers.backend import Delta, StorageBackend
from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.chunking import DocumentChunks, chunk_document
from ctxroute.retrievers.compaction import compacted
from ctxroute.retrievers.collection_config import (
    DEFAULT_FUSION_WEIGHTS, DEFAULT_RRF_K, RETRIEVERS, CollectionConfig, CollectionInfo, CollectionStats,
    IngestStats, content_hash, index_text,
)
from ctxroute.retrievers.collection_search import build_retriever, check_retriever_name, search_in_scope
from ctxroute.retrievers.derive import next_state
from ctxroute.retrievers.embedders import CachedEmbedder, query_embedder
from ctxroute.retrievers.ingest_embed import embed_passages
from ctxroute.retrievers.persist import FORMAT_VERSION, _State
from ctxroute.types import Chunk, Document, ScoredChunk

EMBED_BATCH = 64
SENTENCE_CACHE_ENTRIES = 65_536  # ~100 MB of MiniLM sentence vectors at most

Progress = Callable[[str, int, int], None]


class Collection:
    """A named, persisted set of documents with sparse, dense and graph indexes.

    Get one from ``CollectionStore.create``/``open``. Reads (search, documents, chunks) see a
    consistent snapshot; writes (add_documents, remove_document) commit a new version on disk
    first and then swap it in, so a failed write changes nothing.
    """

    def __init__(self, backend: StorageBackend, name: str, config: CollectionConfig, embedder: Any,
                 state: _State) -> None:
        self.backend = backend
        self.name = name
        self.config = config
        self.embedder = embedder
        # questions: LRU-cached, torch-free (ONNX) where the model allows; vectors agree with
        # the ingestion embedder's (cosine ~0.9996 for MiniLM, benchmarks/bench_retrieval.py)
        self.query_embedder = query_embedder(embedder)
        self._sentence_embedder = CachedEmbedder(getattr(self.query_embedder, "inner", self.query_embedder),
                                                 max_entries=SENTENCE_CACHE_ENTRIES)
        self._state = state
        self._lock = threading.RLock()

    # --- reading ----------------------------------------------------------------------
    @property
    def path(self) -> Path:
        """Where the collection lives (a directory for the files backend)."""
        return Path(self.backend.location(self.name))

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

    def sentence_vectors(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of sentence texts for readers that score sentences against a question
        (``query_embedder.embed([question])``): the query-side encoder (torch-free where
        available), each distinct text embedded once and kept in a bounded LRU cache, so a
        passage read again costs no embedding. Not stored on disk: storing the vectors of
        every sentence would take ~3x the text they embed."""
        return self._sentence_embedder.embed(texts)

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
                              self.backend.location(self.name))

    def retriever(self, name: str = "hybrid") -> Retriever:
        """``bm25``, ``dense``, ``graph`` (PageRank seeded by bm25+dense) or ``hybrid`` (weighted RRF)."""
        check_retriever_name(name)
        return self._retriever_for(self._state, name)

    def _retriever_for(self, st: _State, name: str) -> Retriever:
        return build_retriever(st, name, self.config, self.query_embedder)

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
        check_retriever_name(retriever)
        return search_in_scope(self._retriever_for(st, retriever), st, query, k, scope)

    # --- writing ----------------------------------------------------------------------
    def add_documents(self, docs: Iterable[Document], progress: Progress | None = None, *,
                      chunked: Mapping[str, DocumentChunks] | None = None) -> IngestStats:
        """Chunk, index and persist ``docs``. A document whose text is already stored is
        skipped; one whose id exists with different text replaces the old one. ``chunked``
        (document id -> hierarchy made with this collection's chunking config, e.g. by Ray
        actors) spares chunking a document again; one whose span does not cover its
        document's text is ignored and the document chunked here."""
        docs = list(docs)
        chunked = chunked or {}
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
                    dc = chunked.get(d.id)
                    if dc is None or dc.document.doc_id != d.id or (dc.document.start, dc.document.end) != (0, len(d.text)):
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
            vectors = self._embed(texts, progress, st)
            seconds["embed"] = time.perf_counter() - t0

            docs_map = {k: v for k, v in st.docs.items() if k not in batch_ids}
            chunks_map = {k: v for k, v in st.chunks.items() if k not in batch_ids}
            hashes = {k: v for k, v in st.hashes.items() if k not in batch_ids}
            for d, dc in zip(new_docs, new_chunks):
                docs_map[d.id] = d
                chunks_map[d.id] = dc
                hashes[d.id] = content_hash(d.text)
            state = next_state(self.config, st, docs_map, chunks_map, hashes, removed=set(replaced),
                               added=list(zip(new_docs, new_chunks)), new_vectors=vectors,
                               progress=progress, seconds=seconds)
            state.embedding = {
                "dtypes": sorted(set(st.embedding.get("dtypes", [])) | {str(getattr(self.embedder, "dtype", "float32"))}),
                "long_text": str(getattr(self.embedder, "long_text", st.embedding.get("long_text", "n/a"))),
            }
            self._commit(st, state, Delta(tuple(zip(new_docs, new_chunks)), frozenset(replaced), vectors),
                         progress, seconds)
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
            state = next_state(self.config, st, docs_map, chunks_map, hashes, removed={doc_id}, added=[],
                               new_vectors=np.zeros((0, self.config.embedder_dim), dtype=np.float32),
                               progress=None, seconds=seconds)
            state.embedding = dict(st.embedding)
            self._commit(st, state, Delta((), frozenset({doc_id}), np.zeros((0, self.config.embedder_dim), np.float32)),
                         None, seconds)

    def refresh(self) -> bool:
        """Reload if another process committed a newer version; True if it did."""
        with self._lock:
            current = self.backend.current(self.name)
            if current is None or current == self._state.version_dir:
                return False
            load_since = getattr(self.backend, "load_since", None)  # files: reads only the new segments
            self._state = (load_since(self.name, self.config, self._state) if load_since is not None
                           else self.backend.load(self.name, self.config))
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
        with self._lock, self.backend.write_lock(self.name):
            self.refresh()  # another process may have committed since we loaded
            yield

    def _embed(self, texts: Sequence[str], progress: Progress | None, st: _State | None = None) -> np.ndarray:
        return embed_passages(self.embedder, texts, self.config.embedder_dim, self.name, st, progress,
                              batch=EMBED_BATCH * 4)

    def compact(self) -> None:
        """Fold every segment into one without dead rows (what a fresh ingest of the live
        documents gives: same search results, same version) and commit it."""
        with self._write_lock():
            st = self._state
            merged = compacted(st)
            if merged is st:
                return
            merged.embedding = dict(st.embedding)
            if getattr(self.backend, "compact", None) is None:  # no segments on record (postgres):
                merged.version_dir = st.version_dir  # only this process's indexes fold
                self._state = merged
                return
            empty = Delta((), frozenset(), np.zeros((0, self.config.embedder_dim), np.float32))
            self._commit(st, merged, empty, None, {})

    def _commit(self, base: _State, state: _State, delta: Delta, progress: Progress | None,
                seconds: dict[str, float]) -> None:
        t0 = time.perf_counter()
        state = self.backend.commit(self.name, self.config, base, state, delta)
        seconds["save"] = time.perf_counter() - t0
        if progress:
            progress("save", 1, 1)
        self._state = state


def __getattr__(name: str) -> Any:  # PEP 562: CollectionStore lives in store.py, which imports this module
    if name in ("CollectionStore", "NAME_PATTERN"):
        from ctxroute.retrievers import store

        return getattr(store, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "Collection", "CollectionConfig", "CollectionInfo", "CollectionStats", "CollectionStore", "IngestStats",
    "FORMAT_VERSION", "RETRIEVERS", "DEFAULT_FUSION_WEIGHTS", "DEFAULT_RRF_K", "content_hash", "index_text",
]
