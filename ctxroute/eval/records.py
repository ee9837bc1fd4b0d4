"""Generic replay records: recorded per-route answers of any QA set, replayed for any policy.

One JSON object per line (docs/EVAL.md, "Replay records"):

```json
{"id": "q17",
 "question": "What was Apple's total net sales in Q3 2023?",
 "docs": ["2023 Q3 AAPL.pdf"],
 "model": "gpt-4-turbo",
 "answerable": true,
 "routes": {"rag": {"answer": "...", "prompt_tokens": 3412, "label": "correct"},
            "lc":  {"answer": "...", "label": "refusal"}},
 "group": {"domain": "financial", "length": "128k"}}
```

- ``docs``: the question's scope in ``--collection``: document ids, or names/globs matched
  against each document's id, source file name and title (``*AAPL*``); or ``text``: the
  document inline (no collection needed).
- ``routes.rag`` and ``routes.lc``: the recorded answer text (the cascade's answer-side signals
  read the RAG one), its prompt tokens if known (else estimated: RAG = the RAG context +
  question; LC = the scope's tokens + question, capped at the model's context window) and its
  ``label``: ``correct``, ``incorrect`` or ``refusal`` (``true``/``false`` accepted). A refusal
  counts as correct only for a question marked ``"answerable": false``.
- ``model``: a profile name (``ctxroute llm profiles``); ``--model`` overrides it.
- ``group``: optional labels (``domain``, ``length``) the protocols split on.

:func:`load_records` validates every line (errors name the line and the field) and
:func:`outcomes_from_records` turns them into :class:`~ctxroute.eval.lara.Outcome` rows plus a
:class:`~ctxroute.eval.replay.FeatureBuilder` whose pre-answer features (scoped sizes, probe,
retrieved text) come from the collection. :func:`outcomes_to_records` converts LaRA outcomes
into this format, so LaRA is one converter away from any other set.
"""
from __future__ import annotations

import fnmatch
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

from ctxroute.errors import InputError
from ctxroute.eval.lara import Outcome
from ctxroute.eval.replay import FeatureBuilder
from ctxroute.router.answer import is_refusal
from ctxroute.types import ModelProfile

ROUTE_ALIASES = {"long_context": "lc", "long-context": "lc", "full": "lc", "full_context": "lc", "lc": "lc",
                 "retrieval": "rag", "rag": "rag"}
LABELS = {"correct": True, "true": True, "incorrect": False, "false": False, "wrong": False, "refusal": None,
          "refused": None, "failed to answer": None}


@dataclass(frozen=True)
class RouteRecord:
    answer: str
    label: str  # correct | incorrect | refusal
    prompt_tokens: int | None = None


@dataclass(frozen=True)
class ReplayRecord:
    id: str
    question: str
    routes: Mapping[str, RouteRecord]
    docs: tuple[str, ...] = ()
    text: str = ""
    model: str = ""
    answerable: bool = True
    domain: str = ""
    length: str = ""


def _route(line: int, name: str, r: Any) -> RouteRecord:
    if not isinstance(r, Mapping):
        raise InputError(f"line {line}: routes.{name} must be an object with answer/label/prompt_tokens", line=line)
    label = r.get("label", r.get("correct"))
    if isinstance(label, bool):
        label = "correct" if label else "incorrect"
    if not isinstance(label, str) or label.strip().lower() not in LABELS:
        raise InputError(f"line {line}: routes.{name}.label {label!r} must be correct, incorrect or refusal", line=line)
    lab = label.strip().lower()
    lab = "correct" if LABELS[lab] is True else "incorrect" if LABELS[lab] is False else "refusal"
    answer = r.get("answer", "")
    if answer is None:
        answer = ""
    if not isinstance(answer, str):
        raise InputError(f"line {line}: routes.{name}.answer must be text", line=line)
    pt = r.get("prompt_tokens")
    if pt is not None and (not isinstance(pt, (int, float)) or isinstance(pt, bool) or pt < 0):
        raise InputError(f"line {line}: routes.{name}.prompt_tokens {pt!r} must be a number >= 0", line=line)
    return RouteRecord(answer, lab, int(pt) if pt is not None else None)


