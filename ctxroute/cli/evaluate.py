"""`ctxroute eval run|report|replay|judge-lara|evidence` and `ctxroute router fit`."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from ctxroute.cli.common import collection_store, console, err_console

eval_app = typer.Typer(help="Batch evaluation: run datasets, report, replay recorded LaRA outcomes.", no_args_is_help=True)
router_app = typer.Typer(help="Router parameters: fit the learned policy.", no_args_is_help=True)


def default_data_root() -> Path | None:
    """$CTXROUTE_DATA_ROOT, else ../shared/data or ./shared/data when present."""
    env = os.environ.get("CTXROUTE_DATA_ROOT", "").strip()
    if env:
        return Path(env).expanduser()
    for cand in (Path("..") / "shared" / "data", Path("shared") / "data"):
        if cand.is_dir():
            return cand.resolve()
    return None


def _lara_root(root: Optional[Path]) -> Path:
    base = root or default_data_root()
    if base is None:
        raise typer.BadParameter("LaRA data not found: pass --data-root (the folder holding LaRA/) or set CTXROUTE_DATA_ROOT")
    return base / "LaRA" if (base / "LaRA").is_dir() else base


def _fail(exc: Exception) -> None:
    err_console.print(f"[red]error:[/red] {getattr(exc, 'message', exc)}")
    raise typer.Exit(2) from None


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(), TimeRemainingColumn(),
                    console=err_console, transient=False)


def _summary_table(summaries: Any, title: str) -> Any:
    from rich.table import Table

    t = Table(title=title)
    for col in ("policy", "n", "accuracy % [95% CI]", "tokens vs LC", "regret vs oracle (pts)", "route mix", "mapped"):
        t.add_column(col, justify="left" if col in ("policy", "route mix") else "right")
    for s in summaries:
        a, r = s.accuracy, s.regret
        t.add_row(
            s.policy, str(s.n), f"{100 * a.mean:.1f} [{100 * a.low:.1f}, {100 * a.high:.1f}]", f"{100 * s.token_ratio:.1f}%",
            f"{100 * r.mean:.1f} [{100 * r.low:.1f}, {100 * r.high:.1f}]",
            ", ".join(f"{k} {100 * v:.0f}%" for k, v in s.route_mix.items()), str(s.mapped),
        )
    return t


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.add_typer(eval_app, name="eval")
    app.add_typer(router_app, name="router")


@eval_app.command("run")
def run_cmd(
    dataset: str = typer.Argument(..., help="generic JSONL path, or lara:32k | lara:128k | loogle | leval-legal"),
    out: Path = typer.Option(..., "--out", help="output folder (results.jsonl is appended; a rerun resumes)"),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="answer over this existing collection"),
    docs: Optional[Path] = typer.Option(None, "--docs", help="ingest every file of this folder (ids = relative paths) into an eval collection"),
    routes: str = typer.Option("auto", help="comma-separated: auto,rag,lc,mr,hybrid,extractive,compressed-lc"),
    limit: Optional[int] = typer.Option(None, min=1, help="first N questions only"),
    concurrency: int = typer.Option(4, min=1, help="questions in flight"),
    policy: str = typer.Option("auto", help="router policy for route auto: auto (= cascade) | cascade | rules | self-route | learned"),
    router_params: Optional[Path] = typer.Option(None, "--router-params", help="fitted parameters for --policy learned"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding LaRA/, LooGLE/, L-Eval/ (default $CTXROUTE_DATA_ROOT or ../shared/data)"),
    task: Optional[str] = typer.Option(None, help="only items of this task (e.g. a LaRA level)"),
    retry_errors: bool = typer.Option(False, "--retry-errors", help="drop recorded errors and try those items again"),
    llm_judge: bool = typer.Option(False, "--llm-judge", help="also grade answers with the configured LLM (True/False)"),
    ray: bool = typer.Option(False, "--ray", help="fan questions out over Ray actors (a local cluster unless --ray-address); needs the ctxroute\\[scale] extra"),
    ray_address: Optional[str] = typer.Option(None, "--ray-address", help="'auto' or ray://HOST:PORT: use a running Ray cluster (implies --ray)"),
    ray_workers: Optional[int] = typer.Option(None, "--ray-workers", min=1, help="with --ray: engine actors (default: the cluster's CPUs)"),
    llm_calls: Optional[int] = typer.Option(None, "--llm-calls", min=1, help="with --ray: LLM calls in flight per endpoint, cluster-wide (default --concurrency)"),
    embedder: Optional[str] = typer.Option(None, "--embedder", help="embedder for a new eval collection: minilm (default) | hashing"),
    llm_backend: Optional[str] = typer.Option(None, "--llm", help="local | openai | scripted | extractive (no LLM); default from CTXROUTE_LLM_BACKEND"),
    max_tokens: Optional[int] = typer.Option(None, "--max-tokens", min=1, help="most tokens each LLM call may produce"),
    queue: bool = typer.Option(False, "--queue", help="enqueue the run for `ctxroute worker` (Redis at $CTXROUTE_REDIS_URL) and print its job id; the worker writes results and report under --out"),
    compress_ratio: Optional[float] = typer.Option(None, "--compress-ratio", help="compressed-lc keeps this share (0-1] of each question's documents' tokens (default 0.35)"),
    compress_tokens: Optional[int] = typer.Option(None, "--compress-tokens", help="compressed-lc keeps at most this many tokens (alone: instead of the ratio; with it: the smaller)"),
) -> None:
    """Answer a dataset with each route; one JSONL record per (question, route), written as it comes."""
    if queue:
        from ctxroute.cli.worker import enqueue_eval_cmd

        enqueue_eval_cmd(dict(dataset=dataset, out=out, collection=collection, docs=docs, routes=routes, limit=limit,
                              concurrency=concurrency, policy=policy, router_params=router_params,
                              data_root=data_root or default_data_root(), task=task, retry_errors=retry_errors,
                              llm_judge=llm_judge, embedder=embedder, llm=llm_backend, max_tokens=max_tokens,
                              compress_ratio=compress_ratio, compress_tokens=compress_tokens))
        return
    import asyncio

    from ctxroute.errors import CtxrouteError
    from ctxroute.eval.datasets import Dataset, SourceText, load_dataset
    from ctxroute.eval.judge import LLMJudge
    from ctxroute.eval.runner import build_eval_collection, check_run_settings, engine_answer_fn, parse_routes, run_eval
    from ctxroute.pipelines.engine import Engine, EngineConfig
    from ctxroute.cli.common import build_llm_from_env

    try:
        route_list = parse_routes(routes)
        ds = load_dataset(dataset, data_root or default_data_root())
        ds = ds.filter(task=task, limit=limit)
        store = collection_store()
        llm = build_llm_from_env(llm_backend)
        params = str(router_params) if router_params else None
        config = (EngineConfig.with_answer_tokens(max_tokens, policy=policy, router_params=params) if max_tokens
                  else EngineConfig(policy=policy, router_params=params)).with_compression(compress_ratio, compress_tokens)
        if llm_judge and llm is None:
            raise typer.BadParameter("--llm-judge needs an LLM; drop --llm extractive")
        comp = config.compressed.compress
        check_run_settings(out, {  # what shapes the answers: one folder, one set of settings (before any work)
            "model": llm.profile.name if llm is not None else "extractive", "policy": policy, "router_params": params,
            "max_tokens": config.rag.max_tokens, "compress_ratio": comp.ratio, "compress_tokens": comp.max_tokens,
        })
        if collection is None:
            if docs is not None:
                from ctxroute.retrievers.documents import iter_files, load_path

                documents = {}
                for f in iter_files([docs]):
                    for d in load_path(f):
                        documents[str(f.relative_to(docs))] = SourceText(d.title, d.text)
                ds = Dataset(ds.name, ds.items, {**dict(ds.documents), **documents}, ds.unresolved)
            if not ds.documents:
                raise typer.BadParameter("the dataset names no readable documents: pass --collection NAME or --docs DIR")
            safe = "".join(ch if ch.isalnum() or ch in "-_." else "-" for ch in ds.name)[:50]
            collection = f"eval-{safe}"
            needed = {d for it in ds.items for d in it.docs}
            sub = Dataset(ds.name, ds.items, {k: v for k, v in ds.documents.items() if k in needed}, ds.unresolved)
            with _progress() as prog:
                task_id = prog.add_task(f"ingest into {collection}", total=None)

                def tick(stage: str, done: int, total: int) -> None:
                    prog.update(task_id, description=f"ingest: {stage}", completed=done, total=total)

                from ctxroute.retrievers.embedders import make_embedder

                emb = make_embedder(embedder) if embedder else None
                build_eval_collection(sub, store, collection, embedder=emb, progress=tick)
        engine = Engine(store, llm, config=config)
        judge = LLMJudge(llm) if llm_judge else None
        with _progress() as prog:
            tid = prog.add_task(f"{ds.name} x {','.join(route_list)}", total=len(ds.items) * len(route_list))

            def step(done: int, total: int) -> None:
                prog.update(tid, completed=done, total=total)

            if ray or ray_address:
                stats = _run_on_ray(ds, store, collection, llm is not None, llm_backend, config, llm_judge, out, route_list,
                                    concurrency, retry_errors, step, ray_address, ray_workers, llm_calls)
            else:
                stats = asyncio.run(
                    run_eval(ds.items, engine_answer_fn(engine, collection), out, routes=route_list, concurrency=concurrency,
                             dataset=ds.name, retry_errors=retry_errors, llm_judge=judge, progress=step)
                )
    except CtxrouteError as exc:
        _fail(exc)
        return
    console.print(f"{stats.done} answered ({stats.errors} errors), {stats.skipped} already recorded, {stats.seconds:.1f}s -> {out / 'results.jsonl'}")


def _run_on_ray(ds: Any, store: Any, collection: str, has_llm: bool, llm_backend: Optional[str], config: Any,
                llm_judge: bool, out: Path, routes: Any, concurrency: int, retry_errors: bool, step: Any,
                address: Optional[str], workers: Optional[int], llm_calls: Optional[int]) -> Any:
    """``eval run --ray``: the same records from engine actors on a Ray cluster, written in order."""
    from ctxroute.eval.distributed import EvalRecipe, run_eval_ray, store_factory_of
    from ctxroute.pipelines.llm.factory import LLMConfig
    from ctxroute.retrievers.distributed import ray_session

    env = dict(os.environ, **({"CTXROUTE_LLM_BACKEND": llm_backend} if llm_backend else {}))
    recipe = EvalRecipe(store_factory_of(store), collection, llm_config=LLMConfig.from_env(env) if has_llm else None,
                        engine_config=config, llm_judge=llm_judge)
    with ray_session(address, num_cpus=workers or os.cpu_count()):
        res = run_eval_ray(ds.items, recipe, out, routes=routes, concurrency=concurrency, llm_calls=llm_calls,
                           workers=workers, dataset=ds.name, retry_errors=retry_errors, progress=step)
    bound = f", LLM calls in flight at most {res.limiter['peak']} of {res.limiter['limit']}" if res.limiter else ""
    err_console.print(f"ray: {res.workers} engine actors{bound}", highlight=False)
    return res.run


@eval_app.command("report")
def report_cmd(
    results: Path = typer.Argument(..., help="runner or replay output folder (or its results.jsonl)"),
    out: Optional[Path] = typer.Option(None, "--out", help="report folder (default: RESULTS/report)"),
    title: str = typer.Option("Evaluation report", help="title of summary.md"),
    n_boot: int = typer.Option(1000, min=100, help="bootstrap resamples"),
) -> None:
    """Write summary.md, summary.json and PNG plots (accuracy with 95% CIs, tokens, Pareto, route mix, ...)."""
    from ctxroute.errors import CtxrouteError
    from ctxroute.eval.report import write_report
    from ctxroute.eval.runner import read_results

    try:
        recs = read_results(results)
        target = out or (results if results.is_dir() else results.parent) / "report"
        rep = write_report(recs, target, title=title, n_boot=n_boot)
    except CtxrouteError as exc:
        _fail(exc)
        return
    typer.echo((target / "summary.md").read_text(encoding="utf-8"))
    console.print(f"[dim]wrote {len(rep.files)} files to {target}[/dim]")


@eval_app.command("judge-lara")
def judge_lara_cmd(
    out: Path = typer.Option(..., "--out", help="outcomes JSONL to write"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding LaRA/ (or the LaRA folder itself)"),
    model: Optional[List[str]] = typer.Option(None, "--model", help="LaRA model folder(s); default all"),
    handcheck: bool = typer.Option(True, "--handcheck/--no-handcheck", help="print the judge's agreement with the hand labels"),
) -> None:
    """Judge LaRA's recorded RAG and full-context predictions without an LLM; write per-question outcomes."""
    from ctxroute.errors import CtxrouteError
    from ctxroute.eval.lara import build_outcomes, handcheck_agreement, write_outcomes

    try:
        root = _lara_root(data_root)
        with _progress() as prog:
            prog.add_task("judging recorded predictions", total=None)
            outcomes, skipped = build_outcomes(root, model or None)
        n = write_outcomes(outcomes, out)
    except CtxrouteError as exc:
        _fail(exc)
        return
    console.print(f"{n} outcomes -> {out}; skipped: {skipped}")
    if handcheck:
        for split in (None, "tune", "heldout"):
            a = handcheck_agreement(root, split=split)
            console.print(f"hand check {split or 'all'}: n={a.n} agreement {100 * a.accuracy:.1f}% kappa {a.kappa:.2f}")


