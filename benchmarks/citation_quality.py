"""Citation quality per route on real QA sets: do the citations verify, and do they point at
the gold evidence?

Data (read-only, never copied): ``../shared/data`` (see its README.md), loaded with
``ctxroute.eval.datasets``: the LooGLE sample (gold evidence = the ``S`` sentences, placed in
the article by normalised matching) and the L-Eval legal contracts (the gold answer is a
verbatim clause). Only questions whose evidence could be placed are used.

One collection per document (questions ask about their own document). For every question
and route the Engine answers; the table reports, per dataset and route:

- ``cit/q``: citations kept per answered question;
- ``verified``: share of the citations the model made that passed verification (the id
  existed and the sentence supports the claim); the extractive reader quotes sentences
  directly, so its share is 1 by construction;
- ``on gold``: share of kept citations whose span overlaps a gold evidence span;
- ``q hit``: share of questions with at least one kept citation on the gold evidence;
- ``abst``: share of questions answered with an abstention;
- ``attr/q`` and ``attr on gold`` (with ``--attribute``): labelled post-hoc attributions of
  uncited claims, counted apart from the model's own citations;
- tokens in / out per question and seconds per question.

Run: ``python benchmarks/citation_quality.py [--data ../shared/data] [--limit 12]
[--max-docs 4] [--routes extractive,rag] [--embedder hashing|minilm] [--llm local|none]
[--max-tokens 96] [--out citation_quality.json]``.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import sys
import tempfile
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.types import Answer, Route

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DATASETS = ("loogle", "leval-legal")


@dataclass
class Tally:
    questions: int = 0
    abstained: int = 0
    kept: int = 0
    removed: int = 0
    on_gold: int = 0
    q_hit: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    seconds: float = 0.0
    routes_taken: dict[str, int] = field(default_factory=dict)
    errors: int = 0
    attributed: int = 0
    attributed_on_gold: int = 0

    def row(self) -> dict[str, Any]:
        q = max(1, self.questions)
        made = self.kept + self.removed
        return {
            "questions": self.questions,
            "abstained": round(self.abstained / q, 3),
            "citations_per_q": round(self.kept / q, 2),
            "verified": round(self.kept / made, 3) if made else None,
            "on_gold": round(self.on_gold / self.kept, 3) if self.kept else None,
            "q_hit": round(self.q_hit / q, 3),
            "prompt_tokens_per_q": round(self.prompt_tokens / q),
            "completion_tokens_per_q": round(self.completion_tokens / q),
            "seconds_per_q": round(self.seconds / q, 2),
            "routes_taken": dict(self.routes_taken),
            "errors": self.errors,
            "attributed_per_q": round(self.attributed / q, 2),
            "attributed_on_gold": round(self.attributed_on_gold / self.attributed, 3) if self.attributed else None,
        }


def load(name: str, data: Path) -> Any:
    from ctxroute.eval.datasets import load_leval_legal, load_loogle

    if name == "loogle":
        return load_loogle(data / "LooGLE")
    if name == "leval-legal":
        return load_leval_legal(data / "L-Eval")
    raise SystemExit(f"unknown dataset {name!r}; use {', '.join(DATASETS)}")


def select(dataset: Any, limit: int, max_docs: int) -> list[Any]:
    """Questions with placed evidence, round-robin over the first ``max_docs`` documents."""
    by_doc: dict[str, list[Any]] = defaultdict(list)
    for item in dataset.items:
        if len(item.docs) == 1 and any(e.resolved for e in item.evidence):
            by_doc[item.docs[0]].append(item)
    docs = list(by_doc)[:max_docs]
    out: list[Any] = []
    while len(out) < limit and any(by_doc[d] for d in docs):
        for d in docs:
            if by_doc[d] and len(out) < limit:
                out.append(by_doc[d].pop(0))
    return out


def overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def score(answer: Answer, item: Any, doc_id: str, tally: Tally) -> None:
    gold = [(e.start, e.end) for e in item.evidence if e.resolved]
    tally.questions += 1
    tally.abstained += int(answer.abstained)
    kept = [c for c in answer.citations if c.origin != "attributed"]
    tally.kept += len(kept)
    tally.removed += sum(w.startswith("citation [") for w in answer.warnings)
    hits = [c for c in kept if c.doc_id == doc_id and any(overlaps((c.start, c.end), g) for g in gold)]
    tally.on_gold += len(hits)
    tally.q_hit += int(bool(hits))
    attributed = [c for c in answer.citations if c.origin == "attributed"]
    tally.attributed += len(attributed)
    tally.attributed_on_gold += sum(
        1 for c in attributed if c.doc_id == doc_id and any(overlaps((c.start, c.end), g) for g in gold))
    tally.prompt_tokens += answer.prompt_tokens
    tally.completion_tokens += answer.completion_tokens
    tally.routes_taken[answer.route_taken.value] = tally.routes_taken.get(answer.route_taken.value, 0) + 1


async def run(args: argparse.Namespace) -> dict[str, Any]:
    from dataclasses import replace

    from ctxroute.pipelines.engine import Engine, EngineConfig
    from ctxroute.retrievers.collection import CollectionStore
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.retrievers.embedders import make_embedder

    embedder = make_embedder(None if args.embedder == "minilm" else args.embedder)
    llm = None
    if args.llm == "local" and any(r != "extractive" for r in args.routes):
        from ctxroute.pipelines.llm.local import LocalLLM

        llm = LocalLLM()
        llm.load()
    config = EngineConfig.with_answer_tokens(args.max_tokens, escalate=False)
    config = replace(config, rag=replace(config.rag, context_tokens=args.rag_context_tokens),
                     citations=replace(config.citations, attribute_uncited=args.attribute))
    results: dict[str, Any] = {"settings": {k: v for k, v in vars(args).items() if k != "data"}, "datasets": {}}
    with tempfile.TemporaryDirectory(prefix="ctxroute-citq-") as tmp:
        store = CollectionStore(Path(tmp))
        for ds_name in args.datasets:
            dataset = load(ds_name, args.data)
            items = select(dataset, args.limit, args.max_docs)
            collections: dict[str, tuple[str, str]] = {}  # dataset doc key -> (collection name, doc id)
            t0 = time.perf_counter()
            for key in dict.fromkeys(i.docs[0] for i in items):
                name = f"d{len(collections)}-{ds_name}"
                src = dataset.documents[key]
                doc = document_from_text(src.text, title=src.title, source=key)
                store.create(name, embedder=embedder).add_documents([doc])
                collections[key] = (name, doc.id)
            ingest_s = time.perf_counter() - t0
            engine = Engine(store, llm, config=config)
            tallies: dict[str, Tally] = {}
            for route in args.routes:
                if route != "extractive" and llm is None:
                    continue
                tally = tallies.setdefault(route, Tally())
                for n, item in enumerate(items, 1):
                    name, doc_id = collections[item.docs[0]]
                    t1 = time.perf_counter()
                    try:
                        answer = await engine.answer(item.question, name, route=route)
                    except Exception as exc:  # a benchmark records failures and goes on
                        tally.errors += 1
                        print(f"  {ds_name} {route} #{n}: {type(exc).__name__}: {exc}", file=sys.stderr)
                        continue
                    tally.seconds += time.perf_counter() - t1
                    score(answer, item, doc_id, tally)
                    print(f"  {ds_name} {route} {n}/{len(items)} ({time.perf_counter() - t1:.1f} s)", file=sys.stderr)
            results["datasets"][ds_name] = {
                "questions": len(items),
                "documents": len(collections),
                "unplaced_evidence_in_dataset": dataset.unresolved,
                "ingest_seconds": round(ingest_s, 1),
                "routes": {r: t.row() for r, t in tallies.items()},
            }
    if llm is not None:
        await llm.aclose()
    return results


def table(results: dict[str, Any]) -> str:
    lines = [
        "| dataset | route | questions | cit/q | verified | on gold | q hit | abst | attr/q | attr on gold "
        "| tokens in/q | tokens out/q | s/q |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for ds, block in results["datasets"].items():
        for route, r in block["routes"].items():
            fmt = lambda v: "n/a" if v is None else f"{v:.2f}"  # noqa: E731
            lines.append(
                f"| {ds} | {route} | {r['questions']} | {r['citations_per_q']:.2f} | {fmt(r['verified'])} | "
                f"{fmt(r['on_gold'])} | {r['q_hit']:.2f} | {r['abstained']:.2f} | {r['attributed_per_q']:.2f} | "
                f"{fmt(r['attributed_on_gold'])} | {r['prompt_tokens_per_q']:,} | "
                f"{r['completion_tokens_per_q']:,} | {r['seconds_per_q']:.1f} |"
            )
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=DEFAULT_DATA)
    p.add_argument("--datasets", default=",".join(DATASETS))
    p.add_argument("--limit", type=int, default=12, help="questions per dataset")
    p.add_argument("--max-docs", type=int, default=4, help="documents per dataset (one collection each)")
    p.add_argument("--routes", default="extractive,rag")
    p.add_argument("--embedder", default="hashing", help="hashing (fast) or minilm")
    p.add_argument("--llm", default="local", choices=("local", "none"))
    p.add_argument("--max-tokens", type=int, default=96)
    p.add_argument("--rag-context-tokens", type=int, default=1500)
    p.add_argument("--attribute", action="store_true",
                   help="attach uncited claims to their best-supporting sentence (counted apart: attr/q, attr on gold)")
    p.add_argument("--out", type=Path)
    args = p.parse_args(argv)
    args.datasets = [d for d in args.datasets.split(",") if d]
    args.routes = [r for r in args.routes.split(",") if r]
    for r in args.routes:
        Route(r)  # fails early on a typo
    if not args.data.is_dir():
        print(f"data folder {args.data} not found (see ../shared/data/README.md)", file=sys.stderr)
        return 1
    results = asyncio.run(run(args))
    print(table(results))
    if args.out:
        args.out.write_text(json.dumps(results, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
