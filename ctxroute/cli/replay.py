"""`ctxroute eval replay|evidence|lara-records` and `ctxroute router fit-cascade`: routing
policies scored on recorded per-route answers, with no LLM call."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any, List, Optional

import typer

from ctxroute.cli.common import collection_store, console, err_console
from ctxroute.cli.evaluate import _fail, _lara_root, _progress, _summary_table, default_data_root, eval_app, router_app


def _first_record(path: Path) -> dict:
    if not path.is_file():
        raise typer.BadParameter(f"{path} does not exist; write LaRA outcomes with `ctxroute eval judge-lara --out FILE` "
                                 "or replay records (docs/EVAL.md)")
    with path.open(encoding="utf-8-sig") as fh:
        for line in fh:
            if line.strip():
                try:
                    return json.loads(line)
                except json.JSONDecodeError as exc:
                    raise typer.BadParameter(f"{path}: first line is not JSON ({exc})") from None
    raise typer.BadParameter(f"{path} is empty")


def _lara_features(data_root: Optional[Path], need: bool) -> Any:
    """FeatureBuilder with LaRA BM25 probes and retrieved text (the cascade's answer-side signals
    read the retrieved text); a plain one, with a warning, when LaRA's documents are absent."""
    from ctxroute.eval.probes import lara_retrieval
    from ctxroute.eval.replay import FeatureBuilder

    if not need:
        return FeatureBuilder()
    base = data_root or default_data_root()
    if base is None:
        err_console.print("[yellow]warning:[/yellow] LaRA documents not found (--data-root): the cascade replays "
                          "without the retrieved-text signals it was fitted with")
        return FeatureBuilder()
    with _progress() as prog:
        tid = prog.add_task("BM25 retrieval per LaRA question", total=None)
        probes, contexts = lara_retrieval(_lara_root(base), progress=lambda d, t: prog.update(tid, completed=d, total=t))
    return FeatureBuilder(probes=probes, contexts=contexts)


DEFAULT_REPLAY_MODEL = "gpt-4o"  # a GPT-4-class stand-in when neither the records nor --model name one


def _records_features(path: Path, collection: Optional[str], model: Optional[str], retriever: str) -> tuple[list, Any]:
    import os

    from ctxroute.eval.records import load_records, outcomes_from_records
    from ctxroute.profiles import get_profile

    records = load_records(path)
    default_model = None
    if not model and any(not r.model for r in records):
        default_model = (os.environ.get("CTXROUTE_LLM_PROFILE") or DEFAULT_REPLAY_MODEL).strip()
        prof = get_profile(default_model)
        err_console.print(f"[yellow]note:[/yellow] records without a 'model' are replayed with profile {prof.name} "
                          f"({prof.context_window:,} window, {prof.usable_window:,} usable); pass --model to choose")
    col = collection_store().open(collection) if collection else None
    with _progress() as prog:
        tid = prog.add_task("scope sizes, probe and retrieved text per record", total=len(records))
        return outcomes_from_records(
            records, collection=col, profile_for=get_profile, model=model, default_model=default_model, retriever=retriever,
            progress=lambda d, t: prog.update(tid, completed=d, total=t),
        )


def _fit_rows(path: Path, collection: Optional[str], data_root: Optional[Path]) -> tuple[list, Any]:
    """Outcomes and their FeatureBuilder from replay records (with their collection) or LaRA outcomes."""
    from ctxroute.eval.lara import Outcome
    from ctxroute.eval.records import is_replay_record

    if is_replay_record(_first_record(path)):
        return _records_features(path, collection, None, "hybrid")
    rows = [Outcome.from_dict(json.loads(x)) for x in path.read_text(encoding="utf-8").splitlines() if x.strip()]
    return rows, _lara_features(data_root, True)


