"""The ``files`` storage backend: ``<root>/<name>/`` per collection (layout in ``persist.py``),
writers serialised by ``fcntl`` on ``<name>/.lock``, versions made live by an atomic rename."""
from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from ctxroute.errors import CollectionNotFound, Conflict, ManifestMismatch
from ctxroute.retrievers.backend import Delta
from ctxroute.retrievers.codec import DOCUMENTS_FILE, read_chunks, read_documents
from ctxroute.retrievers.collection_config import CollectionConfig, CollectionInfo
from ctxroute.retrievers.persist import (
    _load_state, _read_current, _read_manifest, _State, _write_version, document_table,
)

_DIR_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")


class FilesBackend:
    """Collections as directories under ``root`` (one machine, or one shared POSIX volume)."""

    kind = "files"

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    def _path(self, name: str) -> Path:
        return self.root / name

    def location(self, name: str) -> str:
        return str(self._path(name))

    def exists(self, name: str) -> bool:
        return _read_current(self._path(name)) is not None

    def current(self, name: str) -> str | None:
        return _read_current(self._path(name))

    def read_config(self, name: str) -> CollectionConfig:
        vname = _read_current(self._path(name))
        if vname is None:
            raise CollectionNotFound(name)
        return CollectionConfig.from_dict(_read_manifest(self._path(name), vname)["config"])

    @contextlib.contextmanager
    def _flock(self, path: Path) -> Iterator[None]:
        with (path / ".lock").open("a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def create(self, name: str, config: CollectionConfig, state: _State) -> _State:
        path = self._path(name)
        path.mkdir(parents=True, exist_ok=True)
        with self._flock(path):
            if _read_current(path) is not None:
                raise Conflict(
                    f"collection {name!r} already exists; open it, or delete it with "
                    f"`ctxroute collections rm {name}`",
                    name=name,
                )
            state.version_dir = _write_version(path, name, config, state)
        return state

    def load(self, name: str, config: CollectionConfig) -> _State:
        path = self._path(name)
        vname = _read_current(path)
        if vname is None:
            raise CollectionNotFound(name)
        try:
            return _load_state(path, vname, config)
        except FileNotFoundError:
            # a writer pruned this version while we read it: the pointer has moved on
            return _load_state(path, _read_current(path) or vname, config)

    @contextlib.contextmanager
    def write_lock(self, name: str) -> Iterator[None]:
        path = self._path(name)
        if not path.is_dir():
            raise CollectionNotFound(name)
        with self._flock(path):
            if not path.is_dir() or _read_current(path) is None:
                raise CollectionNotFound(name)
            yield

    def commit(self, name: str, config: CollectionConfig, base: _State, state: _State, delta: Delta) -> _State:
        state.version_dir = _write_version(self._path(name), name, config, state)
        return state

    def list(self) -> list[CollectionInfo]:
        out: list[CollectionInfo] = []
        if not self.root.is_dir():
            return out
        for p in sorted(self.root.iterdir()):
            if not p.is_dir() or not _DIR_NAME.fullmatch(p.name):
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
        with self._flock(path):
            # drop the pointer first: a crash mid-delete leaves no half-readable collection
            (path / "CURRENT").unlink(missing_ok=True)
            shutil.rmtree(path / "versions", ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
