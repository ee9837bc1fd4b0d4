"""Batch runner: every (question, route) of a dataset through an answer function, one JSONL
record each, written as it comes (append + flush). A rerun skips keys already recorded, so an
interrupted run resumes where it stopped. A failed item is recorded with its error.
"""
from __future__ import annotations

import asyncio
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Awaitable, Callable, Mapping, Sequence

from ctxroute.errors import InputError
from ctxroute.eval.datasets import Dataset, EvalItem, doc_spans
from ctxroute.eval.judge import LLMJudge
from ctxroute.eval.lara import judge_prediction
from ctxroute.eval.metrics import (
    choice_accuracy,
    citation_scores,
    contains_answer,
    exact_match,
    is_refusal,
    rouge_l,
    token_f1,
)
from ctxroute.types import Answer, Route

AnswerFn = Callable[[EvalItem, str], Awaitable[Answer]]
RUN_ROUTES = ("auto",) + tuple(r.value for r in Route)
RESULTS_FILE = "results.jsonl"
SETTINGS_FILE = "settings.json"  # what shaped the answers in a results folder (check_run_settings)


def record_key(item_id: str, route: str) -> str:
    return f"{item_id}|{route}"


def parse_routes(spec: str | Sequence[str]) -> tuple[str, ...]:
    """``"auto,rag,lc"`` -> ("auto", "rag", "lc"), checked against the known routes."""
    parts = [p.strip().lower() for p in (spec.split(",") if isinstance(spec, str) else spec) if p.strip()]
    bad = [p for p in parts if p not in RUN_ROUTES]
    if bad or not parts:
        raise InputError(f"unknown route(s) {bad or parts!r}; use a comma-separated subset of {', '.join(RUN_ROUTES)}", routes=parts)
    return tuple(dict.fromkeys(parts))


def rule_judge(item: EvalItem, text: str, abstained: bool) -> bool:
    """Non-LLM correctness: multiple choice by option letter; unanswerable questions by
    refusal (or abstention); the rest by the LaRA rule judge (containment / token overlap)."""
    if item.choices:
        return bool(choice_accuracy(text, item.answer, item.choices))
    if not item.answerable:
        return abstained or is_refusal(text, lenient=True)
    if abstained:
        return False
    return any(judge_prediction(text, g, "answerable") for g in item.answers) if item.answers else False


def score_answer(item: EvalItem, answer: Answer) -> dict[str, Any]:
    """Per-metric correctness and citation precision/recall of one answer."""
    text = answer.text
    golds = list(item.answers)
    correct: dict[str, float] = {"judge": float(rule_judge(item, text, answer.abstained))}
    if golds and item.answerable:
        correct.update(
            em=exact_match(text, golds),
            f1=token_f1(text, golds),
            rouge_l=rouge_l(text, golds),
            contains=contains_answer(text, golds),
        )
    if item.choices:
        correct["choice"] = choice_accuracy(text, item.answer, item.choices)
    refused = answer.abstained or is_refusal(text, lenient=not item.answerable)
    correct["refusal_correct"] = float(refused != item.answerable)
    cited: dict[str, list[tuple[int, int]]] = {}
    for c in answer.citations:
        cited.setdefault(c.doc_id, []).append((c.start, c.end))
    cs = citation_scores(cited, doc_spans(item.evidence))
    return {
        "correct": correct,
        "citation_precision": cs.precision,
        "citation_recall": cs.recall,
        "n_citations": len(answer.citations),
    }


def _record_head(item: EvalItem, route: str, dataset: str) -> dict[str, Any]:
    """Fields every record starts with, answered or failed."""
    return {"key": record_key(item.id, route), "id": item.id, "dataset": dataset, "task": item.task,
            "answerable": item.answerable, "route_requested": route}


def answer_record(item: EvalItem, route: str, answer: Answer, elapsed_ms: float, dataset: str = "") -> dict[str, Any]:
    latency = dict(answer.latency_ms)
    latency.setdefault("total", round(elapsed_ms, 2))
    rec: dict[str, Any] = {
        **_record_head(item, route, dataset),
        "route_taken": answer.route_taken.value,
        "policy": answer.decision.policy,
        "reasons": list(answer.decision.reasons),
        "fallbacks": list(answer.fallbacks_taken),
        "features": dict(answer.decision.features),
        "answer": answer.text,
        "abstained": answer.abstained,
        "prompt_tokens": answer.prompt_tokens,
        "completion_tokens": answer.completion_tokens,
        "cost": answer.cost,
        "calls": len(answer.usage),
        "model": answer.usage[0].model if answer.usage else "",
        "latency_ms": latency,
        "warnings": list(answer.warnings),
        "error": None,
    }
    rec.update(score_answer(item, answer))
    return rec


