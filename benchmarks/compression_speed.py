"""Speed of the query-aware compressor: a ~100k-token document (LooGLE articles concatenated)
compressed at 0.35 for several questions, in ms per 100k tokens, against one BM25 query and one
tokenisation of the whole text measured in the same run. Used by ``compression_retention.py``
(``ctxroute bench compress``); data: ``../shared/data`` (read-only).
"""
from __future__ import annotations

import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.types import Document  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its scripts load each other
from _siblings import sibling as _sibling  # noqa: E402


def speed(data: Path, target_tokens: int = 100_000, questions: Sequence[str] = (), repeats: int = 5) -> dict:
    from ctxroute.pipelines.compress import CompressConfig, compress
    from ctxroute.pipelines.result import Corpus
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
    from ctxroute.retrievers.embedders import HashingEmbedder
    from ctxroute.retrievers.tokens import get_counter

    qd = _sibling("quality_data")
    docs = qd.load_loogle(data)
    count = get_counter("cl100k_base").count
    parts, qs, tokens = [], list(questions), 0
    for d in docs:
        parts.append(d.doc.text)
        tokens += count(d.doc.text)
        qs += [i.question for i in d.items[:2]]
        if tokens >= target_tokens:
            break
    text = "\n\n".join(parts)
    embedder = HashingEmbedder(dim=256)
    with tempfile.TemporaryDirectory(prefix="ctxroute-compress-speed-") as tmp:
        coll = CollectionStore(Path(tmp)).create("speed", CollectionConfig.for_embedder(embedder), embedder)
        coll.add_documents([Document(id="speed", text=text, title="LooGLE articles")])
        n_tok = int(coll.stats().total_tokens)
        corpus = Corpus(coll)
        compress(qs[0], corpus, CompressConfig(retriever="bm25"))  # warm caches (chunks, stemmer)
        qs = qs[:repeats]
        # as the routes call it: sentences charged as the prompt holds them, the rendered prompt counted
        t0 = time.perf_counter()
        for q in qs:
            compress(q, Corpus(coll), CompressConfig(ratio=0.35, retriever="bm25"), count_tokens=count)
        comp_ms = (time.perf_counter() - t0) * 1000 / len(qs)
        t0 = time.perf_counter()
        for q in qs:  # the index's sentence counts only, nothing counted again
            compress(q, Corpus(coll), CompressConfig(ratio=0.35, retriever="bm25"))
        bare_ms = (time.perf_counter() - t0) * 1000 / len(qs)
        t0 = time.perf_counter()
        for q in qs:
            coll.search(q, k=40, retriever="bm25")
        bm25_ms = (time.perf_counter() - t0) * 1000 / len(qs)
        t0 = time.perf_counter()
        for _ in qs:
            count(text)
        tok_ms = (time.perf_counter() - t0) * 1000 / len(qs)
    per100k = 100_000 / n_tok
    return {
        "document_tokens": n_tok,
        "questions": len(qs),
        "compress_ms": round(comp_ms, 1),
        "compress_ms_per_100k": round(comp_ms * per100k, 1),
        "compress_ms_per_100k_index_counts": round(bare_ms * per100k, 1),
        "bm25_query_ms": round(bm25_ms, 2),
        "tokenize_ms": round(tok_ms, 1),
        "compress_over_bm25_query": round(comp_ms / max(bm25_ms, 1e-6), 1),
        "compress_over_tokenize": round(comp_ms / max(tok_ms, 1e-6), 2),
    }