def parse_record(d: Any, line: int = 0) -> ReplayRecord:
    if not isinstance(d, Mapping):
        raise InputError(f"line {line}: a replay record must be a JSON object", line=line)
    q = d.get("question")
    if not isinstance(q, str) or not q.strip():
        raise InputError(f"line {line}: 'question' must be non-empty text", line=line)
    routes = d.get("routes")
    if isinstance(routes, Mapping):  # route names as written elsewhere: RAG, LC, long_context, full, ...
        routes = {ROUTE_ALIASES.get(str(k).strip().lower(), str(k).strip().lower()): v for k, v in routes.items()}
    if not isinstance(routes, Mapping) or "rag" not in routes or "lc" not in routes:
        raise InputError(f"line {line}: 'routes' must hold 'rag' and 'lc' (recorded answer, label, prompt tokens)", line=line)
    docs = next((d[k] for k in ("docs", "doc_ids", "documents", "doc", "doc_id") if k in d), ())
    if isinstance(docs, str):
        docs = [docs]
    if not isinstance(docs, (list, tuple)) or not all(isinstance(x, str) and x for x in docs):
        raise InputError(f"line {line}: 'docs' must be a list of document ids or names", line=line)
    text = d.get("text", "")
    if not isinstance(text, str):
        raise InputError(f"line {line}: 'text' must be the document text", line=line)
    group = d.get("group") or {}
    if not isinstance(group, Mapping):
        raise InputError(f"line {line}: 'group' must be an object", line=line)
    answerable = d.get("answerable", True)
    if not isinstance(answerable, bool):
        raise InputError(f"line {line}: 'answerable' must be true or false", line=line)
    return ReplayRecord(
        id=str(d.get("id", f"line{line}")),
        question=q.strip(),
        routes={k: _route(line, k, routes[k]) for k in ("rag", "lc")},
        docs=tuple(docs),
        text=text,
        model=str(d.get("model", "") or ""),
        answerable=answerable,
        domain=str(group.get("domain", "") or ""),
        length=str(group.get("length", "") or ""),
    )


def load_records(path: str | Path) -> list[ReplayRecord]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"replay file {str(p)!r} does not exist", path=str(p))
    out: list[ReplayRecord] = []
    for i, line in enumerate(p.read_text(encoding="utf-8-sig").splitlines(), 1):
        if not line.strip():
            continue
        try:
            d = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"line {i} of {p.name} is not JSON: {exc}", line=i) from exc
        out.append(parse_record(d, i))
    if not out:
        raise InputError(f"replay file {str(p)!r} holds no records", path=str(p))
    return out


def is_replay_record(d: Mapping[str, Any]) -> bool:
    return isinstance(d, Mapping) and "routes" in d and "question" in d


def _correct(r: RouteRecord, answerable: bool) -> bool:
    if r.label == "refusal":
        return not answerable
    return r.label == "correct"


def _refused(r: RouteRecord) -> bool:
    return r.label == "refusal" or is_refusal(r.answer)


def resolve_scope(names: Sequence[str], docs: Sequence[Any]) -> list[str]:
    """Document ids in ``docs`` matching ``names`` (ids, file names with or without their suffix,
    titles or globs; case-insensitive)."""
    out: list[str] = []
    for name in names:
        hits = []
        want = name.strip().lower()
        for d in docs:
            src = Path(str(getattr(d, "source", "") or ""))
            keys = {k.lower() for k in (d.id, str(getattr(d, "title", "") or ""), src.name, src.stem) if k}
            if want in keys or any(fnmatch.fnmatch(k, want) for k in keys):
                hits.append(d.id)
        if not hits:
            raise InputError(f"document {name!r} matches no document of the collection (by id, file name or title)", doc=name)
        out.extend(h for h in hits if h not in out)
    return out


