"""LaRA's recorded predictions, judged without an LLM, as per-question routing outcomes.

LaRA ships what 11 LLMs (13 model folders) answered each question in RAG mode (600-token
chunks, top 5) and in full-context mode. :func:`judge_prediction` marks an answer correct
with rules (see ``docs/EVAL.md``), :func:`build_outcomes` turns the two modes into one
:class:`Outcome` per (model, question): which route got it right and at what prompt cost.

Prompt tokens (cl100k): LC = the document's tokens + the question's; RAG = 5 x 600 + the
question's (LaRA's retrieval setup). Instructions and chat framing are left out of both.
"""
from __future__ import annotations

import json
import re
from collections import Counter, defaultdict
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Iterable, Iterator, Mapping, Sequence

from ctxroute.errors import InputError
from ctxroute.eval.datasets import lara_key, lara_query_files
from ctxroute.eval.metrics import contains_answer, is_refusal, normalize_answer, token_f1, token_recall

RAG_CHUNK_TOKENS = 600
RAG_TOP_K = 5
_PRED_FILE = re.compile(r"^(rag|full)_preds_(.+)_(32k|128k)_(book|financial|paper)_(location|reasoning|comp|hallu)\.jsonl$")

# LaRA model folder -> ctxroute profile name (ctxroute/profiles.py)
LARA_MODEL_PROFILES: Mapping[str, str] = {
    "gpt-4o": "gpt-4o",
    "gpt-4o-0806": "gpt-4o",
    "gpt-4o-mini": "gpt-4o-mini",
    "claude-3-5-sonnet-20241022": "claude-3-5-sonnet",
    "claude-3-5-haiku-20241022": "claude-3-5-haiku",
    "gemini-1.5-pro": "gemini-1.5-pro",
    "qwen2.5-7b-instruct": "qwen2.5-7b-instruct",
    "qwen2.5-72b-instruct": "qwen2.5-72b-instruct",
    "llama-3.1-8b": "llama-3.1-8b-instruct",
    "llama-3.2-3b": "llama-3.2-3b-instruct",
    "llama-3.3-70b": "llama-3.3-70b-instruct",
    "llama-3.3-70b-turbo": "llama-3.3-70b-instruct",
    "mistral-nemo": "mistral-nemo",
}


@dataclass(frozen=True)
class JudgeConfig:
    """Thresholds of the rule judge for answerable questions (see docs/EVAL.md)."""

    recall_threshold: float = 0.42  # share of the gold's tokens found in the prediction
    f1_threshold: float = 0.4  # SQuAD token F1
    short_prediction_tokens: int = 6  # a prediction this short counts when inside the gold


DEFAULT_JUDGE = JudgeConfig()


def judge_prediction(prediction: object, gold: str, level: str, config: JudgeConfig = DEFAULT_JUDGE) -> bool:
    """Rule judgement of one recorded answer.

    ``hallu`` (unanswerable): correct iff the answer is a refusal (lenient detector).
    Answerable: a non-string or empty answer (a failed call upstream) or a refusal is wrong;
    otherwise correct when the normalised gold occurs in the prediction, or a short
    prediction (<= ``short_prediction_tokens``) occurs in the gold, or the gold-token recall
    or the token F1 reaches its threshold.
    """
    if not isinstance(prediction, str) or not prediction.strip():
        return False
    if level == "hallu":
        return is_refusal(prediction, lenient=True)
    if is_refusal(prediction):
        return False
    if contains_answer(prediction, gold):
        return True
    pn = normalize_answer(prediction)
    if pn and len(pn.split()) <= config.short_prediction_tokens and f" {pn} " in f" {normalize_answer(gold)} ":
        return True
    return token_recall(prediction, gold) >= config.recall_threshold or token_f1(prediction, gold) >= config.f1_threshold


@dataclass(frozen=True)
class Prediction:
    """One recorded answer of one model in one mode (``rag`` or ``full``)."""

    key: str
    model: str
    mode: str
    length: str
    domain: str
    level: str
    file: str
    question: str
    prediction: object  # str, or False where the upstream call failed
    ground_truth: str


def iter_predictions(root: str | Path, models: Sequence[str] | None = None) -> Iterator[Prediction]:
    """Every recorded prediction under ``root/evaluation/prediction``, keyed like :func:`load_lara`."""
    pdir = Path(root) / "evaluation" / "prediction"
    if not pdir.is_dir():
        raise InputError(f"LaRA prediction folder {str(pdir)!r} not found; pass the LaRA root (holding evaluation/prediction/)", path=str(pdir))
    for mdir in sorted(p for p in pdir.iterdir() if p.is_dir()):
        if models and mdir.name not in models:
            continue
        for f in sorted(mdir.iterdir()):
            m = _PRED_FILE.match(f.name)
            if not m:
                continue
            mode, model, ln, dom, lev = m.groups()
            seen: Counter[str] = Counter()
            for line in f.read_text(encoding="utf-8").splitlines():
                if not line.strip():
                    continue
                r = json.loads(line)
                base = lara_key(ln, dom, lev, r["file"], r["question"])
                key = lara_key(ln, dom, lev, r["file"], r["question"], seen[base])
                seen[base] += 1
                yield Prediction(key, mdir.name, mode, ln, dom, lev, r["file"], r["question"], r["prediction"], str(r["ground_truth"]))


