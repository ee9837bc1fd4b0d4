"""On-disk layout of a collection: (de)serialisation, atomic commits, loading.

Layout of one collection (``<root>/<name>/``)::

    CURRENT                  name of the live version, replaced atomically
    .lock                    flock'ed by writers (processes and threads)
    versions/v000007/
        manifest.json        format version, configs, embedder, counts, and the version's
                             segments in order, each with its dead (removed or replaced)
                             document ids: the tombstones (no per-document bulk)
    segments/s000003/        immutable once written; one per write (the documents it added)
        documents.jsonl.gz   one Document per line (text and content hash included), gzip'ed
        chunks.npz/.json     the chunk hierarchy as integer columns + a string table (codec.py)
        sparse/              BM25 term counts (tf.npz, terms.json; sparse.py), no pickle
        vectors.npy          the passage vectors, float16 (the only copy; the FAISS flat index is
                             rebuilt from them at load) + dense.json; a segment above the HNSW
                             threshold keeps them in dense.faiss instead
        graph.json/.npz      key-term vocabulary + passage -> term CSR (graph.py)

A write adds one segment (its new documents; nothing when it only removes) and a new small
manifest that lists the previous version's segments, the new one, and the tombstones: its
cost is proportional to the documents it adds, not to the collection. Compaction (automatic
after a write when there are more than ``segments.MAX_SEGMENTS`` segments or more than
``segments.MAX_DEAD_FRACTION`` dead rows, or explicit: ``Collection.compact``) writes the
merged segment(s) the same way; segments no kept version lists are deleted afterwards.

A commit writes its segment(s) into ``segments/.tmp-*`` and its manifest into
``versions/.tmp-*``, renames both into place and then replaces ``CURRENT``; a crash at any
point leaves the previous version loadable (and the next writer removes the leftovers).

Format 1 (JSONL chunks, float32 vectors stored twice, networkx JSON graph) is refused with
an error naming both versions and the fix (re-ingest). Format 2 (one directory per version
holding every document) is migrated on open (``persist_extend.migrate``): it becomes one
segment, its vectors, chunks and graph kept as they are, the BM25 counts rebuilt from the
texts (nothing re-embedded). A process whose version another writer extended reads only
the new segments (``persist_extend.extend_state``).
"""
from __future__ import annotations

from collections import Counter

import contextlib
import hashlib
import json
import os
import re
import shutil
import threading
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.retrievers.codec import DOCUMENTS_FILE, read_chunks, read_documents, write_chunks, write_documents
from ctxroute.retrievers.collection_config import CollectionConfig, content_hash, index_text
from ctxroute.retrievers.dense import DenseIndex
from ctxroute.retrievers.graph import GraphIndex
from ctxroute.retrievers.segments import SegmentInfo
from ctxroute.retrievers.sparse import SparseIndex
from ctxroute.types import Chunk, Document

FORMAT_VERSION = 3
MIGRATES_FROM = 2  # a format-2 collection is rewritten as format 3 when opened
_KEEP_VERSIONS = 2  # the live one and its predecessor (a reader may still be loading it)
MANIFEST_FILE = "manifest.json"


def _before_commit(tmp_dir: Path) -> None:
    """Test seam: called when a new version (its manifest in ``tmp_dir``, its new segments in
    ``segments/``) is fully written, just before it goes live."""


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _write_json(path: Path, data: Any) -> None:
    path.write_text(json.dumps(data, ensure_ascii=False, indent=1), encoding="utf-8")


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
    # how the vectors were made: {"dtypes": [...every dtype that embedded some], "long_text": policy}
    embedding: dict[str, Any] = field(default_factory=dict)
    # the segments the index rows sit in (compaction.segments_of); empty: one, or none
    segments: list[SegmentInfo] = field(default_factory=list)
    # lazy lookups, passed on (updated) by writers when they can be: content hash of a
    # passage's index text -> passage id (whose vector a new passage of that text reuses),
    # and passage id -> position in ``passages``
    text_ids: dict[str, str] | None = None
    position_by_id: dict[str, int] | None = None

    def __post_init__(self) -> None:
        if not self.passage_by_id and self.passages:  # writers pass it on, updated
            self.passage_by_id = {p.id: p for p in self.passages}

    def passage_with_text(self, text_hash: str) -> int | None:
        """Position of a passage whose index text has ``text_hash``, or None."""
        if self.text_ids is None:
            ids: dict[str, str] = {}
            for p in self.passages:
                ids.setdefault(content_hash(index_text(self.docs[p.doc_id], p)), p.id)
            self.text_ids = ids
        pid = self.text_ids.get(text_hash)
        if pid is None or pid not in self.passage_by_id:
            return None
        if self.position_by_id is None:
            self.position_by_id = {p.id: i for i, p in enumerate(self.passages)}
        return self.position_by_id.get(pid)


