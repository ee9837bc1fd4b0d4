"""Reports over runner or replay records: ``summary.json``, ``summary.md`` and PNG plots.

Groups are the requested route (or replay policy). Every mean carries a bootstrap 95%
interval. The oracle router is computed from the fixed routes present (rag, lc, mr, hybrid):
per question the cheapest route that was correct (the cheapest overall when none was), over
the questions every fixed route answered without error. Records from several models are
paired per (model, question).
"""
from __future__ import annotations

import json
import math
from collections import Counter, defaultdict
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import numpy as np

from ctxroute.errors import InputError
from ctxroute.eval.metrics import bootstrap_ci

FIXED_ROUTES = ("rag", "lc", "mr", "hybrid", "extractive", "compressed-lc")
MAIN_METRIC = "judge"


def _qkey(r: Mapping[str, Any]) -> str:
    return f"{r.get('model', '')}|{r['id']}"


def _ci(values: Iterable[float | None], n_boot: int, seed: int) -> dict[str, float]:
    return bootstrap_ci([v for v in values if v is not None], n=n_boot, seed=seed).as_dict()


def _correct(r: Mapping[str, Any], metric: str) -> float | None:
    c = r.get("correct") or {}
    v = c.get(metric)
    return None if v is None else float(v)


def oracle_records(records: Sequence[Mapping[str, Any]], metric: str = MAIN_METRIC) -> list[dict[str, Any]]:
    """One synthetic record per question: the cheapest correct fixed route (ties -> cheaper)."""
    by_q: dict[str, dict[str, Mapping[str, Any]]] = defaultdict(dict)
    modelless: list[Mapping[str, Any]] = []  # the extractive reader uses no model: it pairs with every model
    for r in records:
        if r.get("error") or r.get("route_requested") not in FIXED_ROUTES or _correct(r, metric) is None:
            continue
        if not r.get("model"):
            modelless.append(r)
            continue
        by_q[_qkey(r)][str(r["route_requested"])] = r
    models_of: dict[str, set[str]] = defaultdict(set)
    for r in records:
        if r.get("model"):
            models_of[str(r["id"])].add(str(r["model"]))
    for r in modelless:
        for m in models_of.get(str(r["id"]), {""}):
            by_q[f"{m}|{r['id']}"].setdefault(str(r["route_requested"]), r)
    routes = sorted({rt for rs in by_q.values() for rt in rs})
    if len(routes) < 2:
        return []
    out: list[dict[str, Any]] = []
    for q, rs in by_q.items():
        if not all(rt in rs for rt in routes):
            continue
        cands = sorted(rs.values(), key=lambda r: (-(_correct(r, metric) or 0.0), float(r.get("prompt_tokens", 0))))
        best = dict(cands[0])
        best["route_requested"] = "oracle"
        best["route_taken"] = str(cands[0]["route_requested"])
        out.append(best)
    return out


@dataclass(frozen=True)
class Report:
    summary: dict[str, Any]
    files: tuple[Path, ...]