def lara_models(root: str | Path) -> list[str]:
    pdir = Path(root) / "evaluation" / "prediction"
    return sorted(p.name for p in pdir.iterdir() if p.is_dir()) if pdir.is_dir() else []


def document_tokens(root: str | Path, counter: object | None = None) -> dict[str, int]:
    """cl100k token count of every LaRA document, keyed ``"{length}/{domain}/{file}"``."""
    if counter is None:
        from ctxroute.retrievers.tokens import get_counter

        counter = get_counter("cl100k_base")
    out: dict[str, int] = {}
    base = Path(root) / "datasets"
    for ln in ("32k", "128k"):
        for dom in ("book", "financial", "paper"):
            d = base / ln / dom
            if d.is_dir():
                for f in sorted(d.iterdir()):
                    if f.is_file():
                        out[f"{ln}/{dom}/{f.name}"] = counter.count(f.read_text(encoding="utf-8"))  # type: ignore[attr-defined]
    return out


@dataclass(frozen=True)
class Outcome:
    """What one model achieved on one question with each route, and the prompt cost."""

    key: str
    model: str
    length: str
    domain: str
    level: str
    question: str
    rag_correct: bool
    lc_correct: bool
    rag_prompt_tokens: int
    lc_prompt_tokens: int
    doc_tokens: int = 0
    rag_refused: bool = False  # the recorded RAG answer says "not in the text" (self-route escalates)
    file: str = ""
    rag_answer: str = ""  # the recorded answers' text: the cascade's answer-side signals read it
    lc_answer: str = ""
    answerable: bool = True

    def as_dict(self) -> dict[str, object]:
        return asdict(self)

    @staticmethod
    def from_dict(d: Mapping[str, object]) -> "Outcome":
        names = {f.name for f in fields(Outcome)}
        return Outcome(**{k: v for k, v in d.items() if k in names})  # type: ignore[arg-type]


def build_outcomes(
    root: str | Path,
    models: Sequence[str] | None = None,
    *,
    config: JudgeConfig = DEFAULT_JUDGE,
    doc_tokens: Mapping[str, int] | None = None,
) -> tuple[list[Outcome], dict[str, int]]:
    """Judge every recorded prediction and pair the two modes per (model, question).

    Returns the outcomes and counts of what was skipped (``missing_rag``/``missing_full``:
    a mode without a recorded answer for that question; ``failed_calls``: predictions
    that are not text). Questions are taken from the query files, so the reconstructed
    128k book location file is included.
    """
    from ctxroute.retrievers.tokens import get_counter

    root = Path(root)
    counter = get_counter("cl100k_base")
    dtok = dict(doc_tokens) if doc_tokens is not None else document_tokens(root, counter)
    preds: dict[tuple[str, str], dict[str, Prediction]] = defaultdict(dict)
    skipped: Counter[str] = Counter()
    for p in iter_predictions(root, models):
        preds[(p.model, p.key)][p.mode] = p
        if not isinstance(p.prediction, str):
            skipped["failed_calls"] += 1
    # questions in query-file order
    questions: list[tuple[str, str, str, dict]] = []
    for ln, dom, lev, path in lara_query_files(root):
        seen: Counter[str] = Counter()
        for line in path.read_text(encoding="utf-8").splitlines():
            if line.strip():
                r = json.loads(line)
                base = lara_key(ln, dom, lev, r["file"], r["question"])
                questions.append((lara_key(ln, dom, lev, r["file"], r["question"], seen[base]), ln, dom, r))
                seen[base] += 1
    qtok: dict[str, int] = {}
    all_models = sorted({m for m, _ in preds})
    out: list[Outcome] = []
    for model in all_models:
        for key, ln, dom, r in questions:
            pair = preds.get((model, key))
            if not pair or "rag" not in pair or "full" not in pair:
                skipped["missing_rag" if not pair or "rag" not in pair else "missing_full"] += 1
                continue
            rag, full = pair["rag"], pair["full"]
            lev = rag.level
            gold = str(r.get("answer", rag.ground_truth))
            q = r["question"]
            if q not in qtok:
                qtok[q] = counter.count(q)
            dk = f"{ln}/{dom}/{r['file']}"
            if dk not in dtok:
                raise InputError(f"LaRA document {dk!r} has no token count; is datasets/{dk} present?", doc=dk)
            out.append(
                Outcome(
                    key=key,
                    model=model,
                    length=ln,
                    domain=dom,
                    level=lev,
                    question=q,
                    rag_correct=judge_prediction(rag.prediction, gold, lev, config),
                    lc_correct=judge_prediction(full.prediction, gold, lev, config),
                    rag_prompt_tokens=RAG_TOP_K * RAG_CHUNK_TOKENS + qtok[q],
                    lc_prompt_tokens=dtok[dk] + qtok[q],
                    doc_tokens=dtok[dk],
                    rag_refused=isinstance(rag.prediction, str) and is_refusal(rag.prediction),
                    file=r["file"],
                    rag_answer=rag.prediction if isinstance(rag.prediction, str) else "",
                    lc_answer=full.prediction if isinstance(full.prediction, str) else "",
                    answerable=lev != "hallu",
                )
            )
    return out, dict(skipped)