@router_app.command("fit")
def fit_cmd(
    results: List[Path] = typer.Argument(..., help="runner results (folders or results.jsonl) or LaRA outcomes JSONL"),
    out: Path = typer.Option(..., "--out", help="router parameters JSON to write"),
    lam: Optional[float] = typer.Option(None, help="cost weight; default: tuned on the fit data for --max-token-ratio"),
    max_token_ratio: float = typer.Option(0.35, help="when tuning lam: best accuracy within this share of LC tokens"),
    C: float = typer.Option(1.0, help="inverse L2 strength of the logistic regressions"),
    model: Optional[List[str]] = typer.Option(None, "--model", help="outcomes only: fit on these LaRA models"),
    length: Optional[str] = typer.Option(None, help="outcomes only: fit on 32k or 128k (report on the other)"),
    metric: str = typer.Option("judge", help="runner results only: which correct[...] metric is the label"),
) -> None:
    """Fit the learned routing policy (per-route calibrated logistic regression) and write its JSON."""
    import json

    from ctxroute.errors import CtxrouteError
    from ctxroute.eval.fit import fit_from_outcomes, read_records, training_from_results, tune_lam, with_lam
    from ctxroute.eval.lara import Outcome
    from ctxroute.router import FEATURE_NAMES, fit_learned

    try:
        recs = read_records(results)
        if recs and "rag_correct" in recs[0]:
            outs = [Outcome.from_dict(r) for r in recs]
            outs = [o for o in outs if (not model or o.model in model) and (length is None or o.length == length)]
            meta = {"fit_length": length or "all", "models": sorted({o.model for o in outs}), "source": "lara-outcomes"}
            params = fit_from_outcomes(outs, lam=lam or 0.1, C=C, meta=meta)
            if lam is None:
                choice, _ = tune_lam(outs, params, max_token_ratio=max_token_ratio)
                params = with_lam(params, choice.lam)
                console.print(f"lam {choice.lam:g}: fit-set accuracy {100 * choice.accuracy:.1f}% at {100 * choice.token_ratio:.1f}% of LC tokens (fit set, not a result)")
        else:
            X, correct, cost = training_from_results(recs, metric)
            params = fit_learned(X, correct, cost, FEATURE_NAMES, lam=0.1 if lam is None else lam, C=C)
        out.parent.mkdir(parents=True, exist_ok=True)
        params.save(out)
    except CtxrouteError as exc:
        _fail(exc)
        return
    console.print(f"router parameters -> {out} (n={params.meta.get('n')}, routes {[r.value for r in params.routes]}, lam {params.lam:g})")
    console.print(f"[dim]{json.dumps(dict(params.meta), default=str)[:300]}[/dim]")
