"""`ctxroute ask` (routed QA with verified citations) and `ctxroute demo`."""
from __future__ import annotations

import asyncio
import json
import re
import time
from dataclasses import dataclass
from typing import Any, List, Optional

import typer

from ctxroute.cli.common import build_llm_from_env, cli_errors, collection_store, console, err_console
from ctxroute.retrievers.demo import DEMO_COLLECTION, DEMO_DOCS, DEMO_SEED, DEMO_WORDS, ensure_demo_collection

ROUTES = ("auto", "rag", "lc", "mr", "hybrid", "extractive", "compressed-lc")


@dataclass(frozen=True)
class DemoQuestion:
    question: str
    gold: str
    why: str


def demo_questions() -> list[tuple[str, tuple[DemoQuestion, ...], frozenset[str]]]:
    """Slots of the demo: (name, candidate questions about the first report with the
    generator's gold answers, routes the slot wants to show). The demo asks, per slot, the
    first candidate the router sends to a wanted route (else the first candidate)."""
    from ctxroute.synthetic import generate_corpus

    doc = generate_corpus(seed=DEMO_SEED, n_docs=DEMO_DOCS, n_words=DEMO_WORDS)[0]
    company = doc.title.split(" Annual Report")[0]
    by_task: dict[str, list[Any]] = {}
    for qa in doc.qa:
        by_task.setdefault(qa.task, []).append(qa)
    def own(question: str) -> str:  # both reports have divisions of the same names: say whose
        if company in question:
            return question
        return re.sub(r"\b(the \w+ division)\b", rf"\1 of {company}", question, count=1)

    lookup = tuple(DemoQuestion(own(qa.question), qa.answer, "a single-fact lookup: retrieval should do")
                   for qa in by_task.get("lookup", []))
    whole: list[DemoQuestion] = []
    for qa in by_task.get("aggregation", []) + by_task.get("count", []):
        m = re.match(r"Which divisions grew their revenue in (\d{4}) compared with (\d{4})\?", qa.question)
        if m:  # the same question, worded as a list over the whole report
            q = f"List all divisions of {company} whose revenue grew from {m.group(2)} to {m.group(1)}."
            whole.insert(0, DemoQuestion(q, qa.answer, "needs every division's figures: the whole document"))
        else:
            whole.append(DemoQuestion(qa.question, qa.answer, "needs the whole document"))
    unanswerable = tuple(DemoQuestion(qa.question, qa.answer, "not in the documents: the answer should abstain")
                         for qa in sorted(by_task.get("unanswerable", []), key=lambda qa: "Chief" not in qa.question))
    return [
        ("lookup", lookup, frozenset({"rag"})),
        ("whole-document", tuple(whole), frozenset({"mr", "lc"})),
        ("unanswerable", unanswerable, frozenset()),
    ]


async def pick_demo_question(engine: Any, candidates: tuple[DemoQuestion, ...], wanted: frozenset[str],
                             docs: list[str] | None = None) -> DemoQuestion:
    """The first candidate routed to a wanted route (routing only: no LLM call), preferring one
    the router did not also flag as likely unanswerable."""
    if wanted and engine.llm is not None:
        routed: list[DemoQuestion] = []
        for dq in candidates[:8]:
            decision = await engine.decide(dq.question, DEMO_COLLECTION, docs=docs)
            if decision.route.value in wanted:
                if not any("unanswerable" in r for r in decision.reasons):
                    return dq
                routed.append(dq)
        if routed:
            return routed[0]
    return candidates[0]


def _engine_config(max_tokens: int, policy: str, router_params: Optional[str], mr_mode: str, min_support: float,
                   attribute: bool = False, rag_context_tokens: int | None = None, compress_ratio: float | None = None,
                   compress_tokens: int | None = None) -> Any:
    from dataclasses import replace

    from ctxroute.pipelines.citations import CitationConfig
    from ctxroute.pipelines.engine import EngineConfig

    cfg = EngineConfig.with_answer_tokens(max_tokens, policy=policy, router_params=router_params)
    cfg = cfg.with_compression(compress_ratio, compress_tokens)
    if rag_context_tokens:
        cfg = replace(cfg, rag=replace(cfg.rag, context_tokens=rag_context_tokens))
    return replace(cfg, mr=replace(cfg.mr, mode=mr_mode),
                   citations=CitationConfig(min_support=min_support, attribute_uncited=attribute))