def write_outcomes(outcomes: Iterable[Outcome], path: str | Path) -> int:
    n = 0
    with Path(path).open("w", encoding="utf-8") as fh:
        for o in outcomes:
            fh.write(json.dumps(o.as_dict(), ensure_ascii=False) + "\n")
            n += 1
    return n


def read_outcomes(path: str | Path) -> list[Outcome]:
    p = Path(path)
    if not p.is_file():
        raise InputError(f"outcomes file {str(p)!r} does not exist; create it with `ctxroute eval judge-lara --out {p}`", path=str(p))
    return [Outcome.from_dict(json.loads(line)) for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]


# --- hand check ----------------------------------------------------------------------
HANDCHECK_PATH = Path(__file__).parent / "data" / "lara_handcheck.jsonl"


@dataclass(frozen=True)
class Agreement:
    n: int
    accuracy: float
    kappa: float
    judge_positive_rate: float
    human_positive_rate: float
    disagreements: tuple[str, ...]


def handcheck_sample(root: str | Path, n_per_cell: int = 2, seed: int = 0, models: Sequence[str] | None = None) -> list[Prediction]:
    """A stratified sample of recorded predictions for hand labelling: ``n_per_cell`` per
    (level, mode) cell, models drawn round-robin."""
    import random

    rng = random.Random(seed)
    by_cell: dict[tuple[str, str, str], list[Prediction]] = defaultdict(list)
    for p in iter_predictions(root, models):
        if isinstance(p.prediction, str):
            by_cell[(p.level, p.mode, p.model)].append(p)
    model_names = sorted({c[2] for c in by_cell})
    out: list[Prediction] = []
    i = 0
    for level in ("location", "reasoning", "comp", "hallu"):
        for mode in ("rag", "full"):
            for _ in range(n_per_cell):
                model = model_names[i % len(model_names)]
                i += 1
                out.append(rng.choice(by_cell[(level, mode, model)]))
    return out


def handcheck_key(p: Prediction) -> str:
    return f"{p.model}|{p.mode}|{p.key}"


def handcheck_agreement(
    root: str | Path,
    path: str | Path = HANDCHECK_PATH,
    config: JudgeConfig = DEFAULT_JUDGE,
    split: str | None = None,
) -> Agreement:
    """Agreement of :func:`judge_prediction` with the hand labels in ``path`` (accuracy and
    Cohen's kappa), recomputed from the recorded predictions. ``split`` selects ``"tune"``
    (the sample the thresholds were set on) or ``"heldout"`` (labelled after they were fixed)."""
    from sklearn.metrics import cohen_kappa_score

    labels = {}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip():
            r = json.loads(line)
            if split is None or r.get("split") == split:
                labels[r["key"]] = bool(r["label"])
    found: dict[str, Prediction] = {}
    for p in iter_predictions(root):
        k = handcheck_key(p)
        if k in labels:
            found[k] = p
    missing = sorted(set(labels) - set(found))
    if missing:
        raise InputError(f"{len(missing)} hand-check keys not found in the LaRA predictions, e.g. {missing[0]!r}", missing=len(missing))
    keys = sorted(labels)
    human = [labels[k] for k in keys]
    judge = [judge_prediction(found[k].prediction, found[k].ground_truth, found[k].level, config) for k in keys]
    acc = sum(h == j for h, j in zip(human, judge)) / len(keys)
    kappa = float(cohen_kappa_score(human, judge)) if len(set(human) | set(judge)) > 1 else 1.0
    return Agreement(
        n=len(keys),
        accuracy=acc,
        kappa=kappa,
        judge_positive_rate=sum(judge) / len(keys),
        human_positive_rate=sum(human) / len(keys),
        disagreements=tuple(k for k, h, j in zip(keys, human, judge) if h != j),
    )


__all__ = [
    "Agreement",
    "DEFAULT_JUDGE",
    "HANDCHECK_PATH",
    "JudgeConfig",
    "LARA_MODEL_PROFILES",
    "Outcome",
    "Prediction",
    "RAG_CHUNK_TOKENS",
    "RAG_TOP_K",
    "build_outcomes",
    "document_tokens",
    "handcheck_agreement",
    "handcheck_key",
    "handcheck_sample",
    "iter_predictions",
    "judge_prediction",
    "lara_models",
    "read_outcomes",
    "write_outcomes",
]
