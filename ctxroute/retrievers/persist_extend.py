"""Loading a files-backend version in proportion to what changed (``extend_state``), and
migrating a format-2 collection to the segment layout (``migrate``); layout in ``persist.py``."""
from __future__ import annotations

from pathlib import Path

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.codec import DOCUMENTS_FILE, read_chunks, read_documents
from ctxroute.retrievers.collection_config import CollectionConfig, index_text
from ctxroute.retrievers.dense import DenseIndex
from ctxroute.retrievers.derive import carried_lookups
from ctxroute.retrievers.graph import GraphIndex
from ctxroute.retrievers.persist import (
    MIGRATES_FROM, _commit, _read_manifest, _read_segment_docs, _State,
)
from ctxroute.retrievers.segments import SegmentInfo
from ctxroute.retrievers.sparse import SparseIndex
from ctxroute.types import Chunk, Document


def extend_state(path: Path, vname: str, config: CollectionConfig, base: _State) -> _State | None:
    """Version ``vname`` built from ``base`` plus what was committed since: the new segments
    read from disk, the new tombstones applied. None when ``vname`` does not extend ``base``
    (e.g. it was compacted): the caller loads it whole."""
    manifest = _read_manifest(path, vname)
    entries = manifest["segments"]
    old = base.segments
    if (not old and base.docs) or len(entries) < len(old) or any(
            s.name != str(e["name"]) or not s.dead <= set(e.get("dead", ())) for s, e in zip(old, entries)):
        return None
    if len(old) != base.sparse.n_segments or len(old) != getattr(base.dense, "n_segments", -1):
        return None
    removed = set().union(*(set(e.get("dead", ())) - s.dead for s, e in zip(old, entries)))
    segments = [SegmentInfo(s.doc_ids, s.passages, frozenset(e.get("dead", ())), s.name) for s, e in zip(old, entries)]
    gone = [i for i, p in enumerate(base.passages) if p.doc_id in removed] if removed else []
    docs = {d: v for d, v in base.docs.items() if d not in removed}
    chunks = {d: v for d, v in base.chunks.items() if d not in removed}
    hashes = {d: v for d, v in base.hashes.items() if d not in removed}
    sparse, dense = base.sparse.without(gone), base.dense.without(gone)
    graph = base.graph.copy()
    for d in removed:
        if d in graph:
            graph.remove(d)
    new_passages: list[Chunk] = []
    for entry in entries[len(old):]:
        sdir = path / "segments" / str(entry["name"])
        info, rows, seg_chunks = _read_segment_docs(sdir, entry)
        for doc, digest in rows:
            if doc.id not in info.dead:
                docs[doc.id], hashes[doc.id], chunks[doc.id] = doc, digest, seg_chunks[doc.id]
                new_passages.extend(seg_chunks[doc.id].passages)
        part_sparse = SparseIndex.load(sdir / "sparse", config.sparse)
        part_dense = DenseIndex.load(sdir, dim=config.embedder_dim)
        if len(part_sparse) != info.n_rows or len(part_dense) != info.n_rows:
            return None
        sparse = sparse.appended(part_sparse, info.dead_mask())
        dense = dense.appended(part_dense, info.dead_mask())
        graph.absorb(GraphIndex.load(sdir, seg_chunks).subset(info.live_docs()))
        segments.append(info)
    kept = [p for p in base.passages if p.doc_id not in removed] if removed else list(base.passages)
    passages = kept + new_passages
    passage_by_id = dict(base.passage_by_id)
    for i in gone:
        del passage_by_id[base.passages[i].id]
    passage_by_id.update((p.id, p) for p in new_passages)
    text_ids, position_by_id = carried_lookups(base, removed, new_passages,
                                               [index_text(docs[p.doc_id], p) for p in new_passages]
                                               if base.text_ids is not None else [])
    return _State(embedding=dict(manifest.get("embedding", {})), segments=segments, docs=docs, chunks=chunks,
                  hashes=hashes, passages=passages, sparse=sparse, dense=dense, graph=graph,
                  version=str(manifest["version"]), version_dir=vname, created_at=str(manifest.get("created_at", "")),
                  updated_at=str(manifest.get("updated_at", "")), passage_by_id=passage_by_id,
                  text_ids=text_ids, position_by_id=position_by_id)


def migrate(path: Path, name: str, vname: str) -> str:
    """Rewrite a format-2 version (one directory with every document) as a format-3 version
    of one segment; vectors, chunks and graph as stored, BM25 counts rebuilt from the texts.
    Called under the write lock. Returns the new version's name."""
    manifest = _read_manifest(path, vname, accept=(MIGRATES_FROM,))
    config = CollectionConfig.from_dict(manifest["config"])
    vdir = path / "versions" / vname
    docs: dict[str, Document] = {}
    hashes: dict[str, str] = {}
    for doc, digest in read_documents(vdir / DOCUMENTS_FILE):
        docs[doc.id], hashes[doc.id] = doc, digest
    chunks = read_chunks(vdir)
    if set(docs) != set(chunks):
        raise ManifestMismatch(f"{vdir}: documents and chunks disagree; re-ingest the collection")
    passages = [p for d in docs for p in chunks[d].passages]
    dense = DenseIndex.load(vdir, dim=config.embedder_dim)
    graph = GraphIndex.load(vdir, chunks)
    sparse = SparseIndex(config.sparse).build([index_text(docs[p.doc_id], p) for p in passages])
    if len(dense) != len(passages):
        raise ManifestMismatch(f"{vdir}: {len(passages)} passages but {len(dense)} vectors; re-ingest the collection")
    ids = tuple(docs)
    st = _State(docs=docs, chunks={d: chunks[d] for d in ids}, hashes=hashes, passages=passages, sparse=sparse,
                dense=dense, graph=graph, version=str(manifest["version"]), version_dir="",
                created_at=str(manifest.get("created_at", "")), updated_at=str(manifest.get("updated_at", "")),
                embedding=dict(manifest.get("embedding", {})),
                segments=[SegmentInfo(ids, tuple(len(chunks[d].passages) for d in ids))] if ids else [])
    return _commit(path, name, config, st).version_dir