def summarize_records(records: Sequence[Mapping[str, Any]], *, n_boot: int = 1000, seed: int = 0) -> dict[str, Any]:
    """The numbers of ``summary.json`` (see the module docstring)."""
    if not records:
        raise InputError("no records to report on; the results file is empty")
    recs = list(records)
    if not any(r.get("route_requested") == "oracle" for r in recs):
        recs += oracle_records(recs)
    groups: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for r in recs:
        groups[str(r.get("route_requested"))].append(r)
    # LC tokens per question, for token ratios
    lc_tokens: dict[str, float] = {}
    for r in recs:
        if r.get("lc_prompt_tokens") is not None:
            lc_tokens[_qkey(r)] = float(r["lc_prompt_tokens"])
        elif r.get("route_requested") == "lc" and not r.get("error"):
            lc_tokens.setdefault(_qkey(r), float(r.get("prompt_tokens", 0)))
    metrics = sorted({m for r in recs for m in (r.get("correct") or {})})
    tasks = sorted({str(r.get("task", "")) for r in recs})
    routes: dict[str, Any] = {}
    for name, rs in sorted(groups.items(), key=lambda kv: _route_order(kv[0])):
        ok = [r for r in rs if not r.get("error")]
        entry: dict[str, Any] = {
            "n": len(rs),
            "errors": len(rs) - len(ok),
            "accuracy": {m: _ci((_correct(r, m) for r in ok), n_boot, seed) for m in metrics},
            "by_task": {t: _ci((_correct(r, MAIN_METRIC) for r in ok if str(r.get("task", "")) == t), n_boot, seed) for t in tasks},
            "prompt_tokens": _ci((float(r.get("prompt_tokens", 0)) for r in ok), n_boot, seed),
            "completion_tokens": _ci((float(r["completion_tokens"]) for r in ok if r.get("completion_tokens") is not None), n_boot, seed),
            "cost": _ci((float(r["cost"]) for r in ok if r.get("cost") is not None), n_boot, seed),
            "citation_precision": _ci((r.get("citation_precision") for r in ok), n_boot, seed),
            "citation_recall": _ci((r.get("citation_recall") for r in ok), n_boot, seed),
            "abstention_accuracy": _ci(
                (_correct(r, "refusal_correct") if _correct(r, "refusal_correct") is not None else _correct(r, MAIN_METRIC)
                 for r in ok if r.get("answerable") is False),
                n_boot,
                seed,
            ),
            "route_mix": _mix(ok),
            "fallback_rate": float(np.mean([bool(r.get("fallbacks")) or bool(r.get("escalated")) for r in ok])) if ok else float("nan"),
            "latency_ms": _latency(ok),
        }
        paired = [(float(r.get("prompt_tokens", 0)), lc_tokens[_qkey(r)]) for r in ok if _qkey(r) in lc_tokens]
        if paired:
            num, den = sum(p for p, _ in paired), sum(q for _, q in paired)
            entry["token_ratio_vs_lc"] = num / den if den else float("nan")
        routes[name] = entry
    return {"n_records": len(records), "metrics": metrics, "tasks": tasks, "main_metric": MAIN_METRIC, "routes": routes}


def _route_order(name: str) -> tuple[int, str]:
    order = ["rag", "lc", "mr", "hybrid", "compressed-lc", "extractive", "auto", "rules", "learned", "self-route", "oracle"]
    return (order.index(name) if name in order else len(order), name)


def _mix(rs: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    c = Counter(str(r.get("route_taken")) for r in rs)
    n = sum(c.values())
    return {k: v / n for k, v in sorted(c.items())} if n else {}


def _latency(rs: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, float]]:
    stages: dict[str, list[float]] = defaultdict(list)
    for r in rs:
        for k, v in (r.get("latency_ms") or {}).items():
            if isinstance(v, (int, float)):
                stages[k].append(float(v))
    return {
        k: {"mean": float(np.mean(v)), "p50": float(np.percentile(v, 50)), "p95": float(np.percentile(v, 95)), "n": len(v)}
        for k, v in sorted(stages.items())
    }


def _fmt(ci: Mapping[str, float], pct: bool = True) -> str:
    if not ci or not ci.get("n") or math.isnan(ci["mean"]):
        return "-"
    if pct:
        return f"{100 * ci['mean']:.1f} [{100 * ci['low']:.1f}, {100 * ci['high']:.1f}]"
    return f"{ci['mean']:,.0f} [{ci['low']:,.0f}, {ci['high']:,.0f}]"


