"""The ``files`` storage backend: ``<root>/<name>/`` per collection (layout in ``persist.py``),
writers serialised by ``fcntl`` on ``<name>/.lock``, versions made live by an atomic rename.
A write adds one immutable segment and a small manifest (append-only, with tombstones);
``compact`` folds the segments into one."""
from __future__ import annotations

import contextlib
import fcntl
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

from ctxroute.errors import CollectionNotFound, Conflict, ManifestMismatch
from ctxroute.retrievers.backend import Delta
from ctxroute.retrievers.collection_config import CollectionConfig, CollectionInfo
from ctxroute.retrievers.persist import (
    FORMAT_VERSION, MIGRATES_FROM, _commit, _load_state, _read_current, _read_manifest, _State, document_table,
    read_live_documents,
)
from ctxroute.retrievers.persist_extend import extend_state, migrate

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

    def _live(self, name: str) -> str:
        """The live version's name, after migrating a format-2 collection (under the lock)."""
        path = self._path(name)
        vname = _read_current(path)
        if vname is None:
            raise CollectionNotFound(name)
        found = _read_manifest(path, vname, accept=(FORMAT_VERSION, MIGRATES_FROM))["format_version"]
        if found == MIGRATES_FROM:
            with self._flock(path):
                vname = _read_current(path) or vname
                manifest = _read_manifest(path, vname, accept=(FORMAT_VERSION, MIGRATES_FROM))
                if manifest["format_version"] == MIGRATES_FROM:
                    vname = migrate(path, name, vname)
        return vname

    def read_config(self, name: str) -> CollectionConfig:
        return CollectionConfig.from_dict(_read_manifest(self._path(name), self._live(name))["config"])

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
            return _commit(path, name, config, state)

    def load(self, name: str, config: CollectionConfig) -> _State:
        path = self._path(name)
        vname = self._live(name)
        try:
            return _load_state(path, vname, config)
        except FileNotFoundError:
            # a writer pruned this version while we read it: the pointer has moved on
            return _load_state(path, _read_current(path) or vname, config)

    def load_since(self, name: str, config: CollectionConfig, base: _State) -> _State:
        """The live version, read in proportion to what changed since ``base`` when its
        manifest extends ``base``'s (same segments first, more tombstones, new segments after):
        only the new segments are read. Otherwise (a compaction, another lineage) ``load``."""
        path = self._path(name)
        vname = self._live(name)
        if vname == base.version_dir:
            return base
        try:
            grown = extend_state(path, vname, config, base)
        except FileNotFoundError:  # pruned while we read: the pointer has moved on
            grown = None
        return grown if grown is not None else self.load(name, config)

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
        """Writes only the segments of ``state`` not on disk yet (the delta's documents, or a
        merge) and a new manifest; ``base``'s segments are listed, not copied."""
        return _commit(self._path(name), name, config, state)

    def compact(self, name: str) -> dict[str, Any]:
        """Fold every segment into one without dead rows (what a fresh ingest of the live
        documents writes) and make it live. Nothing is re-embedded or re-tokenised. Returns
        ``segments_before``, ``segments_after``, ``dead_rows_dropped`` and ``version``."""
        from ctxroute.retrievers.compaction import compacted  # imports persist

        config = self.read_config(name)
        with self.write_lock(name):
            state = self.load(name, config)
            merged = compacted(state)
            if merged is not state:
                merged = _commit(self._path(name), name, config, merged)
        return {"segments_before": len(state.segments), "segments_after": len(merged.segments),
                "dead_rows_dropped": sum(s.n_dead_rows for s in state.segments), "version": merged.version}

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
                m = _read_manifest(p, vname, accept=(FORMAT_VERSION, MIGRATES_FROM))
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
        for attempt in range(2):
            vname = self._live(name)
            manifest = _read_manifest(path, vname)
            try:
                docs, chunks, hashes = read_live_documents(path, manifest)
                break
            except FileNotFoundError:  # a writer pruned this version's segments while we read
                if attempt:
                    raise
        manifest["documents"] = document_table(docs, chunks, hashes)
        return manifest

    def live_files(self, name: str) -> dict[str, int]:
        """Bytes on disk of the live version by file name: its manifest plus the segments it
        lists (a name every segment has, e.g. ``vectors.npy``, summed over them)."""
        path = self._path(name)
        vname = self._live(name)
        sizes = {"manifest.json": (path / "versions" / vname / "manifest.json").stat().st_size}
        for seg in _read_manifest(path, vname).get("segments", []):
            seg_dir = path / "segments" / seg["name"]
            for f in seg_dir.rglob("*"):
                if f.is_file():
                    key = f.relative_to(seg_dir).parts[0]
                    sizes[key] = sizes.get(key, 0) + f.stat().st_size
        return sizes

    def delete(self, name: str) -> None:
        path = self._path(name)
        if _read_current(path) is None:
            raise CollectionNotFound(name)
        with self._flock(path):
            # drop the pointer first: a crash mid-delete leaves no half-readable collection
            (path / "CURRENT").unlink(missing_ok=True)
            shutil.rmtree(path / "versions", ignore_errors=True)
        shutil.rmtree(path, ignore_errors=True)