def outcomes_from_records(
    records: Sequence[ReplayRecord],
    *,
    collection: Any = None,
    profile_for: Callable[[str], ModelProfile],
    model: str | None = None,
    default_model: str | None = None,
    rag_context_tokens: int = 3000,
    probe_k: int = 10,
    retriever: str = "hybrid",
    count_tokens: Callable[[str], int] | None = None,
    progress: Callable[[int, int], None] | None = None,
) -> tuple[list[Outcome], FeatureBuilder]:
    """Outcomes plus a FeatureBuilder with the collection-derived pre-answer features."""
    from ctxroute.router import probe_signals
    from ctxroute.router.features import CollectionStats

    if count_tokens is None:
        from ctxroute.retrievers.tokens import get_counter

        count_tokens = get_counter("cl100k_base").count
    stats_all = collection.stats() if collection is not None else None
    documents = collection.documents() if collection is not None else []
    tok_of = dict(zip(stats_all.doc_ids, stats_all.doc_tokens)) if stats_all is not None else {}
    chars_of = dict(stats_all.doc_chars) if stats_all is not None else {}
    outcomes: list[Outcome] = []
    stats: dict[str, CollectionStats] = {}
    probes: dict[str, Any] = {}
    contexts: dict[str, list[str]] = {}
    seen: set[str] = set()
    for i, r in enumerate(records):
        key = r.id if r.id not in seen else f"{r.id}#{i}"
        seen.add(key)
        m = model or r.model or default_model
        if not m:
            raise InputError(f"record {r.id!r} names no model; add \"model\" to the record or pass --model", record=r.id)
        prof = profile_for(m)
        qtok = count_tokens(r.question)
        if r.text:
            from ctxroute.eval.probes import window_retrieval

            doc_tokens = (count_tokens(r.text),)
            hits, texts = window_retrieval(r.text, r.question, key, k=probe_k)
            probes[key] = probe_signals(hits, top_n=probe_k, doc_chars={key: len(r.text)})
        else:
            if collection is None:
                raise InputError(f"record {r.id!r} has no 'text'; pass --collection holding its documents", record=r.id)
            scope = resolve_scope(r.docs, documents) if r.docs else list(stats_all.doc_ids)
            doc_tokens = tuple(int(tok_of.get(d, 0)) for d in scope)
            hits = list(collection.search(r.question, k=probe_k, retriever=retriever, doc_ids=scope if r.docs else None))
            probes[key] = probe_signals(hits, top_n=probe_k, doc_chars={d: int(chars_of.get(d, 0)) for d in scope})
            texts, used = [], 0
            for h in hits:
                if used >= rag_context_tokens:
                    break
                t = collection.text(h.chunk)
                texts.append(t)
                used += count_tokens(t)
        total = sum(doc_tokens)
        stats[key] = CollectionStats(n_docs=len(doc_tokens), total_tokens=total, doc_tokens=doc_tokens)
        contexts[key] = texts
        rag, lc = r.routes["rag"], r.routes["lc"]
        outcomes.append(Outcome(
            key=key, model=m, length=r.length, domain=r.domain, level="" if r.answerable else "hallu",
            question=r.question,
            rag_correct=_correct(rag, r.answerable), lc_correct=_correct(lc, r.answerable),
            rag_prompt_tokens=rag.prompt_tokens if rag.prompt_tokens is not None else min(total, rag_context_tokens) + qtok,
            lc_prompt_tokens=lc.prompt_tokens if lc.prompt_tokens is not None else min(total, prof.context_window) + qtok,
            doc_tokens=total, rag_refused=_refused(rag), file=",".join(r.docs),
            rag_answer=rag.answer or ("NOT_FOUND" if rag.label == "refusal" else ""), lc_answer=lc.answer,
            answerable=r.answerable,
        ))
        if progress:
            progress(i + 1, len(records))
    fb = FeatureBuilder(count_tokens=count_tokens, probes=probes, contexts=contexts, stats=stats, profile_for=profile_for)
    return outcomes, fb


def outcomes_to_records(outcomes: Iterable[Outcome]) -> Iterable[dict[str, Any]]:
    """LaRA outcomes (``ctxroute eval judge-lara``) as replay records (one per model x question);
    ``docs`` names the LaRA file (ingest ``datasets/<length>/<domain>/`` to replay them)."""
    for o in outcomes:
        def lab(ok: bool, refused: bool) -> str:
            return "correct" if ok else ("refusal" if refused else "incorrect")

        yield {
            "id": f"{o.model}|{o.key}",
            "question": o.question,
            "docs": [o.file] if o.file else [],
            "model": o.model,
            "answerable": o.level != "hallu",
            "routes": {
                "rag": {"answer": o.rag_answer, "prompt_tokens": o.rag_prompt_tokens,
                        "label": lab(o.rag_correct, is_refusal(o.rag_answer))},
                "lc": {"answer": o.lc_answer, "prompt_tokens": o.lc_prompt_tokens,
                       "label": lab(o.lc_correct, is_refusal(o.lc_answer))},
            },
            "group": {"domain": o.domain, "length": o.length, "level": o.level},
        }


__all__ = [
    "LABELS",
    "ReplayRecord",
    "RouteRecord",
    "is_replay_record",
    "load_records",
    "outcomes_from_records",
    "outcomes_to_records",
    "parse_record",
    "resolve_scope",
]