@eval_app.command("replay")
def replay_cmd(
    file: Path = typer.Argument(..., help="replay records JSONL (docs/EVAL.md) or LaRA outcomes from `ctxroute eval judge-lara`"),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="collection holding the records' documents (replay records)"),
    policy: str = typer.Option("all", help="auto | cascade | rules | learned | self-route | rag | lc | oracle | rules+esc | learned+esc | all (comma-separated)"),
    model: Optional[str] = typer.Option(None, "--model", help="replay records: model profile for every record (else each record's 'model'); LaRA outcomes: only this model"),
    router_params: Optional[Path] = typer.Option(None, "--router-params", help="your own fitted parameters for learned or cascade (default: the shipped ones)"),
    length: Optional[str] = typer.Option(None, help="LaRA outcomes only: 32k or 128k"),
    retriever: str = typer.Option("hybrid", help="probe retriever for replay records"),
    out: Optional[Path] = typer.Option(None, "--out", help="write per-question choices (results.jsonl) here for `eval report`"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding LaRA/ (LaRA outcomes: probe and retrieved text)"),
) -> None:
    """What routing policies would have achieved on recorded answers: accuracy, tokens vs always-LC, regret."""
    from ctxroute.errors import CtxrouteError
    from ctxroute.eval.lara import Outcome
    from ctxroute.eval.records import is_replay_record
    from ctxroute.eval.replay import REPLAY_POLICIES, replay_choices, summarize, write_choices
    from ctxroute.router import LearnedParams, make_router

    policies = ["auto", *REPLAY_POLICIES] if policy == "all" else [p.strip() for p in policy.split(",") if p.strip()]
    if "oracle" not in policies:
        policies.append("oracle")
    try:
        first = _first_record(file)
        if is_replay_record(first):
            rows, fb = _records_features(file, collection, model, retriever)
            what = f"{len(rows)} replay records"
        elif "rag_correct" in first:
            rows = [Outcome.from_dict(json.loads(x)) for x in file.read_text(encoding="utf-8").splitlines() if x.strip()]
            rows = [o for o in rows if (not model or o.model == model) and (length is None or o.length == length)]
            fb = _lara_features(data_root, any(p in ("auto", "cascade") for p in policies))
            what = f"{len(rows)} LaRA outcomes"
        else:
            raise typer.BadParameter(f"{file}: neither replay records (with 'routes') nor LaRA outcomes (with 'rag_correct')")
        params = LearnedParams.load(router_params) if router_params else None
        oracle = replay_choices(rows, "oracle")
        summaries, choices = [], {}
        for p in policies:
            base = p.removesuffix("+esc")
            router = None
            if base in ("learned", "cascade", "auto"):
                router = make_router(base, params=params)
            ch = oracle if p == "oracle" else replay_choices(rows, p, router=router, features=fb)
            choices[p] = ch
            summaries.append(summarize(p, ch, oracle))
    except CtxrouteError as exc:
        _fail(exc)
        return
    console.print(_summary_table(summaries, f"replay over {what}"), width=max(console.width, 150))
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        write_choices(choices, out / "results.jsonl")
        console.print(f"[dim]choices -> {out / 'results.jsonl'} (report with `ctxroute eval report {out}`)[/dim]")


@eval_app.command("evidence")
def evidence_cmd(
    outcomes: Path = typer.Argument(..., help="LaRA outcomes from `ctxroute eval judge-lara`, or replay records with group labels"),
    protocol: str = typer.Option("all", help="cross-length | domain | family | all"),
    out: Path = typer.Option(Path("eval_results"), "--out", help="folder for router_evidence_<protocol>.{md,json}"),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="replay records: their collection"),
    model: Optional[List[str]] = typer.Option(None, "--model", help="only these models"),
    max_token_ratio: float = typer.Option(0.30, help="lam is chosen on the fit folds for the best accuracy within this share of LC tokens"),
    n_boot: int = typer.Option(1000, help="bootstrap resamples for the 95% intervals"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding LaRA/ (probe and retrieved text)"),
) -> None:
    """Out-of-sample router evidence: every policy on folds it was not fitted on (README table)."""
    from ctxroute.errors import CtxrouteError
    from ctxroute.eval.protocols import PROTOCOLS, protocol_markdown, run_protocol

    protos = list(PROTOCOLS) if protocol == "all" else [protocol]
    try:
        rows, fb = _fit_rows(outcomes, collection, data_root)
        if model:
            rows = [o for o in rows if o.model in model]
        out.mkdir(parents=True, exist_ok=True)
        for proto in protos:
            res = run_protocol(rows, proto, fb, max_token_ratio=max_token_ratio, n_boot=n_boot,
                               progress=lambda m: err_console.print(f"[dim]{m}[/dim]"))
            md = protocol_markdown(res, title=f"Router evidence, protocol {proto} ({len(rows)} recorded outcomes)",
                                   max_token_ratio=max_token_ratio)
            (out / f"router_evidence_{proto}.md").write_text(md, encoding="utf-8")
            (out / f"router_evidence_{proto}.json").write_text(json.dumps([r.as_dict() for r in res], indent=1) + "\n", encoding="utf-8")
            typer.echo(md)
    except CtxrouteError as exc:
        _fail(exc)


