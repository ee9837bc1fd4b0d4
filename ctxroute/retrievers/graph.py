"""Graph index over a collection (networkx) and a personalised-PageRank retriever.

Nodes: document, section and passage chunks (attributes ``kind``, ``doc_id``, ``level``,
``ordinal``, ``start``, ``end``) and key terms (``term:<normalised term>``). Edges:
parent -> child, ``next`` (passage -> next passage, section -> next section, in document
order) and passage -> term for each key term of the passage.

PageRank runs as scipy sparse power iteration on a matrix cached from the graph over
passages, sections and terms (documents left out: they would be hubs). Terms found in
only one passage (no bridge) or in too many (a hub) are left out of the matrix but kept
in the graph, so adding a document can bring them back.
"""
from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Mapping, Sequence

import networkx as nx
import numpy as np
import scipy.sparse as sp

from ctxroute.errors import InputError, ManifestMismatch, NotFound
from ctxroute.retrievers.base import Retriever
from ctxroute.retrievers.hybrid import rrf
from ctxroute.retrievers.keyterms import extract_keyterms, query_ngrams
from ctxroute.types import Chunk, Document, Level, ScoredChunk

if TYPE_CHECKING:
    from ctxroute.retrievers.chunking import DocumentChunks

FORMAT_VERSION = 1
GRAPH_FILE = "graph.json"
TERM_PREFIX = "term:"


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


@dataclass
class _Matrix:
    """Row-stochastic transition matrix (transposed, CSR) and the node each row stands for."""

    transition_t: sp.csr_matrix
    nodes: list[str]
    index: dict[str, int]
    n_passages: int  # rows 0 .. n_passages-1 are the passages


def _term_node(term: str) -> str:
    return TERM_PREFIX + term


