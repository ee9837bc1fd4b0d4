"""The storage seam: where collections are recorded.

A :class:`StorageBackend` is the system of record for a namespace of collections (one tenant,
or the CLI's home). ``Collection`` holds the in-memory snapshot (``_State``: documents, chunks,
the sparse, dense and graph indexes) and asks its backend to lock, commit, load and detect newer
versions; ``CollectionStore`` is the user-facing directory (create, open, list, delete) over one.

Two backends pass the same contract tests (``tests/retrievers/test_store_contract.py``):

- ``files`` (``files_backend.FilesBackend``): a directory per collection, ``fcntl`` locks,
  atomic version directories; the embedded default.
- ``postgres`` (``pgstore.PostgresBackend``): PostgreSQL is the record, pgvector holds the
  dense vectors; the sparse and graph indexes are per-process caches keyed by the version.

``commit`` receives both the full next state and the :class:`Delta` that produced it, so a
backend can write in proportion to the change instead of rewriting the collection.

Two optional methods, used when a backend has them: ``load_since(name, config, base)`` (a
newer version read on top of ``base``: the files backend reads only the segments added since;
postgres does the same inside ``load`` with its per-version cache) and ``compact(name)``
(segments folded on disk; without it ``Collection.compact`` folds only the in-memory indexes).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ContextManager, Protocol, runtime_checkable

import numpy as np

from ctxroute.retrievers.chunking import DocumentChunks
from ctxroute.retrievers.collection_config import CollectionConfig, CollectionInfo
from ctxroute.types import Document

if TYPE_CHECKING:  # persist imports the index modules; the seam itself stays light
    from ctxroute.retrievers.persist import _State


@dataclass(frozen=True)
class Delta:
    """What one write changed: documents added (with their passage vectors, in passage order)
    and document ids removed (a replaced document is in both)."""

    added: tuple[tuple[Document, DocumentChunks], ...]
    removed: frozenset[str]
    vectors: np.ndarray

    @property
    def empty(self) -> bool:
        return not self.added and not self.removed


@runtime_checkable
class StorageBackend(Protocol):
    """The record of one namespace of collections. Names are validated by the caller."""

    kind: str  # "files" | "postgres"

    def location(self, name: str) -> str:
        """Where the collection lives, for people (a path, or ``postgres://.../ns/name``)."""
        ...

    def exists(self, name: str) -> bool: ...

    def current(self, name: str) -> str | None:
        """The live version tag (cheap: called before every cached read), or None when absent."""
        ...

    def read_config(self, name: str) -> CollectionConfig:
        """The stored configuration. Raises CollectionNotFound, or ManifestMismatch for a
        format this code cannot read."""
        ...

    def create(self, name: str, config: CollectionConfig, state: "_State") -> "_State":
        """Record a new, empty collection; raises Conflict when it exists. Returns the state
        with its version tag (``version_dir``) set."""
        ...

    def load(self, name: str, config: CollectionConfig) -> "_State":
        """The live version, indexes included. Raises CollectionNotFound."""
        ...

    def write_lock(self, name: str) -> ContextManager[None]:
        """Exclusive for writers of ``name`` across threads, processes and (for shared
        backends) machines. Raises CollectionNotFound when the collection is gone."""
        ...

    def commit(self, name: str, config: CollectionConfig, base: "_State", state: "_State",
               delta: Delta) -> "_State":
        """Make ``state`` (= ``base`` + ``delta``) the live version, atomically: on any error
        the previous version stays live. Called under ``write_lock``. Returns the state as
        the backend keeps it (``version_dir`` set; indexes may be swapped for the backend's)."""
        ...

    def list(self) -> list[CollectionInfo]: ...

    def manifest(self, name: str) -> dict[str, Any]:
        """The live manifest with ``documents`` (per-document metadata), no indexes loaded."""
        ...

    def delete(self, name: str) -> None:
        """Remove the collection; raises CollectionNotFound."""
        ...