def summary_markdown(summary: Mapping[str, Any], title: str = "Evaluation report") -> str:
    lines = [f"# {title}", "", f"{summary['n_records']} records; accuracy = `{summary['main_metric']}` (rule judge, see docs/EVAL.md); "
             "brackets are bootstrap 95% intervals.", ""]
    lines += ["| route / policy | n | errors | accuracy % | prompt tokens | tokens vs LC | citation P % | citation R % | abstention acc % | route mix |",
              "|---|---|---|---|---|---|---|---|---|---|"]
    for name, e in summary["routes"].items():
        mix = ", ".join(f"{k} {100 * v:.0f}%" for k, v in e["route_mix"].items())
        ratio = e.get("token_ratio_vs_lc")
        lines.append(
            f"| {name} | {e['n']} | {e['errors']} | {_fmt(e['accuracy'].get(summary['main_metric'], {}))} | {_fmt(e['prompt_tokens'], False)} | "
            f"{'-' if ratio is None else f'{100 * ratio:.1f}%'} | {_fmt(e['citation_precision'])} | {_fmt(e['citation_recall'])} | "
            f"{_fmt(e['abstention_accuracy'])} | {mix} |"
        )
    others = [m for m in summary["metrics"] if m != summary["main_metric"]]
    if others:
        lines += ["", "## Other metrics (%)", "", "| route / policy | " + " | ".join(others) + " |", "|---|" + "---|" * len(others)]
        for name, e in summary["routes"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(e["accuracy"].get(m, {})) for m in others) + " |")
    if len(summary["tasks"]) > 1 or summary["tasks"] != [""]:
        lines += ["", "## Accuracy by task (%)", "", "| route / policy | " + " | ".join(t or "(none)" for t in summary["tasks"]) + " |",
                  "|---|" + "---|" * len(summary["tasks"])]
        for name, e in summary["routes"].items():
            lines.append(f"| {name} | " + " | ".join(_fmt(e["by_task"].get(t, {})) for t in summary["tasks"]) + " |")
    lat = {n: e["latency_ms"] for n, e in summary["routes"].items() if e["latency_ms"]}
    if lat:
        lines += ["", "## Latency (ms, mean / p95)", ""]
        for name, st in lat.items():
            lines.append(f"- {name}: " + "; ".join(f"{k} {v['mean']:.0f} / {v['p95']:.0f}" for k, v in st.items()))
    return "\n".join(lines) + "\n"


def evidence_markdown(rows: Sequence[Any], max_token_ratio: float = 0.35, *, probe: bool = False) -> str:
    """The router evidence table (``ctxroute.eval.fit.EvidenceRow`` list) as Markdown, with
    the goal check: learned above both fixed routes, within 5 points of the oracle, at most
    ``max_token_ratio`` of always-LC tokens."""
    lines = [
        "# Router evidence on LaRA recorded outcomes (held-out numbers only)",
        "",
        "Each block: the learned router is fitted on data disjoint from what it is scored on (the other LaRA length, or "
        "the other folds' documents), with lam tuned on the fit data for the best accuracy within "
        f"{100 * max_token_ratio:.0f}% of LC tokens. Cells: accuracy % [bootstrap 95% CI] / prompt tokens "
        "as % of always-LC. Rule judge (docs/EVAL.md). `learned+esc` also escalates refused RAG answers to LC. "
        "Only RAG and LC were recorded, so a HYBRID or MR choice (rules) is replayed as LC. "
        f"Router features: question type (rules), document tokens, model profile{', BM25 probe' if probe else ', no retrieval probe'}.",
        "",
    ]
    for fit_len, eval_len in dict.fromkeys((r.fit_length, r.eval_length) for r in rows):
        block = [r for r in rows if (r.fit_length, r.eval_length) == (fit_len, eval_len)]
        policies = [s.policy for s in block[0].summaries]
        head = f"## fit {fit_len} -> evaluate {eval_len}" if fit_len != eval_len else f"## {fit_len}: held-out folds"
        lines += [f"{head} ({block[0].fit_scope})", "",
                  "| model | lam | " + " | ".join(policies) + " | goal met |", "|---|---|" + "---|" * len(policies) + "---|"]
        for r in block:
            by = {s.policy: s for s in r.summaries}
            cells = [f"{100 * s.accuracy.mean:.1f} [{100 * s.accuracy.low:.1f}, {100 * s.accuracy.high:.1f}] / {100 * s.token_ratio:.0f}%" for s in r.summaries]
            goal = "-"
            if "learned" in by:
                le = by["learned"]
                ok = (le.accuracy.mean > max(by["rag"].accuracy.mean, by["lc"].accuracy.mean)
                      and by["oracle"].accuracy.mean - le.accuracy.mean <= 0.05 and le.token_ratio <= max_token_ratio)
                goal = "yes" if ok else "no"
            lines.append(f"| {r.model} | {r.lam:g} | " + " | ".join(cells) + f" | {goal} |")
        lines.append("")
    return "\n".join(lines)


