"""Personalised PageRank over the graph index's transition matrix (``graph_matrix.py``), restricted
to the seeds' neighbourhood of ``config.local_hops`` hops."""
from __future__ import annotations

from typing import TYPE_CHECKING, Mapping

import numpy as np

if TYPE_CHECKING:
    from ctxroute.retrievers.graph import GraphConfig
    from ctxroute.retrievers.graph_matrix import _Matrix


def personalized_pagerank(m: "_Matrix", config: "GraphConfig", seeds: Mapping[str, float],
                          k: int) -> list[tuple[str, float]]:
    """Top ``k`` passages by PageRank personalised on ``seeds`` (node id -> weight >= 0).

    Seeds may be passages, sections or ``term:`` nodes; unknown ids are ignored. Returns
    ``[]`` when no seed is known.
    """
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
    hops = config.local_hops
    if hops > 0:  # walk only the seeds' neighbourhood: a few ms even on large collections
        reach = s > 0
        rows = np.flatnonzero(reach)
        for _ in range(hops):  # the matrix is symmetric in structure: a row's entries are its neighbours
            reach[transition[rows].indices] = True
            rows = np.flatnonzero(reach)
        s = s[rows]
    # The walk stays on ``rows``: their slice of the matrix times a full-length vector that
    # is zero elsewhere equals ``transition[rows][:, rows] @ p`` without building that
    # submatrix (which cost more than the walk itself).
    sub = transition[rows] if rows.size < n else transition
    full = np.zeros(n, dtype=np.float32)
    alpha = config.alpha
    p = s.copy()
    for _ in range(config.max_iter):
        full[rows] = p
        nxt = (1.0 - alpha) * (sub @ full)
        nxt += (1.0 - float(nxt.sum())) * s  # restart, plus mass lost at dangling/boundary nodes
        delta = float(np.abs(nxt - p).sum())
        p = nxt
        if delta < config.tol:
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
