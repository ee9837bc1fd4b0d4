"""`ctxroute bench router`: routing overhead against a BM25 probe measured in the same run."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import typer

from ctxroute.cli.common import console, err_console


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("router")
    def bench_router(
        n: int = typer.Option(2000, min=10, help="routing calls per policy"),
        json_out: Optional[Path] = typer.Option(None, "--json-out", help="write the numbers as JSON here"),
    ) -> None:
        """Routing overhead (typing + features + policy, probe excluded), p50/p95, against one BM25 query."""
        from rich.progress import Progress

        with Progress(console=err_console, transient=True) as progress:
            task = progress.add_task("routing", total=None)

            def tick(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = run_router_bench(n=n, progress=tick)
        print_bench(result)
        if json_out:
            json_out.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")


def print_bench(result: dict[str, Any]) -> None:
    from rich.table import Table

    ref = result["reference"]
    console.print(f"reference: {ref['what']}: p50 {ref['p50_ms']:.3f} ms, p95 {ref['p95_ms']:.3f} ms")
    t = Table(title=f"routing overhead over {result['n']} calls ({result['questions']} distinct questions)")
    for col in ("policy", "p50 ms", "p95 ms", "p50 / ref", "p95 / ref"):
        t.add_column(col, justify="left" if col == "policy" else "right")
    for name, r in result["policies"].items():
        t.add_row(name, f"{r['p50_ms']:.3f}", f"{r['p95_ms']:.3f}", f"{r['p50_ratio']:.3f}", f"{r['p95_ratio']:.3f}")
    console.print(t)


BENCH_QUESTIONS: tuple[str, ...] = (
    "Who signed the lease on behalf of the tenant?",
    "What was the accuracy of the GRU-SVM model during testing as reported in paper 1?",
    "Compare the two methods described in the second section.",
    "How did adjusted EBITDA change from 2022 to 2023 for both segments?",
    "Summarize the main themes of the book.",
    "How many times does the ghost appear?",
    "Why does the narrator leave the office, and what does he learn?",
    "What is the projected revenue growth rate for next year?",
    "List all the obligations of the licensee.",
    "When does the agreement expire?",
    "What distinguishes Scrooge's view of Christmas from his nephew's?",
    "How does the choice of amateur model influence the performance of contrastive decoding?",
)


def _synthetic_corpus(n_passages: int = 2000, words: int = 180, seed: int = 0) -> list[str]:
    import random

    rng = random.Random(seed)
    vocab = sorted({w.strip("?,.'").lower() for q in BENCH_QUESTIONS for w in q.split()})
    vocab += [f"term{i}" for i in range(3000)]
    return [" ".join(rng.choice(vocab) for _ in range(words)) for _ in range(n_passages)]


def _pct(xs: list[float], q: float) -> float:
    import numpy as np

    return float(np.percentile(np.asarray(xs), q))


def run_router_bench(
    n: int = 2000,
    *,
    questions: Any = None,
    passages: Any = None,
    progress: Any = None,
) -> dict[str, Any]:
    """Time routing (question typing + probe signals from given hits + features + policy; the
    retrieval itself excluded) against one BM25 query over the same passages, same run."""
    import time

    import bm25s
    import numpy as np

    from ctxroute.retrievers.embedders import HashingEmbedder
    from ctxroute.router import (
        FEATURE_NAMES,
        CascadeRouter,
        CollectionStats,
        LearnedRouter,
        QuestionTyper,
        RulesRouter,
        SelfRouteRouter,
        answer_signals,
        build_features,
        fit_learned,
        make_router,
        probe_signals,
    )
    from ctxroute.router.policies import LLM_ROUTES
    from ctxroute.types import Budget, Chunk, Level, ModelProfile, ScoredChunk

    qs = list(questions or BENCH_QUESTIONS)
    texts = list(passages or _synthetic_corpus())
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenize(texts, stopwords="en", show_progress=False), show_progress=False)
    chunks = []
    pos = 0
    for i, t in enumerate(texts):
        chunks.append(Chunk(id=f"p{i}", doc_id="d0", level=Level.PASSAGE, start=pos, end=pos + len(t),
                            parent_id=f"s{i // 8}", ordinal=i))
        pos += len(t) + 1

    def bm25(q: str) -> list[ScoredChunk]:
        ids, scores = retriever.retrieve(bm25s.tokenize([q], stopwords="en", show_progress=False), k=10,
                                         show_progress=False)
        return [ScoredChunk(chunks[int(i)], float(s), "bm25") for i, s in zip(ids[0], scores[0])]

    # reference: one BM25 probe query (tokenise + retrieve), the cheapest probe there is
    hits = {q: bm25(q) for q in qs}
    ref: list[float] = []
    for i in range(max(50, n // 4)):
        q = qs[i % len(qs)]
        t0 = time.perf_counter_ns()
        bm25(q)
        ref.append((time.perf_counter_ns() - t0) / 1e6)

    n_tokens = sum(len(t) for t in texts) // 4
    stats = CollectionStats(1, n_tokens, (n_tokens,), n_passages=len(texts))
    profile = ModelProfile("bench", 128_000, 64_000, 0.0025, 0.01, size_class="large")
    budget = Budget(max_tokens=50_000)
    rules_typer = QuestionTyper()
    emb = HashingEmbedder(dim=384)
    proto_typer = QuestionTyper(emb)
    q_vecs = {q: emb.embed([q])[0] for q in qs}

    # a learned policy fitted on synthetic outcomes (the fit is not timed)
    rng = np.random.default_rng(0)
    X = np.vstack([
        build_features(qs[i % len(qs)], CollectionStats(1, int(t), (int(t),)), profile,
                       question_profile=rules_typer.classify(qs[i % len(qs)])).vector()
        for i, t in enumerate(rng.integers(1_000, 200_000, 60))
    ])
    params = fit_learned(X, {r: (rng.random(60) < 0.5).astype(int) for r in LLM_ROUTES},
                         {r: rng.random(60) * 1e4 for r in LLM_ROUTES}, FEATURE_NAMES)

    setups = {
        "rules": (rules_typer, RulesRouter(), False),
        "rules+prototypes": (proto_typer, RulesRouter(), True),
        "self-route": (rules_typer, SelfRouteRouter(), False),
        "learned": (rules_typer, LearnedRouter(params), False),
        "cascade (route + answer-side step)": (rules_typer, make_router("cascade"), False),
    }
    answers = ("The provided passages do not mention it.", "It was reported at 12.4 percent in 2031 [S3].")
    out: dict[str, Any] = {}
    ref_p50, ref_p95 = _pct(ref, 50), _pct(ref, 95)
    total_calls = n * len(setups)
    done = 0
    for name, (typer_obj, router, use_vec) in setups.items():
        times: list[float] = []
        for i in range(n):
            q = qs[i % len(qs)]
            t0 = time.perf_counter_ns()
            qp = typer_obj.classify(q, embedding=q_vecs[q] if use_vec else None)
            probe = probe_signals(hits[q])
            f = build_features(q, stats, profile, question_profile=qp, probe=probe, budget=budget)
            d = router.route(f, profile, budget)
            if isinstance(router, CascadeRouter):  # the step after the RAG answer, on the same hits
                sig = answer_signals(q, answers[i % 2], context=[texts[int(h.chunk.id[1:])] for h in hits[q][:5]],
                                     n_citations=i % 2, n_markers=i % 2)
                router.after_answer(f, sig, d, spent_tokens=3_000, budget=budget)
            times.append((time.perf_counter_ns() - t0) / 1e6)
            done += 1
            if progress is not None and done % 200 == 0:
                progress(done, total_calls)
        p50, p95 = _pct(times, 50), _pct(times, 95)
        out[name] = {"p50_ms": p50, "p95_ms": p95, "p50_ratio": p50 / ref_p50, "p95_ratio": p95 / ref_p95}
    return {
        "n": n,
        "questions": len(qs),
        "reference": {"what": f"one BM25 query (bm25s) over {len(texts)} passages", "p50_ms": ref_p50, "p95_ms": ref_p95},
        "policies": out,
    }
