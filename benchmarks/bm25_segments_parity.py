"""BM25 on segments is BM25: the segmented ``SparseIndex`` (raw term counts, statistics of
all live rows at query time) against ``bm25s`` (the library it replaced, which bakes idf
into a stored score matrix) and against its own compacted form, on real text.

Per data set (LooGLE, L-Eval legal; the shared data folder) every document is chunked with
the default chunking into one corpus of index texts. Three indexes over the same live
passages:
- ``bm25s``: ``bm25s.BM25`` on the same tokens (what ``SparseIndex`` was before issue 14);
- ``segmented``: documents added in 10 segments, then 5% of the documents removed (dead rows);
- ``compacted``: the segmented index merged into one segment.
For every question: max |score difference|, whether the top 10 agree, and recall@10 of the
gold evidence (a hit: a passage of the question's document overlapping a resolved span).

    nice -n 10 .venv/bin/python benchmarks/bm25_segments_parity.py --data-root /work/shared/data
"""
from __future__ import annotations

import argparse
import json
import random
from pathlib import Path
from typing import Any

import numpy as np


def run(spec: str, root: Path, segments: int, removed_share: float, seed: int) -> dict[str, Any]:
    import bm25s

    from ctxroute.eval.datasets import load_dataset
    from ctxroute.retrievers.chunking import ChunkingConfig, chunk_document
    from ctxroute.retrievers.collection_config import index_text
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.retrievers.sparse import SparseConfig, SparseIndex

    ds = load_dataset(spec, root)
    config = SparseConfig()
    doc_keys = sorted(ds.documents)
    passages, texts, owner = [], [], []
    for key in doc_keys:
        src = ds.documents[key]
        doc = document_from_text(src.text, title=src.title, doc_id=f"d{len(owner)}")
        for p in chunk_document(doc, ChunkingConfig()).passages:
            passages.append((key, p.start, p.end))
            texts.append(index_text(doc, p))
        owner.append(key)
    doc_of = np.array([doc_keys.index(k) for k, _, _ in passages])
    rng = random.Random(seed)
    gone_docs = set(rng.sample(range(len(doc_keys)), max(1, int(removed_share * len(doc_keys)))))
    live = np.array([d not in gone_docs for d in doc_of])
    live_pos = np.flatnonzero(live)

    bounds = np.linspace(0, len(doc_keys), segments + 1).astype(int)
    seg = SparseIndex(config)
    for a, b in zip(bounds, bounds[1:]):
        rows = np.flatnonzero((doc_of >= a) & (doc_of < b))
        seg = seg.extended([texts[i] for i in rows])
    seg = seg.without(np.flatnonzero(~live).tolist())
    compacted = seg.merged()
    tokenizer = seg.tokenize
    ref = bm25s.BM25(k1=config.k1, b=config.b, method=config.method)
    ref.index([tokenizer(texts[i]) for i in live_pos], show_progress=False)

    def ref_scores(q: str) -> np.ndarray:
        ids = [ref.vocab_dict[t] for t in tokenizer(q) if t in ref.vocab_dict and t != ""]
        return np.asarray(ref.get_scores_from_ids(ids), np.float32) if ids else np.zeros(len(live_pos), np.float32)

    def top(scores: np.ndarray) -> list[int]:
        order = np.lexsort((np.arange(scores.size), -scores))[:10]
        return [int(i) for i in order if scores[i] > 0]

    items = [it for it in ds.items if it.docs and doc_keys.index(it.docs[0]) not in gone_docs]
    max_diff = {"segmented_vs_bm25s": 0.0, "compacted_vs_segmented": 0.0}
    same_top = {"segmented_vs_bm25s": 0, "compacted_vs_segmented": 0}
    recall = {"bm25s": [], "segmented": [], "compacted": []}
    for it in items:
        s_ref, s_seg, s_cmp = ref_scores(it.question), seg.scores(it.question), compacted.scores(it.question)
        max_diff["segmented_vs_bm25s"] = max(max_diff["segmented_vs_bm25s"], float(np.abs(s_seg - s_ref).max()))
        max_diff["compacted_vs_segmented"] = max(max_diff["compacted_vs_segmented"], float(np.abs(s_cmp - s_seg).max()))
        same_top["segmented_vs_bm25s"] += top(s_seg) == top(s_ref)
        same_top["compacted_vs_segmented"] += top(s_cmp) == top(s_seg)
        spans = [(e.start, e.end) for e in it.evidence if e.resolved and e.doc == it.docs[0]]
        if not spans:
            continue
        for name, scores in (("bm25s", s_ref), ("segmented", s_seg), ("compacted", s_cmp)):
            hit = any(passages[live_pos[i]][0] == it.docs[0] and any(s < passages[live_pos[i]][2] and passages[live_pos[i]][1] < e
                                                                     for s, e in spans) for i in top(scores))
            recall[name].append(hit)
    return {"data_set": spec, "documents": len(doc_keys), "documents_removed": len(gone_docs),
            "passages_live": int(live.sum()), "segments": seg.n_segments, "dead_rows": seg.n_dead,
            "questions": len(items), "max_abs_score_diff": max_diff,
            "identical_top10_share": {k: v / max(1, len(items)) for k, v in same_top.items()},
            "recall_at_10": {k: (float(np.mean(v)) if v else None) for k, v in recall.items()},
            "questions_with_evidence": len(recall["bm25s"])}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data-root", type=Path, default=Path("/work/shared/data"))
    ap.add_argument("--sets", nargs="+", default=["loogle", "leval-legal"])
    ap.add_argument("--segments", type=int, default=10)
    ap.add_argument("--removed", type=float, default=0.05)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args()
    results = [run(s, args.data_root, args.segments, args.removed, args.seed) for s in args.sets]
    if args.out:
        args.out.write_text(json.dumps(results, indent=1))
    for r in results:
        print(json.dumps(r))


if __name__ == "__main__":
    main()
