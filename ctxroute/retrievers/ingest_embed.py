"""How a collection embeds new passages: each distinct text once, stored vectors reused,
longest texts first across the whole ingest (split from ``collection.py``)."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Sequence

import numpy as np

from ctxroute.errors import ManifestMismatch
from ctxroute.retrievers.collection_config import content_hash

if TYPE_CHECKING:
    from ctxroute.retrievers.persist import _State


def embed_passages(embedder: Any, texts: Sequence[str], dim: int, collection: str, st: "_State | None",
                   progress: Callable[[str, int, int], None] | None, batch: int = 256) -> np.ndarray:
    """Vectors of ``texts``. Each distinct text (by content hash) is embedded once, and not
    at all when a stored passage of ``st`` already has that text; the rest go to the embedder
    longest first, so every batch holds texts of similar length (less padding)."""
    out = np.zeros((len(texts), dim), dtype=np.float32)
    rows_of: dict[str, list[int]] = {}
    for i, text in enumerate(texts):
        rows_of.setdefault(content_hash(text), []).append(i)
    if st is not None and st.passages and len(st.dense) == len(st.passages):
        lookup = getattr(st.dense, "vector", None)  # one row, without gathering all vectors
        for h in list(rows_of):
            j = st.passage_with_text(h)  # a hash map kept with the state: no scan of the collection
            if j is not None:
                out[rows_of.pop(h)] = lookup(j) if lookup is not None else st.dense.vectors[j]
    todo = sorted(rows_of.values(), key=lambda rows: len(texts[rows[0]]), reverse=True)
    for start in range(0, len(todo), batch):
        group = todo[start:start + batch]
        vec = np.asarray(embedder.embed([texts[rows[0]] for rows in group]), dtype=np.float32)
        if vec.shape != (len(group), dim):
            raise ManifestMismatch(
                f"embedder {embedder.name!r} returned shape {vec.shape}, collection {collection!r} "
                f"expects (n, {dim}); use the embedder the collection was created with",
            )
        for rows, v in zip(group, vec):
            out[rows] = v
        if progress:
            progress("embed", min(start + batch, len(todo)), len(todo))
    return out
