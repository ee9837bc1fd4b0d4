"""`ctxroute route`: show the routing decision for a question (no LLM call), and
`ctxroute bench router`: routing overhead against a BM25 probe measured in the same run."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from ctxroute.cli.common import console, data_dir, err_console

DEFAULT_PROFILE = "smollm2-135m-instruct"


def resolve_profile(name: str | None) -> Any:
    """--profile, else $CTXROUTE_LLM_PROFILE, else the embedded demo model; extra profile
    files from $CTXROUTE_MODEL_PROFILES (os.pathsep-separated)."""
    from ctxroute.profiles import get_profile

    extra_env = os.environ.get("CTXROUTE_MODEL_PROFILES", "")
    extra = [Path(p) for p in extra_env.split(os.pathsep) if p] or None
    return get_profile(name or os.environ.get("CTXROUTE_LLM_PROFILE") or DEFAULT_PROFILE, extra)


def decision_to_dict(decision: Any) -> dict[str, Any]:
    """JSON-safe view of a RoutingDecision."""
    return {
        "route": decision.route.value,
        "fallbacks": [r.value for r in decision.fallbacks],
        "policy": decision.policy,
        "reasons": list(decision.reasons),
        "features": dict(decision.features),
        "estimates": [
            {
                "route": e.route.value,
                "prompt_tokens": e.prompt_tokens,
                "completion_tokens": e.completion_tokens,
                "total_tokens": e.total_tokens,
                "calls": e.calls,
                "cost": e.cost,
                "feasible": e.feasible,
                "why_not": e.why_not,
            }
            for e in decision.estimates
        ],
    }


def print_decision(decision: Any, *, show_features: bool = True) -> None:
    from rich.table import Table

    from ctxroute.router.policies import over_budget
    from ctxroute.types import Budget

    fb = ", ".join(r.value for r in decision.fallbacks) or "none"
    console.print(f"[bold]route:[/bold] [green]{decision.route.value}[/green]   "
                  f"[bold]fallbacks:[/bold] {fb}   [dim]policy {decision.policy}[/dim]")
    for reason in decision.reasons:
        console.print(f"  - {reason}")
    f = decision.features
    budget = Budget(
        max_tokens=int(f["budget_tokens"]) if float(f.get("budget_tokens", -1)) >= 0 else None,
        max_cost=float(f["budget_cost"]) if float(f.get("budget_cost", -1)) >= 0 else None,
    )
    t = Table(title="estimates")
    for col in ("route", "prompt tokens", "total tokens", "calls", "cost (USD)", "status"):
        t.add_column(col, justify="right" if "tokens" in col or col in ("calls", "cost (USD)") else "left")
    for e in decision.estimates:
        status = "chosen" if e.route == decision.route else ("ok" if e.feasible else f"infeasible: {e.why_not}")
        if e.feasible and e.route != decision.route and over_budget(e, budget):
            status = "over budget"
        t.add_row(e.route.value, f"{e.prompt_tokens:,}", f"{e.total_tokens:,}", str(e.calls), f"{e.cost:.4f}", status)
    console.print(t)
    if show_features:
        ft = Table(title="features")
        ft.add_column("feature")
        ft.add_column("value", justify="right")
        for k, v in f.items():
            ft.add_row(k, v if isinstance(v, str) else f"{v:g}")
        console.print(ft)


class RoutingOnlyLLM:
    """An ``LLMClient`` that knows its model profile and counts tokens like a real client, and
    refuses to generate: ``ctxroute route`` decides with the engine's own code without a model."""

    def __init__(self, profile: Any) -> None:
        from ctxroute.pipelines.llm.openai import counter_for

        self.profile = profile
        self._counter = counter_for(profile)

    def count_tokens(self, text: str) -> int:
        return self._counter.count(text)

    async def complete(self, request: Any) -> Any:
        from ctxroute.errors import LLMError

        raise LLMError("ctxroute route only decides; it calls no model")

    def stream(self, request: Any) -> Any:
        from ctxroute.errors import LLMError

        raise LLMError("ctxroute route only decides; it calls no model")

    async def aclose(self) -> None:
        return None


def route_engine(col: Any, profile: Any, *, policy: str | None = None, router_params: Path | None = None,
                 k: int | None = None, retriever: str | None = None, prototypes: bool | None = None) -> Any:
    """The Engine ``ctxroute ask`` would route with (same config defaults, same question typer),
    over ``col``, with a model that only has ``profile``. Unset options keep EngineConfig's defaults."""
    from dataclasses import replace

    from ctxroute.pipelines.engine import Engine, EngineConfig

    cfg = EngineConfig()
    changes: dict[str, Any] = {}
    if policy is not None:
        changes["policy"] = policy
    if router_params is not None:
        changes["router_params"] = str(router_params)
    if k is not None:
        changes["probe_k"] = k
    if retriever is not None:
        changes["probe_retriever"] = retriever
    if prototypes is not None:
        changes["typer_embeddings"] = prototypes
    return Engine({col.name: col}, RoutingOnlyLLM(profile), config=replace(cfg, **changes))


