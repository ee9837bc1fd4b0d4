"""Graph index over a collection and a personalised-PageRank retriever.

The graph has document, section and passage chunks and key terms (``term:<normalised term>``)
as nodes; its edges are parent -> child, ``next`` (passage -> next passage, section -> next
section, in document order) and passage -> term for each key term of the passage. It is kept
as arrays, not as objects per node: per document its chunk hierarchy and, per passage, the ids
of its key terms. ``graph`` gives it as a networkx DiGraph (built on demand, for inspection).

PageRank runs as scipy sparse power iteration on a matrix built (vectorised) over passages,
sections and terms (documents left out: they would be hubs). Terms found in only one passage
(no bridge) or in too many (a hub) are left out of the matrix but kept in the index, so
adding a document can bring them back.

On disk: ``graph.json`` (format version, config, document order, the term vocabulary) and
``graph.npz`` (CSR of passage -> term ids). The chunk hierarchy is the collection's own and
is passed to ``load``.

The PageRank matrix (``_Matrix``, ``build_matrix``) is built in ``graph_matrix.py``, the walk
runs in ``graph_walk.py`` and ``GraphRetriever`` lives in ``graph_retriever.py``; all are
importable from here as before.
"""
from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import numpy as np

from ctxroute.errors import InputError, ManifestMismatch, NotFound
from ctxroute.retrievers.graph_matrix import TERM_PREFIX  # noqa: F401 - public here too
from ctxroute.retrievers.graph_matrix import _Matrix, _ordered, _term_node, build_matrix
from ctxroute.retrievers.graph_walk import personalized_pagerank
from ctxroute.retrievers.keyterms import extract_keyterms, query_ngrams
from ctxroute.types import Document

if TYPE_CHECKING:
    import networkx as nx

    from ctxroute.retrievers.chunking import DocumentChunks

FORMAT_VERSION = 2
GRAPH_FILE = "graph.json"
ARRAYS_FILE = "graph.npz"


@dataclass(frozen=True)
class GraphConfig:
    """Knobs of the graph index and its PageRank. Defaults were picked on LooGLE and the
    L-Eval contracts with MiniLM (benchmarks/README.md): sharp seed weights matter most."""

    max_terms_per_passage: int = 16
    max_df_fraction: float = 0.05  # a term in more than this share of passages is a hub ...
    min_df_cap: int = 6  # ... unless it is in at most this many passages;
    max_df: int = 64  # and one in more than this many passages always is
    alpha: float = 0.5  # restart probability: higher keeps the walk closer to the seeds
    term_weight: float = 1.0  # passage<->term edges, times the term's idf
    next_weight: float = 1.0  # passage<->next passage
    section_weight: float = 0.3  # passage<->its section, section<->next section
    query_term_share: float = 0.0  # seed mass for key terms the query names (0.1-0.3 measured worse)
    seed_rrf_k: int = 2  # seed weight of the hit at rank r: 1 / (seed_rrf_k + r); small = sharp
    local_hops: int = 2  # PageRank on the seeds' 2-hop neighbourhood (0: the whole graph)
    max_iter: int = 50
    tol: float = 1e-4  # L1 change per iteration; rankings settle long before the scores do


@dataclass(frozen=True)
class _DocGraph:
    """One document: its chunk hierarchy and the key-term ids of each of its passages."""

    chunks: Any  # DocumentChunks (or anything with document/sections/passages)
    terms: tuple[tuple[int, ...], ...]  # per passage, ids into GraphIndex._terms