def error_record(item: EvalItem, route: str, exc: BaseException, elapsed_ms: float, dataset: str = "") -> dict[str, Any]:
    code = getattr(exc, "code", type(exc).__name__)
    return {
        **_record_head(item, route, dataset),
        "route_taken": None,
        "error": f"{code}: {exc}",
        "retryable": bool(getattr(exc, "retryable", False)),
        "latency_ms": {"total": round(elapsed_ms, 2)},
    }


def read_results(path: str | Path) -> list[dict[str, Any]]:
    """Records of a results file; a torn last line (a killed run) is ignored; for a key
    recorded twice the last record wins."""
    p = Path(path)
    if p.is_dir():
        p = p / RESULTS_FILE
    if not p.is_file():
        raise InputError(f"results file {str(p)!r} does not exist; run `ctxroute eval run` first", path=str(p))
    by_key: dict[str, dict[str, Any]] = {}
    for line in p.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            continue
        by_key[str(rec.get("key") or record_key(str(rec.get("id")), str(rec.get("route_requested"))))] = rec
    return list(by_key.values())


def _prepare(path: Path, retry_errors: bool) -> set[str]:
    """Keys already recorded; drops a torn last line, and error records when ``retry_errors``."""
    if not path.is_file():
        return set()
    raw = path.read_text(encoding="utf-8")
    lines = raw.split("\n")
    keep: list[str] = []
    done: set[str] = set()
    changed = not raw.endswith("\n") and raw != ""
    for line in lines:
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError:
            changed = True
            continue
        if retry_errors and rec.get("error"):
            changed = True
            continue
        keep.append(line)
        done.add(str(rec.get("key")))
    if changed:
        _write_atomic(path, "".join(line + "\n" for line in keep))
    return done


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(path)


@dataclass(frozen=True)
class RunStats:
    total: int
    skipped: int
    done: int
    errors: int
    seconds: float


def plan_run(items: Sequence[EvalItem], routes: Sequence[str], out: str | Path, concurrency: int,
             retry_errors: bool) -> tuple[tuple[str, ...], Path, list[tuple[EvalItem, str]], int, int]:
    """Checked routes, the results file under ``out`` (made ready for appending), the (item,
    route) pairs still to answer, how many there are in all and how many are already done."""
    if concurrency < 1:
        raise InputError(f"concurrency must be >= 1, got {concurrency}", concurrency=concurrency)
    checked = parse_routes(routes)
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / RESULTS_FILE
    done_keys = _prepare(path, retry_errors)
    todo = [(it, r) for it in items for r in checked if record_key(it.id, r) not in done_keys]
    total = len(items) * len(checked)
    return checked, path, todo, total, total - len(todo)


def check_run_settings(out: str | Path, settings: Mapping[str, Any]) -> None:
    """Answers in one results folder are compared with each other, so they must come from the same
    settings (policy, answer length, compressed-lc budget, model...): the first run records
    ``settings`` in ``out/settings.json``; a later run into the folder with other values is refused
    before anything is answered (``InputError`` naming each difference). A folder from before
    this file existed adopts the settings of its next run."""
    out_dir = Path(out)
    path = out_dir / SETTINGS_FILE
    want = json.loads(json.dumps(dict(settings), default=str))  # as stored
    if path.is_file():
        try:
            have = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, json.JSONDecodeError) as exc:
            raise InputError(f"{path} is unreadable ({exc}); remove it to adopt this run's settings") from None
        diff = [f"{k}: {have.get(k)!r} there, {want.get(k)!r} now" for k in sorted(set(have) | set(want))
                if have.get(k) != want.get(k)]
        if diff:
            raise InputError(f"{out_dir} holds answers made with other settings ({'; '.join(diff)}); "
                             "use another --out, or the same settings to resume", out=str(out_dir))
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, json.dumps(want, indent=1, sort_keys=True))


