"""Recall@k of the gold evidence with the torch-free ONNX query encoder (the prepared copy with
int8 MatMuls, and the shipped file) against the fp32 torch model, on the same collections
(built once): the recall change the query encoder causes.

Uses ``retrieval_quality.py``'s data loaders and scoring (LooGLE sample and L-Eval contracts
by default). Run: ``nice -n 10 python benchmarks/encoder_recall.py [--limit-docs 4]
[--datasets loogle,leval_contracts]``. Prints one table; no timed assertions.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path
from typing import Sequence

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its scripts load each other
from _siblings import sibling as _sibling  # noqa: E402


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--datasets", default="loogle,leval_contracts")
    ap.add_argument("--limit-docs", type=int, default=4)
    a = ap.parse_args(argv)
    from ctxroute.retrievers import collection as collection_mod
    from ctxroute.retrievers.embedders import SentenceTransformerEmbedder, query_embedder

    q = _sibling("retrieval_quality")
    qadocs = q.load(a.data, a.datasets.split(","), a.limit_docs)  # type: ignore[attr-defined]
    embedder = SentenceTransformerEmbedder().load()  # ingestion: the default dtype
    ks = (1, 5, 10)
    out = {}
    with tempfile.TemporaryDirectory(prefix="ctxroute-encrecall-") as tmp:
        cache = Path(tmp)
        default_query_embedder = collection_mod.query_embedder
        for label, choice in (("ONNX, int8 MatMuls prepared once (default)", "auto"),
                              ("ONNX, the shipped file (fp32 MatMuls)", "shipped"),
                              ("fp32 torch query encoder", "fp32")):
            if choice == "auto":
                collection_mod.query_embedder = default_query_embedder  # type: ignore
            elif choice == "shipped":
                from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder

                shipped = OnnxMiniLMEmbedder(model="shipped")
                collection_mod.query_embedder = lambda emb, *args, **kw: query_embedder(shipped, "same")  # type: ignore
            else:
                fp32 = SentenceTransformerEmbedder(bf16=False, threads=1)
                collection_mod.query_embedder = lambda emb, *args, **kw: query_embedder(fp32, "same")  # type: ignore
            res = q.evaluate(qadocs, embedder, ks, retrievers=("dense", "hybrid"), cache=cache)  # type: ignore
            out[label] = {r.dataset: (r.scored_questions, r.recall) for r in res}
    print(f"ingestion dtype {embedder.dtype}; collections built once, queried with each encoder\n")
    print("| query encoder | data set | questions | dense R@1 / R@5 / R@10 | hybrid R@1 / R@5 / R@10 |")
    print("|---|---|---|---|---|")
    for label, per in out.items():
        for ds, (n, rec) in per.items():
            cells = [" / ".join(f"{rec[r][k]:.3f}" for k in ks) for r in ("dense", "hybrid")]
            print(f"| {label} | {ds} | {n} | {cells[0]} | {cells[1]} |")
    labels = list(out)
    for ds in out[labels[0]]:
        ref = out[labels[-1]][ds][1]
        for label in labels[:-1]:
            got = out[label][ds][1]
            print(f"\n{ds}: recall@10 change {label} - fp32: dense {got['dense'][10] - ref['dense'][10]:+.3f}, "
                  f"hybrid {got['hybrid'][10] - ref['hybrid'][10]:+.3f}")


if __name__ == "__main__":
    main()