class GraphIndex:
    """Structure + key-term graph of a collection's passages; cheap to construct."""

    def __init__(self, config: GraphConfig | None = None) -> None:
        self.config = config or GraphConfig()
        self._docs: dict[str, _DocGraph] = {}
        self._terms: list[str] = []  # term id -> normalised term (ids are never reused while loaded)
        self._term_id: dict[str, int] = {}
        self._matrix: _Matrix | None = None

    def copy(self) -> "GraphIndex":
        """A copy sharing the immutable per-document data and the term table (writers derive a
        new version). The term table only ever grows, and ids are never reused, so terms the
        copy adds are harmless to this index: none of its passages points at them."""
        other = GraphIndex(self.config)
        other._docs = dict(self._docs)
        other._terms = self._terms
        other._term_id = self._term_id
        return other

    def subset(self, doc_ids: Sequence[str]) -> "GraphIndex":
        """The documents ``doc_ids`` (in that order) as an index of their own, e.g. to save one
        segment of a collection; shares the term table like ``copy``."""
        other = GraphIndex(self.config)
        other._docs = {d: self._docs[d] for d in doc_ids}
        other._terms = self._terms
        other._term_id = self._term_id
        return other

    @classmethod
    def joined(cls, parts: Sequence["GraphIndex"], config: GraphConfig | None = None) -> "GraphIndex":
        """One index holding the documents of ``parts`` in order (a later part's document
        replaces an earlier one of the same id); term ids are remapped onto one table."""
        index = cls(config or (parts[0].config if parts else None))
        for part in parts:
            index.absorb(part)
        return index

    def absorb(self, part: "GraphIndex") -> None:
        """Add the documents of ``part`` (replacing any of the same id), its term ids remapped
        onto this index's table: costs what ``part`` holds."""
        remap = None
        if part._terms is not self._terms:
            term_id = self._term_id
            n0 = len(term_id)
            remap = [term_id.setdefault(t, len(term_id)) for t in part._terms]  # part terms are distinct
            self._terms.extend(t for t, i in zip(part._terms, remap) if i >= n0)
        for doc_id, d in part._docs.items():
            terms = d.terms if remap is None else tuple(tuple(remap[t] for t in ids) for ids in d.terms)
            self._docs.pop(doc_id, None)
            self._docs[doc_id] = _DocGraph(d.chunks, terms)
        self._matrix = None

    # --- building -------------------------------------------------------------------
    @classmethod
    def build(
        cls,
        docs: Sequence[Document],
        chunks: Sequence[DocumentChunks],
        *,
        config: GraphConfig | None = None,
    ) -> GraphIndex:
        if len(docs) != len(chunks):
            raise InputError(
                f"GraphIndex.build got {len(docs)} documents but {len(chunks)} chunkings; pass one per document"
            )
        index = cls(config)
        for doc, doc_chunks in zip(docs, chunks):
            index.add(doc, doc_chunks)
        return index

    def _ids(self, terms: Sequence[str]) -> tuple[int, ...]:
        out: list[int] = []
        for term in terms:
            i = self._term_id.get(term)
            if i is None:
                i = self._term_id[term] = len(self._terms)
                self._terms.append(term)
            if i not in out:
                out.append(i)
        return tuple(out)

    def add(self, doc: Document, doc_chunks: DocumentChunks) -> None:
        """Add (or replace) one document's hierarchy and key-term edges."""
        if doc_chunks.document.doc_id != doc.id:
            raise InputError(
                f"chunks belong to document {doc_chunks.document.doc_id!r}, not {doc.id!r}; "
                "chunk the document you add"
            )
        self._docs.pop(doc.id, None)
        terms = tuple(
            self._ids(extract_keyterms(p.text_of(doc), max_terms=self.config.max_terms_per_passage))
            for p in doc_chunks.passages
        )
        self._docs[doc.id] = _DocGraph(doc_chunks, terms)
        self._matrix = None

    def remove(self, doc_id: str) -> None:
        """Remove a document's nodes (a key term no other document uses goes with them)."""
        if self._docs.pop(doc_id, None) is None:
            raise NotFound(f"document {doc_id!r} is not in the graph index; known: {len(self._docs)} documents")
        self._matrix = None

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self._docs

    @property
    def doc_ids(self) -> list[str]:
        return sorted(self._docs)

    def passage_ids(self) -> list[str]:
        return [p.id for d in self._docs.values() for p in d.chunks.passages]

    def _find_passage(self, passage_id: str) -> tuple[_DocGraph, int]:
        doc_id = passage_id.rsplit(":", 1)[0]
        for d in ([self._docs[doc_id]] if doc_id in self._docs else self._docs.values()):
            for i, p in enumerate(d.chunks.passages):
                if p.id == passage_id:
                    return d, i
        raise NotFound(f"passage {passage_id!r} is not in the graph index")

    def terms_of(self, passage_id: str) -> list[str]:
        """Key terms linked to a passage (normalised, without the ``term:`` prefix)."""
        d, i = self._find_passage(passage_id)
        return sorted(self._terms[t] for t in d.terms[i])

    @property
    def graph(self) -> "nx.DiGraph":
        """The index as a networkx DiGraph (node attributes ``kind``, ``doc_id``, ``level``,
        ``ordinal``, ``start``, ``end``; edge attribute ``kind``). Built on each call."""
        import networkx as nx

        g = nx.DiGraph()
        for d in self._docs.values():
            dc = d.chunks
            nodes = set()
            for c in (dc.document, *dc.sections, *dc.passages):
                g.add_node(c.id, kind=c.level.value, doc_id=c.doc_id, level=c.level.value, ordinal=c.ordinal,
                           start=c.start, end=c.end)
                nodes.add(c.id)
            for c in (*dc.sections, *dc.passages):
                if c.parent_id is not None and c.parent_id in nodes:
                    g.add_edge(c.parent_id, c.id, kind="child")
            for level in (dc.sections, dc.passages):
                ordered = _ordered(level)
                for a, b in zip(ordered, ordered[1:]):
                    g.add_edge(a.id, b.id, kind="next")
            for p, ids in zip(dc.passages, d.terms):
                for t in ids:
                    node = _term_node(self._terms[t])
                    if node not in g:
                        g.add_node(node, kind="term", term=self._terms[t])
                    g.add_edge(p.id, node, kind="term")
        return g

    # --- persistence ----------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write ``graph.json`` and ``graph.npz`` (passage -> term CSR) into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        used = sorted({t for d in self._docs.values() for ids in d.terms for t in ids})
        remap = np.full(len(self._terms), -1, dtype=np.int64)
        remap[np.asarray(used, dtype=np.int64)] = np.arange(len(used))
        lengths = [len(ids) for d in self._docs.values() for ids in d.terms]
        flat = [t for d in self._docs.values() for ids in d.terms for t in ids]
        indptr = np.zeros(len(lengths) + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        term_ids = remap[np.asarray(flat, dtype=np.int64)].astype(np.int32) if flat else np.zeros(0, np.int32)
        meta = {"format_version": FORMAT_VERSION, "config": asdict(self.config),
                "docs": [[doc_id, len(d.chunks.passages)] for doc_id, d in self._docs.items()],
                "terms": [self._terms[t] for t in used]}
        fd, tmp = tempfile.mkstemp(prefix=".graph.", suffix=".npz.tmp", dir=directory)
        try:
            with os.fdopen(fd, "wb") as fh:
                np.savez(fh, indptr=indptr, term_ids=term_ids)
            os.replace(tmp, directory / ARRAYS_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        (directory / GRAPH_FILE).write_text(json.dumps(meta, ensure_ascii=False, separators=(",", ":")),
                                            encoding="utf-8")

    @classmethod
    def load(cls, directory: Path, chunks: Mapping[str, DocumentChunks]) -> GraphIndex:
        """Load a saved index; ``chunks`` maps each saved document id to its hierarchy."""
        path = Path(directory) / GRAPH_FILE
        if not path.is_file():
            raise NotFound(f"no graph index at {path}; build one with GraphIndex.build(...).save(dir)")
        meta = json.loads(path.read_text(encoding="utf-8"))
        found = meta.get("format_version", meta.get("graph", {}).get("format_version"))
        if found != FORMAT_VERSION:
            raise ManifestMismatch(
                f"{path} has graph format {found!r}, this code reads {FORMAT_VERSION}; "
                "re-ingest the collection to rebuild it",
                path=str(path),
            )
        known = GraphConfig.__dataclass_fields__
        index = cls(GraphConfig(**{k: v for k, v in meta.get("config", {}).items() if k in known}))
        index._terms = [str(t) for t in meta["terms"]]
        index._term_id = {t: i for i, t in enumerate(index._terms)}
        with np.load(Path(directory) / ARRAYS_FILE, allow_pickle=False) as arrays:
            indptr = arrays["indptr"]
            term_ids = arrays["term_ids"].tolist()
        row = 0
        for doc_id, n_passages in meta["docs"]:
            dc = chunks.get(doc_id)
            if dc is None or len(dc.passages) != n_passages:
                raise ManifestMismatch(f"{path}: document {doc_id!r} does not match the collection's chunks; "
                                       "re-ingest the collection")
            terms = tuple(tuple(term_ids[indptr[r]:indptr[r + 1]]) for r in range(row, row + n_passages))
            index._docs[doc_id] = _DocGraph(dc, terms)
            row += n_passages
        return index

    # --- queries --------------------------------------------------------------------
    def neighbours(self, passage_id: str, *, hops: int = 1) -> list[str]:
        """Passages up to ``hops`` steps before and after ``passage_id``, in document order."""
        d, i = self._find_passage(passage_id)
        ordered = _ordered(d.chunks.passages)
        pos = next(j for j, p in enumerate(ordered) if p.id == passage_id)
        return [p.id for p in ordered[max(0, pos - hops):pos]] + [p.id for p in ordered[pos + 1:pos + 1 + hops]]

    def _matrix_cached(self) -> _Matrix:
        if self._matrix is None:
            self._matrix = build_matrix(list(self._docs.values()), self._terms, self.config)
        return self._matrix

    def query_term_nodes(self, query: str) -> list[str]:
        """Key-term nodes (bridges kept in the PageRank matrix) that the query names."""
        m = self._matrix_cached()
        return [t for t in (_term_node(g) for g in sorted(query_ngrams(query))) if t in m.index]

    def personalized_pagerank(self, seeds: Mapping[str, float], k: int) -> list[tuple[str, float]]:
        """Top ``k`` passages by PageRank personalised on ``seeds`` (node id -> weight >= 0).

        Seeds may be passages, sections or ``term:`` nodes; unknown ids are ignored. Returns
        ``[]`` when no seed is known. The walk itself is ``graph_walk.personalized_pagerank``.
        """
        return personalized_pagerank(self._matrix_cached(), self.config, seeds, k)


# GraphRetriever lives in graph_retriever.py; importable from here as before
from ctxroute.retrievers.graph_retriever import GraphRetriever  # noqa: E402

__all__ = ["GraphConfig", "GraphIndex", "GraphRetriever", "ARRAYS_FILE", "GRAPH_FILE", "FORMAT_VERSION"]
