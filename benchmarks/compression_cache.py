"""What the retention benchmark needs that does not depend on the compressor's weights, kept
on disk: per document its sentences and token count, per question the retriever's rankings.

``prepare(gdocs, cache_dir, ...)`` builds one collection per document (kept under
``cache_dir/collections-<embedder>-<long_text>`` with ``CollectionStore(path)``, so a second run does not re-embed;
all-MiniLM-L6-v2 takes minutes per document on 2 cores) and, per question, the full ranking
(the RAG baseline's) and the hits ``compress()`` would fetch itself (``search_k`` at each
ratio and ``hits_cover``), pickled to ``cache_dir/prepared-<embedder>-<long_text>-<retriever>.pkl`` (``long_text``: the
collections' long-passage policy, ``CollectionConfig.long_text``).
Scoring a compressor config on the prepared data is then ``select_sentences`` only: seconds
for the 421 questions. Without ``cache_dir`` everything lives in a temporary folder.
"""
from __future__ import annotations

import pickle
import re
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ctxroute.types import Chunk, Document, ScoredChunk

FORMAT = 2  # bump when Prepared changes


@dataclass
class PreparedItem:
    """One question and its gold (the fields of ``compression_retention.Gold``) with its rankings."""

    question: str
    spans: tuple[tuple[int, int], ...]
    numbers: tuple[str, ...]
    ranking: list[ScoredChunk]  # the whole ranking (RAG's order)
    hits: dict[int, list[ScoredChunk]] = field(default_factory=dict)  # k -> collection.search(question, k)


@dataclass
class Prepared:
    dataset: str
    doc: Document
    sentences: Sequence[Chunk]
    full_tokens: int
    n_passages: int
    items: list[PreparedItem]


def _dump(path: Path, docs: dict[tuple[str, str], Prepared]) -> None:
    # plain tuples and ctxroute.types only, so the pickle loads whichever way this module was imported
    blob = {key: (p.dataset, p.doc, list(p.sentences), p.full_tokens, p.n_passages,
                  [(it.question, it.spans, it.numbers, it.ranking, it.hits) for it in p.items])
            for key, p in docs.items()}
    path.write_bytes(pickle.dumps({"format": FORMAT, "docs": blob}))


def _load(path: Path) -> dict[tuple[str, str], Prepared]:
    blob = pickle.loads(path.read_bytes())
    if blob.get("format") != FORMAT:
        return {}
    return {key: Prepared(ds, doc, sents, full, n_pass, [PreparedItem(*it) for it in items])
            for key, (ds, doc, sents, full, n_pass, items) in blob["docs"].items()}


def search_ks(full_tokens: int, n_passages: int, ratios: Sequence[float], covers: Sequence[float], base: Any) -> list[int]:
    """The ``k`` values ``compress()`` asks ``collection.search`` for (``search_k``)."""
    out = set()
    mean = max(1.0, full_tokens / max(1, n_passages))
    for r in ratios:
        for cover in covers:
            cfg = replace(base, ratio=r, hits_cover=cover)
            want = int(-(-cover * cfg.budget(full_tokens) // mean))
            out.add(max(1, min(n_passages, max(cfg.k, want))))
    return sorted(out)


def hits_for(item: PreparedItem, k: int) -> list[ScoredChunk]:
    if k in item.hits:
        return item.hits[k]
    raise KeyError(f"no cached hits at k={k} (have {sorted(item.hits)}); rebuild the cache with that ratio/hits_cover")


def prepare(
    gdocs: Sequence[Any],
    cache_dir: Path | None,
    *,
    embedder: Any,
    embedder_name: str,
    retriever: str,
    ratios: Sequence[float],
    covers: Sequence[float] = (1.5,),
    lara_sentences: Callable[[Any, Sequence[Chunk]], Any] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> list[Prepared]:
    from ctxroute.pipelines.compress import CompressConfig
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore

    base = CompressConfig()
    # the collections' long-passage policy is part of the key: a changed default must not reuse old collections
    tag = f"{embedder_name}-{CollectionConfig.for_embedder(embedder).long_text}"
    pkl = cache_dir / f"prepared-{tag}-{retriever}.pkl" if cache_dir is not None else None
    cached: dict[tuple[str, str], Prepared] = {}
    if pkl is not None and pkl.exists():
        cached = _load(pkl)
    tmp = None
    if cache_dir is None:
        tmp = tempfile.TemporaryDirectory(prefix="ctxroute-compress-")
        root = Path(tmp.name)
    else:
        root = cache_dir / f"collections-{tag}"
        root.mkdir(parents=True, exist_ok=True)
    store = CollectionStore(root)
    out: list[Prepared] = []
    dirty = False
    try:
        for n, g in enumerate(gdocs):
            key = (g.dataset, g.doc.id)
            p = cached.get(key)
            want_q = [it.question for it in g.items] if not g.dataset.startswith("lara") else None
            if p is not None and want_q is not None and [it.question for it in p.items] != want_q:
                p = None
            name = re.sub(r"[^A-Za-z0-9_.-]", "_", g.doc.id)
            coll = None
            ks = search_ks(p.full_tokens, p.n_passages, ratios, covers, base) if p is not None else []
            if p is None or any(k not in it.hits for it in p.items for k in ks):
                if store.exists(name):
                    coll = store.open(name, embedder)
                else:
                    coll = store.create(name, CollectionConfig.for_embedder(embedder), embedder)
                    coll.add_documents([g.doc])
            if p is None:
                assert coll is not None
                doc = coll.documents()[0]
                dc = coll.chunks(doc.id)
                sentences = list(dc.sentences)
                gg = replace(g, doc=doc)
                if g.dataset.startswith("lara") and lara_sentences is not None:
                    gg = lara_sentences(gg, sentences)
                n_pass = max(1, len(coll.passages()))
                items = [PreparedItem(it.question, tuple(it.spans), tuple(it.numbers),
                                      coll.search(it.question, k=n_pass, retriever=retriever)) for it in gg.items]
                p = Prepared(g.dataset, doc, sentences, int(dc.document.n_tokens or sum(s.n_tokens for s in sentences)),
                             n_pass, items)
                ks = search_ks(p.full_tokens, p.n_passages, ratios, covers, base)
                dirty = True
            if coll is not None:
                for it in p.items:
                    for k in ks:
                        if k not in it.hits:
                            it.hits[k] = coll.search(it.question, k=k, retriever=retriever)
                            dirty = True
            cached[key] = p
            out.append(p)
            if cache_dir is None:
                store.delete(name)
            elif dirty and n % 5 == 4:
                _dump(pkl, cached)  # type: ignore[arg-type]
                dirty = False
            if progress is not None:
                progress(n + 1, len(gdocs))
        if pkl is not None and dirty:
            _dump(pkl, cached)
    finally:
        if tmp is not None:
            tmp.cleanup()
    return out


__all__ = ["Prepared", "PreparedItem", "hits_for", "prepare", "search_ks"]
