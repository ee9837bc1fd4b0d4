"""On-disk layout of a collection: (de)serialisation, atomic version writes, loading.

Layout of one collection (``<root>/<name>/``)::

    CURRENT                  name of the live version directory, replaced atomically
    .lock                    flock'ed by writers (processes and threads)
    versions/v000007/
        manifest.json        format version, configs, embedder, dense dtype, counts (no per-document bulk)
        documents.jsonl.gz   one Document per line (text and content hash included), gzip'ed
        chunks.npz/.json     the chunk hierarchy as integer columns + a string table (codec.py)
        sparse/              bm25s arrays (np.save, allow_pickle=False) + JSON
        vectors.npy          the passage vectors, float16 (the only copy; the FAISS flat index is
                             rebuilt from them at load) + dense.json; above the HNSW threshold
                             dense.faiss holds them instead
        graph.json/.npz      key-term vocabulary + passage -> term CSR (graph.py)

Format 1 (JSONL chunks, float32 vectors stored twice, networkx JSON graph) is refused with
an error naming both versions and the fix (re-ingest).

A write builds a whole new version in ``versions/.tmp-*``, renames it into place and then
replaces ``CURRENT``; a crash at any point leaves the previous version loadable.
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
from typing import Any, Iterable, Mapping

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.retrievers.codec import DOCUMENTS_FILE, read_chunks, read_documents, write_chunks, write_documents
from ctxroute.retrievers.collection_config import CollectionConfig
from ctxroute.retrievers.dense import DenseIndex
from ctxroute.retrievers.graph import GraphIndex
from ctxroute.retrievers.sparse import SparseIndex
from ctxroute.types import Chunk, Document

FORMAT_VERSION = 2
_KEEP_VERSIONS = 2  # the live one and its predecessor (a reader may still be loading it)


def _before_commit(tmp_dir: Path) -> None:
    """Test seam: called when a new version is fully written, just before it goes live."""


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

    def __post_init__(self) -> None:
        self.passage_by_id = {p.id: p for p in self.passages}


def _version_of(config: CollectionConfig, hashes: Mapping[str, str]) -> str:
    h = hashlib.sha256()
    h.update(f"ctxroute-collection/{FORMAT_VERSION}\n".encode())
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


def _manifest(name: str, config: CollectionConfig, st: _State) -> dict[str, Any]:
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
        write_documents(tmp / DOCUMENTS_FILE, st.docs.values(), st.hashes)
        write_chunks(tmp, [st.chunks[d] for d in st.docs])
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
            f"collection at {path} has format version {found!r} but this code reads {FORMAT_VERSION}"
            f"{' (format 1 was written before the compact layout)' if found == 1 else ''}; "
            f"delete it with `ctxroute collections rm {path.name}` and ingest the documents again",
            found=found, expected=FORMAT_VERSION,
        )
    return manifest


def _load_state(path: Path, vname: str, config: CollectionConfig) -> _State:
    manifest = _read_manifest(path, vname)
    vdir = path / "versions" / vname
    docs: dict[str, Document] = {}
    hashes: dict[str, str] = {}
    for doc, digest in read_documents(vdir / DOCUMENTS_FILE):
        docs[doc.id] = doc
        hashes[doc.id] = digest
    chunks = read_chunks(vdir)
    if set(docs) != set(chunks) or set(docs) != set(hashes):
        raise ManifestMismatch(f"{vdir}: documents, chunks and manifest disagree; re-ingest the collection")
    passages = [p for d in docs for p in chunks[d].passages]
    sparse = SparseIndex.load(vdir / "sparse", config.sparse)
    dense = DenseIndex.load(vdir, dim=config.embedder_dim)
    graph = GraphIndex.load(vdir, chunks)
    if len(sparse) != len(passages) or len(dense) != len(passages):
        raise ManifestMismatch(
            f"{vdir}: {len(passages)} passages but sparse holds {len(sparse)} and dense {len(dense)}; "
            "re-ingest the collection"
        )
    return _State(embedding=dict(manifest.get("embedding", {})),
                  docs=docs, chunks=chunks, hashes=hashes, passages=passages, sparse=sparse, dense=dense,
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