def _no_probe_decision(engine: Any, col: Any, question: str, budget: Any) -> Any:
    """The engine's pieces (its typer setting, sizes, estimate settings, policy) without the probe."""
    from ctxroute.router import EstimateSettings, QuestionTyper, build_features, make_router
    from ctxroute.router.features import CollectionStats

    cfg, llm = engine.config, engine.llm
    s = col.stats()
    stats = CollectionStats(s.n_docs, s.total_tokens, tuple(s.doc_tokens), s.n_passages, s.n_sections, s.passage_tokens)
    typer_obj = QuestionTyper(getattr(col, "embedder", None) if cfg.typer_embeddings else None)
    feats = build_features(question, stats, llm.profile, question_profile=typer_obj.classify(question), budget=budget,
                           count_tokens=llm.count_tokens)
    settings = EstimateSettings(rag_context_tokens=cfg.rag.context_tokens, answer_tokens=cfg.rag.max_tokens)
    router = make_router(cfg.policy, params_path=cfg.router_params, settings=settings)
    return router.route(feats, llm.profile, budget)


def scope_to_dict(col: Any, decision: Any) -> dict[str, Any]:
    """Sizes the decision was made on (the scoped documents when ``--doc`` was given)."""
    s = col.stats()
    return {
        "name": col.name,
        "doc_ids": list(getattr(s, "doc_ids", ()) or ()),
        "n_docs": int(s.n_docs),
        "total_tokens": int(s.total_tokens),
        "doc_tokens": [int(t) for t in s.doc_tokens],
        "n_passages": int(s.n_passages),
        "scoped": hasattr(col, "scope"),
    }


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def route(
        question: str = typer.Argument(..., help="the question to route"),
        collection: str = typer.Option(..., "--collection", "-c", help="collection name (see `ctxroute collections list`)"),
        policy: Optional[str] = typer.Option(
            None, help="router policy (default: the engine's, as `ctxroute ask` uses): rules | self-route | learned | "
                       "rag | lc | mr | hybrid | extractive and any other name make_router knows"),
        router_params: Optional[Path] = typer.Option(None, "--router-params", help="fitted parameters for --policy learned"),
        profile: Optional[str] = typer.Option(None, help="model profile (default $CTXROUTE_LLM_PROFILE or smollm2-135m-instruct)"),
        budget_tokens: Optional[int] = typer.Option(None, min=1, help="token budget (prompt + completion, all calls)"),
        budget_cost: Optional[float] = typer.Option(None, min=0.0, help="cost budget in USD"),
        retriever: Optional[str] = typer.Option(None, help="retriever for the probe: hybrid | dense | bm25 | graph (default: the engine's)"),
        k: Optional[int] = typer.Option(None, min=1, help="probe depth (default: the engine's)"),
        no_probe: bool = typer.Option(False, "--no-probe", help="route without the retrieval probe"),
        prototypes: Optional[bool] = typer.Option(
            None, "--prototypes/--no-prototypes",
            help="blend question-type prototypes embedded with the collection's embedder (default: as the engine does)"),
        doc: Optional[List[str]] = typer.Option(
            None, "--doc", help="route over this document id only (repeatable; as `ctxroute ask --doc`): sizes and probe "
                                "see only these documents"),
        as_json: bool = typer.Option(False, "--json", help="print the decision as JSON"),
        features: bool = typer.Option(False, "--features", help="also print the feature table"),
    ) -> None:
        """Show how a question would be routed: route, fallbacks, reasons, estimates. Calls no LLM.

        Decides with the engine's own code (the same question typer, sizes, probe and policy as
        `ctxroute ask`), so both give the same decision for the same question and profile."""
        import asyncio

        from ctxroute.errors import CtxrouteError
        from ctxroute.pipelines.result import scoped
        from ctxroute.retrievers.collection import CollectionStore
        from ctxroute.types import Budget

        try:
            prof = resolve_profile(profile)
            budget = Budget(max_tokens=budget_tokens, max_cost=budget_cost)
            col = CollectionStore(data_dir() / "collections").open(collection)
            engine = route_engine(col, prof, policy=policy, router_params=router_params, k=k, retriever=retriever,
                                  prototypes=prototypes)
            view = scoped(col, list(doc) if doc else None)
            if no_probe:
                decision = _no_probe_decision(engine, view, question.strip(), budget)
            else:
                decision = asyncio.run(engine.decide(question, collection, budget=budget,
                                                     docs=list(doc) if doc else None))
            scope = scope_to_dict(view, decision)
        except CtxrouteError as exc:
            err_console.print(f"[red]error:[/red] {exc.message}")
            raise typer.Exit(2) from None
        if as_json:
            data = decision_to_dict(decision)
            data["collection"] = scope
            data["model"] = {"profile": prof.name, "context_window": prof.context_window,
                             "usable_window": prof.usable_window, "size_class": prof.size_class}
            typer.echo(json.dumps(data, indent=2))
        else:
            where = f"{scope['n_docs']} of the collection's docs (--doc)" if scope["scoped"] else f"{scope['n_docs']} docs"
            console.print(f"[dim]model {prof.name} (usable window {prof.usable_window:,} of {prof.context_window:,}; "
                          f"{prof.size_class}); collection {collection}: {where}, "
                          f"{scope['total_tokens']:,} tokens[/dim]")
            print_decision(decision, show_features=features)

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
