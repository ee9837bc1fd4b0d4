"""On-disk layout of a collection: (de)serialisation, atomic version writes, loading.

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
replaces ``CURRENT``; a crash at any point leaves the previous version loadable.
"""
from __future__ import annotations

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
from typing import Any, Iterable, Iterator, Mapping, Sequence

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.retrievers.collection_config import CollectionConfig
from ctxroute.retrievers.dense import DenseIndex
from ctxroute.retrievers.graph import GraphIndex
from ctxroute.retrievers.sparse import SparseIndex
from ctxroute.types import Chunk, Document, Level

FORMAT_VERSION = 1
_KEEP_VERSIONS = 2  # the live one and its predecessor (a reader may still be loading it)


def _before_commit(tmp_dir: Path) -> None:
    """Test seam: called when a new version is fully written, just before it goes live."""


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

