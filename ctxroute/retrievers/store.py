"""The collection store: a directory of named collections (create, open, list, delete)."""
from __future__ import annotations

import fcntl
import re
import shutil
from pathlib import Path
from typing import Any

from ctxroute.errors import CollectionNotFound, Conflict, InputError, ManifestMismatch
from ctxroute.retrievers.collection import Collection
from ctxroute.retrievers.collection_config import CollectionConfig, CollectionInfo
from ctxroute.retrievers.dense import DenseIndex
from ctxroute.retrievers.embedders import make_embedder
from ctxroute.retrievers.graph import GraphIndex
from ctxroute.retrievers.codec import DOCUMENTS_FILE, read_chunks, read_documents
from ctxroute.retrievers.persist import (
    document_table, _check_embedder, _load_state, _now, _read_current, _read_manifest, _State, _version_of, _write_version,
)
from ctxroute.retrievers.sparse import SparseIndex

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


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
        """The live manifest of a collection, with ``documents`` (per-document metadata)
        filled in from the stored documents and chunks (no indexes loaded)."""
        path = self._path(name)
        vname = _read_current(path)
        if vname is None:
            raise CollectionNotFound(name)
        manifest = _read_manifest(path, vname)
        vdir = path / "versions" / vname
        docs, hashes = [], {}
        for doc, digest in read_documents(vdir / DOCUMENTS_FILE):
            docs.append(doc)
            hashes[doc.id] = digest
        manifest["documents"] = document_table(docs, read_chunks(vdir), hashes)
        return manifest

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

