"""Configuration and result types of persisted collections, and the text every index sees
for a passage (``index_text``). Split from ``collection.py``; re-exported there."""
from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import PurePath
from typing import Any, Mapping

from ctxroute.errors import InputError
from ctxroute.retrievers.chunking import ChunkingConfig
from ctxroute.retrievers.embedders import embedder_spec
from ctxroute.retrievers.hybrid import TUNED_RRF_K, TUNED_WEIGHTS
from ctxroute.retrievers.sparse import SparseConfig
from ctxroute.types import Chunk, Document

RETRIEVERS = ("bm25", "dense", "graph", "hybrid")
# Tuned on LooGLE + L-Eval contracts with MiniLM (benchmarks/README.md): sharp RRF (k=5) and a
# graph weight of 2 beat the textbook k=60, which makes the graph weight irrelevant.
DEFAULT_FUSION_WEIGHTS: Mapping[str, float] = {k: float(v) for k, v in TUNED_WEIGHTS.items()}
DEFAULT_RRF_K = TUNED_RRF_K


@dataclass(frozen=True)
class CollectionConfig:
    """How a collection is chunked, indexed and embedded. Fixed at creation."""

    chunking: ChunkingConfig = field(default_factory=ChunkingConfig)
    sparse: SparseConfig = field(default_factory=SparseConfig)
    embedder_name: str = "all-MiniLM-L6-v2"
    embedder_dim: int = 384
    hnsw_threshold: int = 50_000
    fusion_weights: Mapping[str, float] = field(default_factory=lambda: dict(DEFAULT_FUSION_WEIGHTS))
    embedder_spec: str = ""  # what make_embedder() needs to rebuild the embedder ("" = by name)
    fusion_rrf_k: int = DEFAULT_RRF_K
    # how the embedder treats a passage over the model's input limit (256 wordpieces for MiniLM):
    # "truncate" (its start only, as the peers do; the default since it retrieved as well as
    # windows on LooGLE, L-Eval, LaRA and the 10-Qs with 5-10% less embedding on 256-token
    # passages, ~1.3x less on long ones; README "Measured")
    # or "windows" (overlapping windows averaged by the tokens each adds). Collections written
    # before the setting existed have no such key and used windows.
    long_text: str = "truncate"

    def __post_init__(self) -> None:
        if self.long_text not in ("windows", "truncate"):
            raise InputError(f"long_text must be 'windows' or 'truncate', got {self.long_text!r}")
        unknown = set(self.fusion_weights) - {"bm25", "dense", "graph"}
        if unknown:
            raise InputError(f"fusion_weights name unknown retrievers {sorted(unknown)}; use bm25, dense, graph")
        if self.embedder_dim < 1 or self.hnsw_threshold < 1:
            raise InputError(
                f"embedder_dim and hnsw_threshold must be >= 1, got {self.embedder_dim}, {self.hnsw_threshold}"
            )

    @classmethod
    def for_embedder(cls, embedder: Any, **kwargs: Any) -> "CollectionConfig":
        """A config whose embedder fields describe ``embedder``."""
        kwargs.setdefault("long_text", str(getattr(getattr(embedder, "inner", embedder), "long_text", cls.long_text)))
        return cls(embedder_name=str(embedder.name), embedder_dim=int(embedder.dim),
                   embedder_spec=embedder_spec(embedder), **kwargs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "chunking": self.chunking.to_dict(),
            "sparse": self.sparse.to_dict(),
            "embedder_name": self.embedder_name,
            "embedder_dim": self.embedder_dim,
            "embedder_spec": self.embedder_spec,
            "hnsw_threshold": self.hnsw_threshold,
            "fusion_weights": dict(self.fusion_weights),
            "fusion_rrf_k": self.fusion_rrf_k,
            # not written for "windows": collections made before the setting keep their version hash
            **({"long_text": self.long_text} if self.long_text != "windows" else {}),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> "CollectionConfig":
        return cls(
            chunking=ChunkingConfig.from_dict(dict(data["chunking"])),
            sparse=SparseConfig.from_dict(dict(data["sparse"])),
            embedder_name=str(data["embedder_name"]),
            embedder_dim=int(data["embedder_dim"]),
            embedder_spec=str(data.get("embedder_spec", "")),
            hnsw_threshold=int(data["hnsw_threshold"]),
            fusion_weights={str(k): float(v) for k, v in dict(data["fusion_weights"]).items()},
            fusion_rrf_k=int(data.get("fusion_rrf_k", 60)),  # collections written before tuning used 60
            long_text=str(data.get("long_text", "windows")),  # no key: written before the setting, windows
        )


@dataclass(frozen=True)
class IngestStats:
    """What ``add_documents`` did: ids added/skipped (same text already stored)/replaced (same
    id, new text)/failed (with the reason), counts over the added documents and seconds per
    stage (chunk, embed, sparse, dense, graph, save)."""

    added: tuple[str, ...]
    skipped: tuple[str, ...]
    replaced: tuple[str, ...]
    documents: int
    sections: int
    passages: int
    sentences: int
    tokens: int
    seconds: Mapping[str, float]
    version: str
    failed: tuple[tuple[str, str], ...] = ()  # (document id, reason)


@dataclass(frozen=True)
class CollectionStats:
    """Sizes the router needs (field names match ``ctxroute.router.features.CollectionStats``)."""

    n_docs: int
    total_tokens: int
    doc_tokens: tuple[int, ...]
    n_passages: int
    n_sections: int
    n_sentences: int
    passage_tokens: int
    doc_ids: tuple[str, ...]
    doc_chars: Mapping[str, int]


@dataclass(frozen=True)
class CollectionInfo:
    """One line of ``CollectionStore.list()``."""

    name: str
    version: str
    n_docs: int
    n_passages: int
    total_tokens: int
    embedder_name: str
    embedder_dim: int
    updated_at: str
    path: str


def content_hash(text: str) -> str:
    """sha256 hex of a document's text: equal texts are stored once per collection."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def index_text(doc: Document, passage: Chunk) -> str:
    """What the sparse and dense indexes see for a passage: a short header (context the
    passage itself may lack: document title, the source file's name when the title lacks it,
    and the section path, which for PDFs ends with the page and, in a table cut by rows, the
    table's header rows) followed by the passage text."""
    parts = [doc.title] if doc.title else []
    stem = PurePath(doc.source).stem if PurePath(doc.source).suffix else ""
    if stem and stem.lower() not in doc.title.lower():
        parts.append(stem)
    if passage.heading and passage.heading != doc.title:
        parts.append(passage.heading)
    header = " / ".join(parts)
    body = passage.text_of(doc)
    return f"{header}\n{body}" if header else body