# --- plots -----------------------------------------------------------------------------------
def _plots(summary: Mapping[str, Any], out: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    files: list[Path] = []
    routes = summary["routes"]
    names = list(routes)
    metric = summary["main_metric"]

    def save(fig: Any, name: str) -> None:
        p = out / name
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        files.append(p)

    def bars(ax: Any, labels: Sequence[str], cis: Sequence[Mapping[str, float]], scale: float = 100.0) -> None:
        m = [scale * c["mean"] if c.get("n") else 0.0 for c in cis]
        lo = [scale * (c["mean"] - c["low"]) if c.get("n") else 0.0 for c in cis]
        hi = [scale * (c["high"] - c["mean"]) if c.get("n") else 0.0 for c in cis]
        ax.bar(labels, m, yerr=[lo, hi], capsize=4, color="#4C72B0")
        ax.tick_params(axis="x", rotation=30)

    # accuracy per route
    fig, ax = plt.subplots(figsize=(7, 4))
    bars(ax, names, [routes[n]["accuracy"].get(metric, {}) for n in names])
    ax.set_ylabel(f"accuracy % ({metric}, 95% CI)")
    ax.set_title("Accuracy per route")
    save(fig, "accuracy_by_route.png")

    # accuracy per route and task
    tasks = summary["tasks"]
    if tasks:
        fig, ax = plt.subplots(figsize=(max(7, 1.2 * len(names) * max(1, len(tasks)) / 2), 4))
        w = 0.8 / max(1, len(tasks))
        x = np.arange(len(names))
        for i, t in enumerate(tasks):
            cis = [routes[n]["by_task"].get(t, {}) for n in names]
            m = [100 * c["mean"] if c.get("n") else 0.0 for c in cis]
            err = [[100 * (c["mean"] - c["low"]) if c.get("n") else 0.0 for c in cis], [100 * (c["high"] - c["mean"]) if c.get("n") else 0.0 for c in cis]]
            ax.bar(x + i * w, m, w, yerr=err, capsize=2, label=t or "(none)")
        ax.set_xticks(x + w * (len(tasks) - 1) / 2, names, rotation=30)
        ax.set_ylabel("accuracy % (95% CI)")
        ax.set_title("Accuracy per route and task type")
        ax.legend(fontsize=7)
        save(fig, "accuracy_by_task.png")

    # tokens and cost
    has_cost = any(routes[n]["cost"].get("n") and routes[n]["cost"]["mean"] > 0 for n in names)
    fig, axes = plt.subplots(1, 2 if has_cost else 1, figsize=(10 if has_cost else 6, 4))
    axes = np.atleast_1d(axes)
    bars(axes[0], names, [routes[n]["prompt_tokens"] for n in names], scale=1.0)
    axes[0].set_ylabel("mean prompt tokens (95% CI)")
    axes[0].set_title("Prompt tokens per route")
    if has_cost:
        bars(axes[1], names, [routes[n]["cost"] for n in names], scale=1.0)
        axes[1].set_ylabel("mean cost USD (95% CI)")
        axes[1].set_title("Cost per route")
    save(fig, "tokens_cost.png")

    # pareto: accuracy vs tokens
    fig, ax = plt.subplots(figsize=(6.5, 4.5))
    pts = []
    for n in names:
        a, t = routes[n]["accuracy"].get(metric, {}), routes[n]["prompt_tokens"]
        if a.get("n") and t.get("n"):
            pts.append((t["mean"], 100 * a["mean"], n))
            ax.errorbar(t["mean"], 100 * a["mean"], yerr=[[100 * (a["mean"] - a["low"])], [100 * (a["high"] - a["mean"])]], fmt="o", capsize=3,
                        color="#C44E52" if n == "oracle" else "#4C72B0")
            ax.annotate(n, (t["mean"], 100 * a["mean"]), textcoords="offset points", xytext=(5, 4), fontsize=8)
    front = []
    for p in sorted(pts):
        if not front or p[1] > front[-1][1]:
            front.append(p)
    if len(front) > 1:
        ax.plot([p[0] for p in front], [p[1] for p in front], "--", color="grey", linewidth=1)
    if pts and min(p[0] for p in pts) <= 0 < max(p[0] for p in pts):
        ax.set_xscale("symlog", linthresh=100)  # the extractive reader spends 0 prompt tokens
    elif pts and max(p[0] for p in pts) > 20 * max(1.0, min(p[0] for p in pts)):
        ax.set_xscale("log")
    ax.set_xlabel("mean prompt tokens per question")
    ax.set_ylabel("accuracy %")
    ax.set_title("Accuracy vs tokens (Pareto)")
    save(fig, "pareto.png")

    # route mix
    taken = sorted({k for n in names for k in routes[n]["route_mix"]})
    fig, ax = plt.subplots(figsize=(7, 4))
    bottom = np.zeros(len(names))
    for k in taken:
        v = np.array([100 * routes[n]["route_mix"].get(k, 0.0) for n in names])
        ax.bar(names, v, bottom=bottom, label=k)
        bottom += v
    ax.set_ylabel("% of questions")
    ax.set_title("Route taken per requested route / policy")
    ax.tick_params(axis="x", rotation=30)
    ax.legend(fontsize=7)
    save(fig, "route_mix.png")

    # citations
    if any(routes[n]["citation_precision"].get("n") or routes[n]["citation_recall"].get("n") for n in names):
        fig, axes = plt.subplots(1, 2, figsize=(10, 4))
        bars(axes[0], names, [routes[n]["citation_precision"] for n in names])
        axes[0].set_title("Citation precision % (95% CI)")
        bars(axes[1], names, [routes[n]["citation_recall"] for n in names])
        axes[1].set_title("Citation recall % (95% CI)")
        save(fig, "citations.png")

    # abstention on unanswerable questions
    if any(routes[n]["abstention_accuracy"].get("n") for n in names):
        fig, ax = plt.subplots(figsize=(7, 4))
        bars(ax, names, [routes[n]["abstention_accuracy"] for n in names])
        ax.set_ylabel("% unanswerable questions refused (95% CI)")
        ax.set_title("Abstention accuracy on unanswerable questions")
        save(fig, "abstention.png")

    # latency per stage
    stages = sorted({s for n in names for s in routes[n]["latency_ms"] if s != "total"})
    if stages:
        fig, ax = plt.subplots(figsize=(8, 4))
        w = 0.8 / len(stages)
        x = np.arange(len(names))
        for i, s in enumerate(stages):
            ax.bar(x + i * w, [routes[n]["latency_ms"].get(s, {}).get("mean", 0.0) for n in names], w, label=s)
        ax.set_xticks(x + w * (len(stages) - 1) / 2, names, rotation=30)
        ax.set_ylabel("mean latency ms")
        ax.set_title("Latency per stage")
        ax.legend(fontsize=7)
        save(fig, "latency.png")
    return files


def write_report(records: Sequence[Mapping[str, Any]], out_dir: str | Path, *, title: str = "Evaluation report", n_boot: int = 1000, seed: int = 0, plots: bool = True) -> Report:
    """Write summary.json, summary.md and the plots into ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    summary = summarize_records(records, n_boot=n_boot, seed=seed)
    files = [out / "summary.json", out / "summary.md"]
    files[0].write_text(json.dumps(_clean(summary), indent=2, default=_json_default) + "\n", encoding="utf-8")
    files[1].write_text(summary_markdown(summary, title), encoding="utf-8")
    if plots:
        files += _plots(summary, out)
    return Report(summary, tuple(files))


def _clean(o: Any) -> Any:
    """NaN -> None, so summary.json is strict JSON."""
    if isinstance(o, float) and math.isnan(o):
        return None
    if isinstance(o, dict):
        return {k: _clean(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_clean(v) for v in o]
    return o


def _json_default(o: object) -> object:
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


__all__ = ["FIXED_ROUTES", "Report", "evidence_markdown", "oracle_records", "summarize_records", "summary_markdown", "write_report"]
