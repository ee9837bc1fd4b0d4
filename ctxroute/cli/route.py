"""`ctxroute route`: show the routing decision for a question (no LLM call)."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from ctxroute.cli.common import collection_store, console, err_console

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
                 k: int | None = None, retriever: str | None = None, prototypes: bool | None = None,
                 compress_ratio: float | None = None, compress_tokens: int | None = None) -> Any:
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
    cfg = replace(cfg, **changes).with_compression(compress_ratio, compress_tokens)
    return Engine({col.name: col}, RoutingOnlyLLM(profile), config=cfg)


def _no_probe_decision(engine: Any, col: Any, question: str, budget: Any) -> Any:
    """The engine's pieces (its typer setting, sizes, estimate settings, policy) without the probe."""
    from ctxroute.router import QuestionTyper, build_features, make_router
    from ctxroute.router.features import CollectionStats

    cfg, llm = engine.config, engine.llm
    s = col.stats()
    stats = CollectionStats(s.n_docs, s.total_tokens, tuple(s.doc_tokens), s.n_passages, s.n_sections, s.passage_tokens)
    typer_obj = QuestionTyper(getattr(col, "embedder", None) if cfg.typer_embeddings else None)
    feats = build_features(question, stats, llm.profile, question_profile=typer_obj.classify(question), budget=budget,
                           count_tokens=llm.count_tokens)
    router = make_router(cfg.policy, params_path=cfg.router_params, settings=cfg.estimate_settings())
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
        compress_ratio: Optional[float] = typer.Option(
            None, help="compressed-lc's share (0-1] of the documents' tokens for its estimate (default 0.35)"),
        compress_tokens: Optional[int] = typer.Option(
            None, help="compressed-lc's absolute budget in tokens (alone: instead of the ratio; with it: the smaller)"),
    ) -> None:
        """Show how a question would be routed: route, fallbacks, reasons, estimates. Calls no LLM.

        Decides with the engine's own code (the same question typer, sizes, probe and policy as
        `ctxroute ask`), so both give the same decision for the same question and profile."""
        import asyncio

        from ctxroute.errors import CtxrouteError
        from ctxroute.pipelines.result import scoped
        from ctxroute.types import Budget

        try:
            prof = resolve_profile(profile)
            budget = Budget(max_tokens=budget_tokens, max_cost=budget_cost)
            col = collection_store().open(collection)
            engine = route_engine(col, prof, policy=policy, router_params=router_params, k=k, retriever=retriever,
                                  prototypes=prototypes, compress_ratio=compress_ratio, compress_tokens=compress_tokens)
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