def _span(c: Any) -> str:
    return f"{c.start}-{c.end}" + (f" (p. {c.page})" if c.page else "")


def answer_warnings(answer: Any) -> list[str]:
    """The answer's warnings, one per fact: an attribution note already says the model cited
    nothing, so the bare "cited no source sentence" goes."""
    warnings = list(answer.warnings)
    if any(w.startswith("the model cited no sentence; ctxroute attributed") for w in warnings):
        warnings = [w for w in warnings if w != "the model cited no source sentence"]
    return warnings


def print_answer(answer: Any, *, question: str, gold: str | None = None) -> None:
    """Answer, citations, route and reasons, usage per call and latency per stage."""
    from rich.markup import escape
    from rich.panel import Panel
    from rich.table import Table

    title = f"[bold]{escape(question)}[/bold]"
    body = escape(answer.text)
    if answer.abstained:
        body = f"[yellow]abstained[/yellow]: {body}"
    if gold is not None:
        body += f"\n[dim]gold answer: {escape(gold)}[/dim]"
    console.print(Panel(body, title=title, title_align="left"))

    d = answer.decision
    route_line = f"[bold]route[/bold] {d.route.value} (policy {d.policy})"
    if answer.route_taken != d.route:
        route_line += f" -> taken: [bold]{answer.route_taken.value}[/bold]"
    console.print(route_line)
    for r in d.reasons:
        console.print(f"  - {escape(r)}", highlight=False)
    for f in answer.fallbacks_taken:
        console.print(f"  [magenta]fallback[/magenta] {escape(f)}", highlight=False)

    if answer.citations:
        t = Table(title="citations (verified against the source)", title_justify="left", show_lines=False)
        for col in ("#", "document", "span", "support", "by", "quoted sentence"):
            t.add_column(col, overflow="fold")
        for i, c in enumerate(answer.citations, 1):
            t.add_row(str(i), escape(c.title or c.doc_id), _span(c), f"{c.supports:.2f}", c.origin,
                      escape(" ".join(c.quote.split())))
        console.print(t)
    else:
        console.print("[dim]no verified citations[/dim]")
    warnings = answer_warnings(answer)
    removed = sum(w.startswith("citation [") for w in warnings)
    if removed:
        console.print(f"[red]{removed} citation(s) the model made were removed by verification[/red] (see warnings)")

    if answer.usage:
        u = Table(title="LLM calls", title_justify="left")
        for col in ("stage", "model", "tokens in", "tokens out", "latency ms", "cost"):
            u.add_column(col, justify="right" if col not in ("stage", "model") else "left")
        for call in answer.usage:
            u.add_row(call.stage, call.model, f"{call.prompt_tokens:,}", f"{call.completion_tokens:,}",
                      f"{call.latency_ms:,.0f}", f"{call.cost:.5f}" + (" (cached)" if call.cached else ""))
        u.add_row("[bold]total[/bold]", "", f"{answer.prompt_tokens:,}", f"{answer.completion_tokens:,}", "", f"{answer.cost:.5f}")
        console.print(u)
    lat = ", ".join(f"{k} {v:,.0f} ms" for k, v in answer.latency_ms.items())
    console.print(f"[bold]latency[/bold] {lat}")
    for w in warnings:
        console.print(f"[yellow]warning[/yellow] {escape(w)}", highlight=False, soft_wrap=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @app.command()
    def ask(
        question: str = typer.Argument(..., help="the question"),
        collection: str = typer.Option(..., "--collection", "-c", help="collection name"),
        route: str = typer.Option("auto", help="auto | rag | lc | mr | hybrid | extractive | compressed-lc"),
        as_json: bool = typer.Option(False, "--json", help="print the Answer as JSON"),
        llm: Optional[str] = typer.Option(
            None, help="local | openai | scripted | extractive (no LLM); default $CTXROUTE_LLM_BACKEND, else local"),
        policy: str = typer.Option("auto", help="router policy for --route auto: auto (= cascade) | cascade | rules | self-route | learned"),
        router_params: Optional[str] = typer.Option(None, help="your own fitted parameters for --policy learned or cascade (default: the shipped ones)"),
        budget_tokens: Optional[int] = typer.Option(None, help="most tokens (in + out) over all LLM calls"),
        budget_cost: Optional[float] = typer.Option(None, help="most cost (USD) over all LLM calls"),
        max_tokens: int = typer.Option(300, help="most tokens each LLM call may produce"),
        mr_mode: str = typer.Option("parallel", help="map-reduce mode: parallel | chain (chain-of-agents)"),
        min_support: float = typer.Option(0.35, help="least support (0-1) a cited sentence must give its claim"),
        attribute: bool = typer.Option(
            False, help="when the model cites nothing, attach claims to their best-supporting sentence (labelled)"),
        doc: Optional[List[str]] = typer.Option(
            None, "--doc", help="answer over this document id only (repeatable; default: the whole collection)"),
        compress_ratio: Optional[float] = typer.Option(
            None, help="compressed-lc keeps this share (0-1] of the documents' tokens (default 0.35); the router's estimate follows"),
        compress_tokens: Optional[int] = typer.Option(
            None, help="compressed-lc keeps at most this many tokens (alone: instead of the ratio; with it: the smaller)"),
    ) -> None:
        """Answer QUESTION over a collection, with verified citations, the route and why, tokens and latency."""
        from ctxroute.pipelines.engine import Engine
        from ctxroute.pipelines.result import answer_to_dict
        from ctxroute.types import Budget

        if route not in ROUTES:
            err_console.print(f"[red]error:[/red] unknown route {route!r}; use one of {', '.join(ROUTES)}")
            raise typer.Exit(2)
        with cli_errors():
            coll = collection_store().open(collection)
            client = build_llm_from_env(llm)
            engine = Engine({collection: coll}, client,
                            config=_engine_config(max_tokens, policy, router_params, mr_mode, min_support, attribute,
                                                  compress_ratio=compress_ratio, compress_tokens=compress_tokens))
            budget = Budget(max_tokens=budget_tokens, max_cost=budget_cost)

            async def run() -> Any:
                # streamed so map-reduce calls show a progress bar (stderr); the answer is the final event
                bar: Any = None
                task: Any = None
                answer: Any = None
                try:
                    async for ev in engine.answer_stream(question, collection, route=None if route == "auto" else route,
                                                         budget=budget, docs=list(doc) if doc else None):
                        if ev.kind == "progress":
                            if bar is None:
                                from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

                                bar = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                               TimeElapsedColumn(), console=err_console, transient=True)
                                bar.start()
                                task = bar.add_task("map-reduce: map calls", total=ev.data["total"])
                            if ev.data["stage"] == "reduce":
                                bar.update(task, description="map-reduce: reduce call", completed=ev.data["done"], total=1)
                            else:
                                bar.update(task, description="map-reduce: map calls", completed=ev.data["done"], total=ev.data["total"])
                        elif ev.kind == "final":
                            answer = ev.data
                finally:
                    if bar is not None:
                        bar.stop()
                    await engine.aclose()
                return answer

            answer = asyncio.run(run())
        if as_json:
            data = answer_to_dict(answer)
            data["warnings"] = answer_warnings(answer)
            data["question"] = question
            data["collection"] = {"name": collection, "version": coll.version}
            typer.echo(json.dumps(data, indent=2, ensure_ascii=False))
        else:
            print_answer(answer, question=question)

    @app.command()
    def demo(
        llm: Optional[str] = typer.Option(None, help="local (default) | openai | extractive"),
        embedder: Optional[str] = typer.Option(None, help="minilm (default) | hashing (fast test double)"),
        max_tokens: int = typer.Option(128, help="most tokens each LLM call may produce (keep it small on CPU)"),
        questions: int = typer.Option(3, help="how many demo questions to ask (lookup, whole-document, unanswerable)"),
        as_json: bool = typer.Option(False, "--json", help="print the answers as JSON lines"),
        attribute: bool = typer.Option(
            True, help="attach uncited claims to their best-supporting sentence (labelled 'attributed')"),
        rag_context_tokens: int = typer.Option(1500, help="RAG context size (small models do better with less)"),
    ) -> None:
        """Build the demo collection (synthetic annual reports, MiniLM) if needed, then answer a few
        questions with routing and verified citations on the embedded local model."""
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        from ctxroute.pipelines.engine import Engine
        from ctxroute.pipelines.result import answer_to_dict

        with cli_errors():
            store = collection_store()
            t0 = time.perf_counter()
            with Progress(TextColumn("{task.description:<22}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=err_console, transient=True) as bar:
                tasks: dict[str, Any] = {}

                def progress(stage: str, done: int, total: int) -> None:
                    if stage not in tasks:
                        tasks[stage] = bar.add_task(f"demo collection: {stage}", total=max(total, 1))
                    bar.update(tasks[stage], completed=done, total=max(total, 1))

                from ctxroute.retrievers.embedders import make_embedder

                coll = ensure_demo_collection(store, embedder=make_embedder(embedder), progress=progress)
                stats = coll.stats()
                err_console.print(
                    f"demo collection: {stats.n_docs} documents, {stats.total_tokens:,} tokens, "
                    f"{stats.n_passages} passages ({time.perf_counter() - t0:.1f} s)")
                client = build_llm_from_env(llm or "local")
                inner = getattr(client, "inner", client)
                if client is not None and hasattr(inner, "load"):
                    load_task = bar.add_task("loading the local model", total=1)
                    info = inner.load()
                    bar.update(load_task, completed=1)
                    how = "converted from GGUF and loaded" if info.converted else "loaded"
                    err_console.print(f"model: {client.profile.name} {how} in {info.seconds:.1f} s")
            if client is not None:
                err_console.print(f"model usable window: {client.profile.usable_window:,} tokens")
            engine = Engine({DEMO_COLLECTION: coll}, client, config=_engine_config(max_tokens, "rules", None, "parallel", 0.35, attribute,
                                                         rag_context_tokens))

            # every demo question is about the first report: scoped to it (`--doc`), as a user would,
            # the map-reduce question reads one report (2 map calls), not both
            first = next((d for d in coll.documents() if d.source.endswith(":0")), None)
            scope = [first.id] if first is not None else None

            async def run() -> None:
                try:
                    for _slot, candidates, wanted in demo_questions()[:questions]:
                        if not candidates:
                            continue
                        dq = await pick_demo_question(engine, candidates, wanted, scope)
                        if not as_json:
                            console.rule(f"[dim]{dq.why}" + (f" (scoped to {first.title})" if first else "") + "[/dim]")
                        answer = await engine.answer(dq.question, DEMO_COLLECTION, docs=scope)
                        if as_json:
                            data = answer_to_dict(answer)
                            data["question"], data["gold"] = dq.question, dq.gold
                            typer.echo(json.dumps(data, ensure_ascii=False))
                        else:
                            print_answer(answer, question=dq.question, gold=dq.gold)
                finally:
                    await engine.aclose()

            asyncio.run(run())
        if not as_json and client is not None and client.profile.size_class == "tiny":
            console.print(
                "[dim]SmolLM2-135M is a smoke-test model: expect weak answers; every citation shown was checked "
                "against the source, and removed citations are listed as warnings. Point ctxroute at a real model "
                "with CTXROUTE_LLM_BASE_URL / CTXROUTE_LLM_MODEL.[/dim]")
