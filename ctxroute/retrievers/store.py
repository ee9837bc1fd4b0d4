"""The collection store: a namespace of named collections (create, open, list, delete) over one
storage backend (``backend.py``): ``files`` under a directory (the default) or ``postgres``."""
from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from ctxroute.errors import CollectionNotFound, Conflict, InputError
from ctxroute.retrievers.backend import StorageBackend
from ctxroute.retrievers.collection import Collection
from ctxroute.retrievers.collection_config import CollectionConfig, CollectionInfo
from ctxroute.retrievers.dense import DenseIndex
from ctxroute.retrievers.embedders import make_embedder
from ctxroute.retrievers.files_backend import FilesBackend
from ctxroute.retrievers.graph import GraphIndex
from ctxroute.retrievers.persist import _check_embedder, _now, _State, _version_of
from ctxroute.retrievers.sparse import SparseIndex

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
POSTGRES_SCHEMES = ("postgres://", "postgresql://")


def backend_for(spec: str | Path | StorageBackend, namespace: str = "default") -> StorageBackend:
    """A backend from a directory path, a ``postgresql://`` URL (collections of ``namespace``,
    e.g. one tenant) or an existing backend."""
    if isinstance(spec, str) and spec.startswith(POSTGRES_SCHEMES):
        from ctxroute.retrievers.pgstore import PostgresBackend  # psycopg only when asked for

        return PostgresBackend(spec, namespace=namespace)
    if isinstance(spec, (str, Path)):
        return FilesBackend(Path(spec))
    if isinstance(spec, StorageBackend):
        return spec
    raise InputError(f"not a collection store: {spec!r}; pass a directory or a postgresql:// URL")


class CollectionStore:
    """Named collections on one backend. ``CollectionStore(path)`` keeps them in
    ``<path>/<name>/`` (files); ``CollectionStore("postgresql://...", namespace="t1")`` in
    PostgreSQL."""

    def __init__(self, root: str | Path | StorageBackend, namespace: str = "default") -> None:
        self.backend: StorageBackend = backend_for(root, namespace)

    @property
    def root(self) -> Path:
        """The directory of a files store (AttributeError for other backends)."""
        root = getattr(self.backend, "root", None)
        if root is None:
            raise AttributeError(f"a {self.backend.kind} store has no directory")
        return root

    @staticmethod
    def validate_name(name: str) -> str:
        if not isinstance(name, str) or not NAME_PATTERN.fullmatch(name):
            raise InputError(
                f"invalid collection name {name!r}: use 1-64 letters, digits, '_', '.' or '-', "
                "starting with a letter or digit",
                name=name,
            )
        return name

    def exists(self, name: str) -> bool:
        return self.backend.exists(self.validate_name(name))

    def current(self, name: str) -> str | None:
        """The live version tag of ``name`` (cheap), or None when it does not exist."""
        return self.backend.current(self.validate_name(name))

    def create(self, name: str, config: CollectionConfig | None = None, embedder: Any = None) -> Collection:
        """A new, empty collection. ``embedder`` defaults to the one ``config`` names."""
        self.validate_name(name)
        if embedder is not None and config is None:
            config = CollectionConfig.for_embedder(embedder)
        config = config or CollectionConfig()
        embedder = embedder if embedder is not None else make_embedder(config.embedder_spec or config.embedder_name,
                                                                       long_text=config.long_text)
        _check_embedder(name, config, embedder)
        now = _now()
        state = _State(docs={}, chunks={}, hashes={}, passages=[], sparse=SparseIndex(config.sparse).build([]),
                       dense=DenseIndex(config.embedder_dim, config.hnsw_threshold), graph=GraphIndex(),
                       version=_version_of(config, {}), version_dir="", created_at=now, updated_at=now)
        state = self.backend.create(name, config, state)
        return Collection(self.backend, name, config, embedder, state)

    def open(self, name: str, embedder: Any = None) -> Collection:
        """Load a collection. Raises CollectionNotFound, or ManifestMismatch when the stored
        format or embedder does not match the code or ``embedder``."""
        self.validate_name(name)
        config = self.backend.read_config(name)
        if embedder is None:
            embedder = make_embedder(config.embedder_spec or config.embedder_name, long_text=config.long_text)
        _check_embedder(name, config, embedder)
        return Collection(self.backend, name, config, embedder, self.backend.load(name, config))

    def open_or_create(self, name: str, config: CollectionConfig, embedder: Any = None) -> Collection:
        try:
            return self.open(name, embedder)
        except CollectionNotFound:
            try:
                return self.create(name, config, embedder)
            except Conflict:  # created concurrently
                return self.open(name, embedder)

    def list(self) -> list[CollectionInfo]:
        return [i for i in self.backend.list() if NAME_PATTERN.fullmatch(i.name)]

    def config(self, name: str) -> CollectionConfig:
        """The stored configuration of ``name`` (cheap: no documents, chunks or indexes read)."""
        return self.backend.read_config(self.validate_name(name))

    def manifest(self, name: str) -> dict[str, Any]:
        """The live manifest of a collection, with ``documents`` (per-document metadata)
        filled in from the stored documents and chunks (no indexes loaded)."""
        return self.backend.manifest(self.validate_name(name))

    def compact(self, name: str) -> dict[str, Any]:
        """Fold the segments of a files collection into one (``FilesBackend.compact``)."""
        compact = getattr(self.backend, "compact", None)
        if compact is None:
            raise InputError(f"the {self.backend.kind} store keeps no segments: there is nothing to compact",
                             name=name)
        return compact(self.validate_name(name))

    def delete(self, name: str) -> None:
        self.backend.delete(self.validate_name(name))