@eval_app.command("lara-records")
def lara_records_cmd(
    outcomes: Path = typer.Argument(..., help="LaRA outcomes from `ctxroute eval judge-lara`"),
    out: Path = typer.Option(..., "--out", help="replay records JSONL to write"),
) -> None:
    """Convert LaRA outcomes into the generic replay-record format (docs/EVAL.md)."""
    from ctxroute.errors import CtxrouteError
    from ctxroute.eval.lara import read_outcomes
    from ctxroute.eval.records import outcomes_to_records

    try:
        n = 0
        with out.open("w", encoding="utf-8") as fh:
            for rec in outcomes_to_records(read_outcomes(outcomes)):
                fh.write(json.dumps(rec, ensure_ascii=False) + "\n")
                n += 1
    except CtxrouteError as exc:
        _fail(exc)
        return
    console.print(f"{n} replay records -> {out}")


@router_app.command("fit-cascade")
def fit_cascade_cmd(
    outcomes: Path = typer.Argument(..., help="LaRA outcomes or replay records"),
    out: Path = typer.Option(..., "--out", help="cascade parameters JSON to write"),
    collection: Optional[str] = typer.Option(None, "--collection", "-c", help="replay records: their collection"),
    lam: Optional[float] = typer.Option(None, help="cost weight; default: chosen on the fit data for --max-token-ratio"),
    max_token_ratio: float = typer.Option(0.30, help="best fit-set accuracy within this share of always-LC tokens"),
    C: float = typer.Option(0.5, help="inverse L2 strength of the logistic regressions"),
    unanswerable_rate: Optional[float] = typer.Option(
        0.05, help="share of questions the documents cannot answer expected in use (rows are reweighted to it); "
        "pass -1 to keep the fit data's own share"),
    data_root: Optional[Path] = typer.Option(None, "--data-root", help="folder holding LaRA/ (probe and retrieved text)"),
) -> None:
    """Fit the cascade policy (answer-side escalation rule) and write its JSON (`--router-params`)."""
    from ctxroute.errors import CtxrouteError
    from ctxroute.eval.cascade import fit_cascade

    try:
        rows, fb = _fit_rows(outcomes, collection, data_root)
        rate = None if unanswerable_rate is not None and unanswerable_rate < 0 else unanswerable_rate
        params, tried = fit_cascade(rows, fb, lam=lam, max_token_ratio=max_token_ratio, C=C, unanswerable_rate=rate,
                                    meta={"source": str(outcomes.name)})
        out.parent.mkdir(parents=True, exist_ok=True)
        params.save(out)
    except CtxrouteError as exc:
        _fail(exc)
        return
    best = next((t for t in tried if t.lam == params.lam), None)
    console.print(f"cascade parameters -> {out} (n={len(rows)}, lam {params.lam:g}"
                  + (f": fit-set accuracy {100 * best.accuracy:.1f}% at {100 * best.token_ratio:.1f}% of LC tokens, "
                     f"{100 * best.escalated:.0f}% escalated; fit set, not a result" if best else "") + ")")


def register(app: typer.Typer, bench: typer.Typer) -> None:
    """Commands attach to the eval/router groups that ``ctxroute.cli.evaluate`` registers."""
