"""The PageRank transition matrix of the graph index (``graph.py``), built vectorised.

Nodes are passages, then sections, then the bridge terms (in at least two passages and at
most the hub cap); documents are left out (they would be hubs). ``graph.py`` keeps the index
and its persistence; ``graph_walk.py`` runs the walk on the matrix built here.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Sequence

import numpy as np
import scipy.sparse as sp

from ctxroute.types import Chunk

if TYPE_CHECKING:
    from ctxroute.retrievers.graph import GraphConfig, _DocGraph

TERM_PREFIX = "term:"

__all__ = ["TERM_PREFIX", "build_matrix"]


@dataclass
class _Matrix:
    """Row-stochastic transition matrix (transposed, CSR) and the node each row stands for."""

    transition_t: sp.csr_matrix
    nodes: list[str]
    index: dict[str, int]
    n_passages: int  # rows 0 .. n_passages-1 are the passages


def _term_node(term: str) -> str:
    return TERM_PREFIX + term


def _ordered(chunks: Sequence[Chunk]) -> list[Chunk]:
    return sorted(chunks, key=lambda c: (c.start, c.ordinal))


def build_matrix(docs: Sequence[_DocGraph], terms: Sequence[str], cfg: GraphConfig) -> _Matrix:
    """The PageRank matrix over ``docs``' passages, sections and bridge terms (``terms``:
    term id -> normalised term): edges passage<->term (weight ``term_weight`` x idf),
    passage<->next passage, section<->next section and section<->its children, row-normalised."""
    passages = [p.id for d in docs for p in d.chunks.passages]
    sections = [s.id for d in docs for s in d.chunks.sections]
    n_pass, n_sec = len(passages), len(sections)
    lengths = np.asarray([len(ids) for d in docs for ids in d.terms], dtype=np.int64)
    flat = np.asarray([t for d in docs for ids in d.terms for t in ids], dtype=np.int64)
    df = np.bincount(flat, minlength=len(terms)) if flat.size else np.zeros(len(terms), np.int64)
    cap = max(cfg.min_df_cap, min(cfg.max_df, int(cfg.max_df_fraction * n_pass)))
    bridge = (df >= 2) & (df <= cap)
    # terms in order of first use (as passages list them), like the node order of the graph
    first_use = np.unique(flat, return_index=True) if flat.size else (np.zeros(0, np.int64),) * 2
    kept = first_use[0][np.argsort(first_use[1], kind="stable")]
    kept = kept[bridge[kept]]
    row_of_term = np.full(len(terms), -1, dtype=np.int64)
    row_of_term[kept] = n_pass + n_sec + np.arange(kept.size)
    nodes = passages + sections + [_term_node(terms[t]) for t in kept]
    index = {n: i for i, n in enumerate(nodes)}
    rows: list[np.ndarray] = []
    cols: list[np.ndarray] = []
    vals: list[np.ndarray] = []

    def link(a: np.ndarray, b: np.ndarray, w: np.ndarray | float) -> None:
        w = np.broadcast_to(np.asarray(w, dtype=np.float64), a.shape)
        rows.extend((a, b))
        cols.extend((b, a))
        vals.extend((w, w))

    if flat.size:
        prow = np.repeat(np.arange(n_pass, dtype=np.int64), lengths)
        trow = row_of_term[flat]
        keep = trow >= 0
        weight = cfg.term_weight * np.log1p(n_pass / np.maximum(df[flat[keep]], 1))
        link(prow[keep], trow[keep], weight)
    a_list: list[int] = []
    b_list: list[int] = []
    w_list: list[float] = []
    for d in docs:
        dc = d.chunks
        sec_ids = {s.id for s in dc.sections}
        for level, weight in ((dc.sections, cfg.section_weight), (dc.passages, cfg.next_weight)):
            ordered = _ordered(level)
            for a, b in zip(ordered, ordered[1:]):
                a_list.append(index[a.id])
                b_list.append(index[b.id])
                w_list.append(weight)
        for c in (*dc.sections, *dc.passages):
            if c.parent_id in sec_ids:
                a_list.append(index[c.parent_id])
                b_list.append(index[c.id])
                w_list.append(cfg.section_weight)
    if a_list:
        link(np.asarray(a_list, dtype=np.int64), np.asarray(b_list, dtype=np.int64), np.asarray(w_list))
    n = len(nodes)
    if rows:
        adj = sp.csr_matrix((np.concatenate(vals), (np.concatenate(rows), np.concatenate(cols))), shape=(n, n))
    else:
        adj = sp.csr_matrix((n, n), dtype=np.float64)
    out = np.asarray(adj.sum(axis=1)).ravel()
    dangling = out == 0
    inv = np.where(dangling, 0.0, 1.0 / np.where(dangling, 1.0, out))
    transition_t = (sp.diags(inv) @ adj).T.tocsr().astype(np.float32)
    return _Matrix(transition_t, nodes, index, n_pass)