async def run_eval(
    items: Sequence[EvalItem],
    answer_fn: AnswerFn,
    out: str | Path,
    *,
    routes: Sequence[str] = ("auto",),
    concurrency: int = 4,
    dataset: str = "",
    retry_errors: bool = False,
    llm_judge: LLMJudge | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> RunStats:
    """Answer every (item, route) not yet in ``out`` (a folder; records go to results.jsonl).

    ``progress(done, total)`` is called after each record. Errors raised by ``answer_fn`` are
    recorded (``error`` field), except ``KeyboardInterrupt``/``CancelledError``.
    """
    routes, path, todo, total, skipped = plan_run(items, routes, out, concurrency, retry_errors)
    t0 = time.perf_counter()
    sem = asyncio.Semaphore(concurrency)
    counts = {"done": 0, "errors": 0}
    if progress:
        progress(skipped, total)

    with path.open("a", encoding="utf-8") as fh:

        def write(rec: Mapping[str, Any]) -> None:
            fh.write(json.dumps(rec, ensure_ascii=False, default=str) + "\n")
            fh.flush()

        async def one(item: EvalItem, route: str) -> None:
            async with sem:
                start = time.perf_counter()
                try:
                    ans = await answer_fn(item, route)
                    rec = answer_record(item, route, ans, (time.perf_counter() - start) * 1000, dataset)
                    if llm_judge is not None and item.answers:
                        v = await llm_judge.judge(item.question, item.answers, ans.text)
                        rec["correct"]["llm_judge"] = float(v.correct)
                        rec["llm_judge_rationale"] = v.rationale
                except (KeyboardInterrupt, asyncio.CancelledError):
                    raise
                except Exception as exc:  # noqa: BLE001 - a failed item is recorded, not a crash
                    rec = error_record(item, route, exc, (time.perf_counter() - start) * 1000, dataset)
                    counts["errors"] += 1
                write(rec)
                counts["done"] += 1
                if progress:
                    progress(skipped + counts["done"], total)

        await asyncio.gather(*(one(it, r) for it, r in todo))
    return RunStats(total, skipped, counts["done"], counts["errors"], time.perf_counter() - t0)


def engine_answer_fn(engine: Any, collection: Any, budget: Any = None) -> AnswerFn:
    """An answer function over ``ctxroute.pipelines.engine.Engine``: route ``auto`` lets the
    router decide; any other route is forced. Each question is answered over its own
    documents (``item.docs`` that the collection holds; the whole collection when none is)."""

    async def fn(item: EvalItem, route: str) -> Answer:
        docs = _scope_of(item, collection, engine)
        return await engine.answer(item.question, collection, route=None if route == "auto" else route, budget=budget,
                                   docs=docs)

    return fn


def _scope_of(item: EvalItem, collection: Any, engine: Any) -> list[str] | None:
    """The item's document keys that are document ids of ``collection`` (None: no scope)."""
    if not item.docs:
        return None
    coll = collection
    if isinstance(collection, str):
        opener = getattr(engine, "collection", None)
        coll = opener(collection) if callable(opener) else None
    if coll is None or not callable(getattr(coll, "documents", None)):
        return None
    known = {d.id for d in coll.documents()}
    docs = [d for d in dict.fromkeys(item.docs) if d in known]
    return docs or None


def build_eval_collection(dataset: Dataset, store: Any, name: str, *, embedder: Any = None, progress: Any = None) -> Any:
    """Open collection ``name`` in ``store``, ingesting the dataset's documents (ids = the
    dataset's document keys, so gold evidence spans line up with citations) when missing."""
    from ctxroute.errors import CollectionNotFound
    from ctxroute.types import Document

    try:
        coll = store.open(name, embedder)
    except CollectionNotFound:
        coll = None
    if coll is None:
        from ctxroute.retrievers.collection import CollectionConfig

        config = CollectionConfig.for_embedder(embedder) if embedder is not None else None
        coll = store.create(name, config, embedder)
    missing = [k for k in dataset.documents if k not in coll]
    if missing:
        docs = []
        for k in missing:
            src = dataset.documents[k]
            fmt = "md" if k.endswith(".md") else "txt"
            docs.append(Document(id=k, text=src.text, title=src.title, source=k, format=fmt))
        coll.add_documents(docs, progress=progress)
    return coll


__all__ = [
    "AnswerFn",
    "RESULTS_FILE",
    "RUN_ROUTES",
    "RunStats",
    "SETTINGS_FILE",
    "answer_record",
    "build_eval_collection",
    "check_run_settings",
    "engine_answer_fn",
    "error_record",
    "parse_routes",
    "read_results",
    "record_key",
    "rule_judge",
    "run_eval",
    "score_answer",
]