class GraphIndex:
    """Structure + key-term graph of a collection's passages; cheap to construct."""

    def __init__(self, config: GraphConfig | None = None, graph: nx.DiGraph | None = None) -> None:
        self.config = config or GraphConfig()
        self.graph: nx.DiGraph = graph if graph is not None else nx.DiGraph()
        self._by_doc: dict[str, set[str]] = {}
        for node, data in self.graph.nodes(data=True):
            if data.get("kind") != "term":
                self._by_doc.setdefault(data["doc_id"], set()).add(node)
        self._matrix: _Matrix | None = None

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

    def add(self, doc: Document, doc_chunks: DocumentChunks) -> None:
        """Add (or replace) one document's hierarchy and key-term edges."""
        if doc_chunks.document.doc_id != doc.id:
            raise InputError(
                f"chunks belong to document {doc_chunks.document.doc_id!r}, not {doc.id!r}; "
                "chunk the document you add"
            )
        if doc.id in self._by_doc:
            self.remove(doc.id)
        g = self.graph
        nodes: set[str] = set()
        for c in (doc_chunks.document, *doc_chunks.sections, *doc_chunks.passages):
            g.add_node(
                c.id,
                kind=c.level.value,
                doc_id=c.doc_id,
                level=c.level.value,
                ordinal=c.ordinal,
                start=c.start,
                end=c.end,
            )
            nodes.add(c.id)
        for c in (*doc_chunks.sections, *doc_chunks.passages):
            if c.parent_id is not None and c.parent_id in nodes:
                g.add_edge(c.parent_id, c.id, kind="child")
        for level in (doc_chunks.sections, doc_chunks.passages):
            ordered = sorted(level, key=lambda c: (c.start, c.ordinal))
            for a, b in zip(ordered, ordered[1:]):
                g.add_edge(a.id, b.id, kind="next")
        for p in doc_chunks.passages:
            for term in extract_keyterms(p.text_of(doc), max_terms=self.config.max_terms_per_passage):
                t = _term_node(term)
                if t not in g:
                    g.add_node(t, kind="term", term=term)
                g.add_edge(p.id, t, kind="term")
        self._by_doc[doc.id] = nodes
        self._matrix = None

    def remove(self, doc_id: str) -> None:
        """Remove a document's nodes and any key term no other document still uses."""
        nodes = self._by_doc.pop(doc_id, None)
        if nodes is None:
            raise NotFound(f"document {doc_id!r} is not in the graph index; known: {len(self._by_doc)} documents")
        terms = {t for n in nodes for t in self.graph.successors(n) if t.startswith(TERM_PREFIX)}
        self.graph.remove_nodes_from(nodes)
        self.graph.remove_nodes_from([t for t in terms if self.graph.degree(t) == 0])
        self._matrix = None

    @property
    def doc_ids(self) -> list[str]:
        return sorted(self._by_doc)

    def passage_ids(self) -> list[str]:
        return [n for n, d in self.graph.nodes(data=True) if d.get("kind") == Level.PASSAGE.value]

    def terms_of(self, passage_id: str) -> list[str]:
        """Key terms linked to a passage (normalised, without the ``term:`` prefix)."""
        return sorted(t[len(TERM_PREFIX) :] for t in self.graph.successors(passage_id) if t.startswith(TERM_PREFIX))

    # --- persistence ----------------------------------------------------------------
    def save(self, directory: Path) -> None:
        """Write ``graph.json`` (networkx node-link JSON) atomically into ``directory``."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        data = nx.node_link_data(self.graph, edges="edges")
        data["graph"] = {"format_version": FORMAT_VERSION, "config": asdict(self.config)}
        fd, tmp = tempfile.mkstemp(prefix=".graph.", suffix=".json.tmp", dir=directory)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(data, fh, ensure_ascii=False, separators=(",", ":"))
            os.replace(tmp, directory / GRAPH_FILE)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    @classmethod
    def load(cls, directory: Path) -> GraphIndex:
        path = Path(directory) / GRAPH_FILE
        if not path.is_file():
            raise NotFound(f"no graph index at {path}; build one with GraphIndex.build(...).save(dir)")
        data = json.loads(path.read_text(encoding="utf-8"))
        meta = data.get("graph", {})
        if meta.get("format_version") != FORMAT_VERSION:
            raise ManifestMismatch(
                f"{path} has graph format {meta.get('format_version')!r}, this code reads {FORMAT_VERSION}; "
                "re-ingest the collection to rebuild it",
                path=str(path),
            )
        known = GraphConfig.__dataclass_fields__
        config = GraphConfig(**{k: v for k, v in meta.get("config", {}).items() if k in known})
        graph = nx.node_link_graph(data, directed=True, multigraph=False, edges="edges")
        graph.graph = {}
        return cls(config, graph)

    # --- queries --------------------------------------------------------------------
    def neighbours(self, passage_id: str, *, hops: int = 1) -> list[str]:
        """Passages up to ``hops`` steps before and after ``passage_id``, in document order."""
        if passage_id not in self.graph:
            raise NotFound(f"passage {passage_id!r} is not in the graph index")
        before: list[str] = []
        after: list[str] = []
        node = passage_id
        for _ in range(hops):
            prev = [u for u, _, d in self.graph.in_edges(node, data=True) if d.get("kind") == "next"]
            if not prev:
                break
            node = prev[0]
            before.append(node)
        node = passage_id
        for _ in range(hops):
            nxt = [v for _, v, d in self.graph.out_edges(node, data=True) if d.get("kind") == "next"]
            if not nxt:
                break
            node = nxt[0]
            after.append(node)
        return before[::-1] + after

    def _build_matrix(self) -> _Matrix:
        cfg = self.config
        g = self.graph
        data = g.nodes(data=True)
        passages = [n for n, d in data if d.get("kind") == Level.PASSAGE.value]
        sections = [n for n, d in data if d.get("kind") == Level.SECTION.value]
        n_pass = len(passages)
        cap = max(cfg.min_df_cap, min(cfg.max_df, int(cfg.max_df_fraction * n_pass)))
        terms = []
        for n, d in data:
            if d.get("kind") == "term":
                df = g.in_degree(n)
                if 2 <= df <= cap:
                    terms.append(n)
        nodes = passages + sections + terms
        index = {n: i for i, n in enumerate(nodes)}
        rows: list[int] = []
        cols: list[int] = []
        vals: list[float] = []

        def link(a: int, b: int, w: float) -> None:
            rows.extend((a, b))
            cols.extend((b, a))
            vals.extend((w, w))

        for t in terms:
            ti = index[t]
            w = cfg.term_weight * math.log(1.0 + n_pass / g.in_degree(t))
            for p in g.predecessors(t):
                link(index[p], ti, w)
        for u, v, d in g.edges(data=True):
            kind = d.get("kind")
            if u not in index or v not in index:
                continue
            if kind == "next":
                is_passage = data[u].get("kind") == Level.PASSAGE.value
                link(index[u], index[v], cfg.next_weight if is_passage else cfg.section_weight)
            elif kind == "child" and data[u].get("kind") == Level.SECTION.value:
                link(index[u], index[v], cfg.section_weight)
        n = len(nodes)
        adj = sp.csr_matrix(
            (np.asarray(vals, dtype=np.float64), (np.asarray(rows, dtype=np.int64), np.asarray(cols, dtype=np.int64))),
            shape=(n, n),
        )
        out = np.asarray(adj.sum(axis=1)).ravel()
        dangling = out == 0
        inv = np.where(dangling, 0.0, 1.0 / np.where(dangling, 1.0, out))
        transition_t = (sp.diags(inv) @ adj).T.tocsr().astype(np.float32)
        return _Matrix(transition_t, nodes, index, n_pass)

    def _matrix_cached(self) -> _Matrix:
        if self._matrix is None:
            self._matrix = self._build_matrix()
        return self._matrix

    def query_term_nodes(self, query: str) -> list[str]:
        """Key-term nodes (bridges kept in the PageRank matrix) that the query names."""
        m = self._matrix_cached()
        return [t for t in (_term_node(g) for g in sorted(query_ngrams(query))) if t in m.index]

    def personalized_pagerank(self, seeds: Mapping[str, float], k: int) -> list[tuple[str, float]]:
        """Top ``k`` passages by PageRank personalised on ``seeds`` (node id -> weight >= 0).

        Seeds may be passages, sections or ``term:`` nodes; unknown ids are ignored. Returns
        ``[]`` when no seed is known.
        """
        m = self._matrix_cached()
        n = len(m.nodes)
        if k <= 0 or n == 0:
            return []
        s = np.zeros(n, dtype=np.float32)
        for node, w in seeds.items():
            i = m.index.get(node)
            if i is not None and w > 0:
                s[i] += w
        total = float(s.sum())
        if total <= 0:
            return []
        s /= total
        transition = m.transition_t
        rows = np.arange(n)
        hops = self.config.local_hops
        if hops > 0:  # walk only the seeds' neighbourhood: a few ms even on large collections
            reach = s > 0
            for _ in range(hops):
                reach |= (transition @ reach.astype(np.float32)) > 0
            rows = np.flatnonzero(reach)
            transition = transition[rows][:, rows]
            s = s[rows]
        alpha = self.config.alpha
        p = s.copy()
        for _ in range(self.config.max_iter):
            nxt = (1.0 - alpha) * (transition @ p)
            nxt += (1.0 - float(nxt.sum())) * s  # restart, plus mass lost at dangling/boundary nodes
            delta = float(np.abs(nxt - p).sum())
            p = nxt
            if delta < self.config.tol:
                break
        is_passage = rows < m.n_passages
        scores = p[is_passage]
        ids = rows[is_passage]
        k = min(k, len(scores))
        if k == 0:
            return []
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.lexsort((ids[top], -scores[top]))]
        return [(m.nodes[int(ids[i])], float(scores[i])) for i in top if scores[i] > 0]


class GraphRetriever:
    """Personalised PageRank over the graph, seeded by first-stage hits and query terms."""

    name = "graph"

    def __init__(
        self,
        index: GraphIndex,
        passages_by_id: Mapping[str, Chunk],
        seeders: Sequence[Retriever],
        seed_k: int = 20,
    ) -> None:
        self.index = index
        self.passages_by_id = passages_by_id
        self.seeders = list(seeders)
        self.seed_k = seed_k

    def _seed_weights(self, query: str, hits: Sequence[ScoredChunk]) -> dict[str, float]:
        seeds: dict[str, float] = {}
        rrf_k = self.index.config.seed_rrf_k
        for rank, hit in enumerate(hits, start=1):
            seeds[hit.chunk.id] = seeds.get(hit.chunk.id, 0.0) + 1.0 / (rrf_k + rank)
        terms = self.index.query_term_nodes(query)
        share = self.index.config.query_term_share
        if terms and share > 0:
            hit_mass = sum(seeds.values())
            each = (share * hit_mass / (1.0 - share) if hit_mass > 0 else 1.0) / len(terms)
            for t in terms:
                seeds[t] = seeds.get(t, 0.0) + each
        return seeds

    def _ranked(self, seeds: Mapping[str, float], k: int) -> list[ScoredChunk]:
        out: list[ScoredChunk] = []
        for pid, score in self.index.personalized_pagerank(seeds, k + 8):
            chunk = self.passages_by_id.get(pid)
            if chunk is None:
                continue
            out.append(
                ScoredChunk(
                    chunk=chunk, score=score, retriever=self.name,
                    ranks={self.name: len(out) + 1}, scores={self.name: score},
                )
            )
            if len(out) == k:
                break
        return out

    def retrieve(self, query: str, k: int = 10) -> list[ScoredChunk]:
        if k <= 0:
            return []
        lists = {getattr(r, "name", str(i)): r.retrieve(query, self.seed_k) for i, r in enumerate(self.seeders)}
        fused = rrf(lists, rrf_k=self.index.config.seed_rrf_k)[: self.seed_k]
        return self._ranked(self._seed_weights(query, fused), k)

    def rerank(self, query: str, hits: list[ScoredChunk], k: int) -> list[ScoredChunk]:
        """Reranker protocol: PageRank seeded by ``hits`` (rank-weighted) and the query's terms."""
        if k <= 0:
            return []
        return self._ranked(self._seed_weights(query, hits[: self.seed_k]), k)