def _version_of(config: CollectionConfig, hashes: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    h.update(b"ctxroute-collection/2\n")  # the content hash, unchanged by the format-3 layout
    h.update(json.dumps(config.to_dict(), sort_keys=True).encode())
    for doc_id, digest in sorted(hashes.items()):
        h.update(f"\n{doc_id}:{digest}".encode())
    return h.hexdigest()[:16]


# --- disk -----------------------------------------------------------------------------
def _read_current(path: Path) -> str | None:
    try:
        value = (path / "CURRENT").read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return None
    return value or None


def document_table(docs: Iterable[Document], chunks: Mapping[str, DocumentChunks],
                   hashes: Mapping[str, str]) -> dict[str, dict[str, Any]]:
    """Per-document metadata (hash, title, counts): derived from the stored documents and
    chunks on demand, no longer kept in ``manifest.json``."""
    out = {}
    for doc in docs:
        dc = chunks[doc.id]
        out[doc.id] = {"hash": hashes[doc.id], "title": doc.title, "source": doc.source, "format": doc.format,
                       "extractor": doc.metadata.get("extractor", ""),
                       "chars": len(doc.text), "tokens": int(dc.document.n_tokens),
                       "sections": len(dc.sections), "passages": len(dc.passages), "sentences": len(dc.sentences)}
    return out


def _manifest(name: str, config: CollectionConfig, st: _State, segments: Sequence[SegmentInfo]) -> dict[str, Any]:
    return {
        "format_version": FORMAT_VERSION,
        "name": name,
        "version": st.version,
        "created_at": st.created_at,
        "updated_at": st.updated_at,
        "config": config.to_dict(),
        "embedder": {"name": config.embedder_name, "dim": config.embedder_dim},
        # which PDF extractor (name and version) produced how many documents' text
        "extractors": dict(Counter(str(d.metadata["extractor"]) for d in st.docs.values() if "extractor" in d.metadata)),
        "dense": {"dtype": st.dense.storage_dtype, "kind": st.dense.kind},
        "embedding": dict(st.embedding),
        "counts": {"documents": len(st.docs), "passages": len(st.passages),
                   "tokens": sum(int(st.chunks[d].document.n_tokens) for d in st.docs)},
        "segments": [{"name": s.name, "documents": len(s.doc_ids), "passages": s.n_rows, "dead": sorted(s.dead)}
                     for s in segments],
    }


def _next_number(directory: Path, letter: str) -> int:
    found = [int(m.group(1)) for p in directory.iterdir()
             if (m := re.fullmatch(rf"(?:\.tmp-)?{letter}(\d+)(?:-.*)?", p.name))]
    return max(found, default=0) + 1


def _write_segment(directory: Path, st: _State, index: int, info: SegmentInfo) -> None:
    """Segment ``index`` of ``st`` (every document live) into ``directory``."""
    directory.mkdir()
    write_documents(directory / DOCUMENTS_FILE, [st.docs[d] for d in info.doc_ids], st.hashes)
    write_chunks(directory, [st.chunks[d] for d in info.doc_ids])
    st.sparse.part(index).save(directory / "sparse")
    st.dense.part(index).save(directory)
    st.graph.subset(info.doc_ids).save(directory)
    _fsync_dir(directory)


def _commit(path: Path, name: str, config: CollectionConfig, st: _State) -> _State:
    """Write the segments of ``st`` that have no name yet and a manifest listing all of
    them, then make it live atomically; returns ``st`` with names and ``version_dir`` set."""
    from ctxroute.retrievers.compaction import segments_of  # compaction imports this module

    segments = segments_of(st, with_dense=True)
    if segments is None:
        raise ManifestMismatch(f"collection {name!r}: the state's segments do not match its indexes")
    versions, segdir = path / "versions", path / "segments"
    versions.mkdir(parents=True, exist_ok=True)
    segdir.mkdir(parents=True, exist_ok=True)
    suffix = f"{os.getpid()}-{threading.get_ident()}"
    written: list[Path] = []
    tmp_version: Path | None = None
    live = False
    try:
        number = _next_number(segdir, "s")
        named = []
        for i, info in enumerate(segments):
            if not info.name:
                sname = f"s{number:06d}"
                number += 1
                tmp = segdir / f".tmp-{sname}-{suffix}"
                shutil.rmtree(tmp, ignore_errors=True)
                written.append(tmp)
                _write_segment(tmp, st, i, info)
                os.rename(tmp, segdir / sname)
                written[-1] = segdir / sname
                info = SegmentInfo(info.doc_ids, info.passages, info.dead, sname)
            named.append(info)
        _fsync_dir(segdir)
        vname = f"v{_next_number(versions, 'v'):06d}"
        tmp_version = versions / f".tmp-{vname}-{suffix}"
        shutil.rmtree(tmp_version, ignore_errors=True)
        tmp_version.mkdir()
        _write_json(tmp_version / MANIFEST_FILE, _manifest(name, config, st, named))
        _before_commit(tmp_version)
        _fsync_dir(tmp_version)
        os.rename(tmp_version, versions / vname)
        tmp_version = versions / vname
        _fsync_dir(versions)
        pointer = path / f".CURRENT.{os.getpid()}.tmp"
        with pointer.open("w", encoding="utf-8") as fh:
            fh.write(vname + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(pointer, path / "CURRENT")
        live = True
        _fsync_dir(path)
    except BaseException:
        if not live:  # nothing of this commit is referenced: take it all back
            for p in [*written, *([tmp_version] if tmp_version else [])]:
                shutil.rmtree(p, ignore_errors=True)
        raise
    _prune(path, vname)
    st.segments, st.version_dir = named, vname
    return st


def _segment_names(manifest_path: Path) -> set[str]:
    try:
        manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return set()
    return {str(s["name"]) for s in manifest.get("segments", [])}


def _prune(path: Path, live: str) -> None:
    """Drop old versions (keeping the live one and its predecessor), segments none of the kept
    versions lists, and stale temp dirs (writers hold the lock: crashed ones left them)."""
    versions, segdir = path / "versions", path / "segments"
    done = sorted((p for p in versions.iterdir() if re.fullmatch(r"v\d+", p.name)), key=lambda p: p.name)
    kept = [p for p in done[-_KEEP_VERSIONS:]] + [versions / live]
    for p in done[:-_KEEP_VERSIONS]:
        if p.name != live:
            shutil.rmtree(p, ignore_errors=True)
    for p in versions.iterdir():
        if p.name.startswith(".tmp-"):
            shutil.rmtree(p, ignore_errors=True)
    if not segdir.is_dir():
        return
    used = set().union(*(_segment_names(p / MANIFEST_FILE) for p in kept))
    for p in segdir.iterdir():
        if p.name.startswith(".tmp-") or (re.fullmatch(r"s\d+", p.name) and p.name not in used):
            shutil.rmtree(p, ignore_errors=True)


def _read_manifest(path: Path, vname: str, accept: Sequence[int] = (FORMAT_VERSION,)) -> dict[str, Any]:
    mpath = path / "versions" / vname / MANIFEST_FILE
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ManifestMismatch(f"cannot read {mpath}: {exc}; the collection is damaged, re-ingest it") from exc
    found = manifest.get("format_version")
    if found not in accept:
        raise ManifestMismatch(
            f"collection at {path} has format version {found!r} but this code reads {FORMAT_VERSION}"
            f"{' (format 1 was written before the compact layout)' if found == 1 else ''}; "
            f"delete it with `ctxroute collections rm {path.name}` and ingest the documents again",
            found=found, expected=FORMAT_VERSION,
        )
    return manifest


def _read_segment_docs(sdir: Path, entry: Mapping[str, Any]) -> tuple[SegmentInfo, list[tuple[Document, str]],
                                                                      dict[str, DocumentChunks]]:
    rows = list(read_documents(sdir / DOCUMENTS_FILE))
    chunks = read_chunks(sdir)
    ids = tuple(d.id for d, _ in rows)
    if set(ids) != set(chunks) or len(ids) != int(entry.get("documents", len(ids))):
        raise ManifestMismatch(f"{sdir}: documents, chunks and manifest disagree; re-ingest the collection")
    info = SegmentInfo(ids, tuple(len(chunks[d].passages) for d in ids), frozenset(entry.get("dead", ())),
                       str(entry["name"]))
    return info, rows, chunks


def read_live_documents(path: Path, manifest: Mapping[str, Any]) -> tuple[list[Document], dict[str, DocumentChunks],
                                                                        dict[str, str]]:
    """The live documents of a version (segment order), their chunks and content hashes."""
    docs, chunks, hashes = [], {}, {}
    for entry in manifest["segments"]:
        info, rows, seg_chunks = _read_segment_docs(path / "segments" / str(entry["name"]), entry)
        for doc, digest in rows:
            if doc.id not in info.dead:
                docs.append(doc)
                chunks[doc.id], hashes[doc.id] = seg_chunks[doc.id], digest
    return docs, chunks, hashes


def _load_state(path: Path, vname: str, config: CollectionConfig) -> _State:
    manifest = _read_manifest(path, vname)
    docs: dict[str, Document] = {}
    hashes: dict[str, str] = {}
    chunks: dict[str, DocumentChunks] = {}
    infos, sparse_parts, dense_parts, graph_parts = [], [], [], []
    for entry in manifest["segments"]:
        sdir = path / "segments" / str(entry["name"])
        info, rows, seg_chunks = _read_segment_docs(sdir, entry)
        for doc, digest in rows:
            if doc.id in info.dead:
                continue
            if doc.id in docs:
                raise ManifestMismatch(f"{path}: document {doc.id!r} is live in two segments; re-ingest the collection")
            docs[doc.id], hashes[doc.id], chunks[doc.id] = doc, digest, seg_chunks[doc.id]
        sparse = SparseIndex.load(sdir / "sparse", config.sparse)
        dense = DenseIndex.load(sdir, dim=config.embedder_dim)
        if len(sparse) != info.n_rows or len(dense) != info.n_rows:
            raise ManifestMismatch(f"{sdir}: {info.n_rows} passages but sparse holds {len(sparse)} and dense "
                                   f"{len(dense)}; re-ingest the collection")
        infos.append(info)
        sparse_parts.append(sparse)
        dense_parts.append(dense)
        graph_parts.append(GraphIndex.load(sdir, seg_chunks).subset(info.live_docs()))
    passages = [p for d in docs for p in chunks[d].passages]
    dead = [i.dead_mask() for i in infos]
    return _State(embedding=dict(manifest.get("embedding", {})), segments=infos,
                  docs=docs, chunks=chunks, hashes=hashes, passages=passages,
                  sparse=SparseIndex.joined(sparse_parts, dead, config.sparse),
                  dense=DenseIndex.joined(dense_parts, dead, config.embedder_dim, config.hnsw_threshold),
                  graph=GraphIndex.joined(graph_parts), version=str(manifest["version"]), version_dir=vname,
                  created_at=str(manifest.get("created_at", "")), updated_at=str(manifest.get("updated_at", "")))


def _check_embedder(name: str, config: CollectionConfig, embedder: Any) -> None:
    if str(embedder.name) != config.embedder_name or int(embedder.dim) != config.embedder_dim:
        raise ManifestMismatch(
            f"collection {name!r} was embedded with {config.embedder_name!r} (dim {config.embedder_dim}) but the "
            f"configured embedder is {embedder.name!r} (dim {embedder.dim}); configure {config.embedder_name!r} "
            f"or re-ingest into a new collection",
            stored=config.embedder_name, configured=str(embedder.name),
        )

