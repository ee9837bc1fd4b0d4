"""Router replay over recorded outcomes: what a policy would have achieved, without any LLM call.

An outcome (``ctxroute.eval.lara.Outcome``) says whether RAG and LC answered a question
correctly and what each cost in prompt tokens. Replaying a policy picks one route per
(model, question) and reads its recorded result:

- ``rag`` / ``lc``: fixed routes.
- ``oracle``: the best route per question; on a tie (both right or both wrong) the cheaper.
- ``self-route``: RAG first; when the recorded RAG answer is a refusal, escalate to LC.
  Escalated questions cost RAG + LC tokens and take LC's result.
- ``rules`` / ``learned``: the ctxroute router on features built from the question, the
  document's token count and the model's profile (and optionally a retrieval probe). Only
  RAG and LC were recorded, so a HYBRID or MR choice is replayed as LC (counted in
  ``mapped``). ``rules+esc`` / ``learned+esc`` also escalate like the engine does: when the
  router picks RAG, gives fallbacks and the recorded RAG answer is a refusal, LC is replayed
  too (cost RAG + LC, LC's result).
- ``cascade``: the cascade policy (``ctxroute.router.cascade``): RAG first, then the answer-side
  signals of the *recorded* RAG answer (refusal, hedging, missing asked-for type, overlaps with
  the retrieved text) decide whether to escalate; an escalation costs RAG + LC and takes LC's
  result (a HYBRID or MR target is replayed as LC, like above).
- ``auto``: whatever policy ``auto`` means in this version (``ctxroute.router.AUTO_POLICY``).
"""
from __future__ import annotations

import json
from collections import Counter
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from ctxroute.errors import InputError
from ctxroute.eval.lara import LARA_MODEL_PROFILES, Outcome
from ctxroute.eval.metrics import MeanCI, bootstrap_ci
from ctxroute.router import (
    CollectionStats,
    LearnedParams,
    ProbeSignals,
    QuestionTyper,
    RouteFeatures,
    Router,
    build_features,
    make_router,
)
from ctxroute.router.answer import AnswerSignals, answer_signals, content_terms
from ctxroute.router.features import stats_from_counts
from ctxroute.types import ModelProfile, Route

REPLAY_POLICIES = ("rag", "lc", "oracle", "self-route", "rules", "learned", "rules+esc", "learned+esc", "cascade")

# LaRA models with no ctxroute profile of their own: the closest stand-in
_EXTRA_PROFILES: Mapping[str, ModelProfile] = {
    "llama-3.2-3b-instruct": ModelProfile("llama-3.2-3b-instruct", 131072, 16384, 0.00006, 0.00006, size_class="tiny"),
}
_PROFILE_STANDIN = {"llama-3.3-70b-instruct": "llama-3.1-70b-instruct"}


def profile_for_model(model: str) -> ModelProfile:
    """ctxroute profile of a LaRA model folder name (or of a profile name)."""
    from ctxroute.profiles import get_profile

    name = LARA_MODEL_PROFILES.get(model, model)
    if name in _EXTRA_PROFILES:
        return _EXTRA_PROFILES[name]
    name = _PROFILE_STANDIN.get(name, name)
    return get_profile(name)


@dataclass(frozen=True)
class ReplayChoice:
    """What a policy did on one (model, question)."""

    key: str
    model: str
    route: str  # rag | lc | self-route escalation is "rag>lc"
    correct: bool
    prompt_tokens: int
    lc_prompt_tokens: int
    chosen: str = ""  # the router's own choice before mapping (e.g. "hybrid")
    escalated: bool = False
    level: str = ""
    length: str = ""


@dataclass(frozen=True)
class ReplaySummary:
    policy: str
    n: int
    accuracy: MeanCI
    token_ratio: float  # sum of prompt tokens / sum of always-LC prompt tokens
    mean_prompt_tokens: float
    regret: MeanCI  # oracle accuracy - policy accuracy, paired per question
    route_mix: Mapping[str, float]
    escalated: float
    mapped: int  # router choices not recorded (hybrid/mr) replayed as LC

    def as_dict(self) -> dict[str, object]:
        d = asdict(self)
        d["accuracy"] = self.accuracy.as_dict()
        d["regret"] = self.regret.as_dict()
        return d


class FeatureBuilder:
    """Router features for a recorded outcome; question typing is cached per question text."""

    def __init__(
        self,
        typer: QuestionTyper | None = None,
        count_tokens: Callable[[str], int] | None = None,
        probes: Mapping[str, ProbeSignals] | None = None,
        contexts: Mapping[str, Sequence[str]] | None = None,
        stats: Mapping[str, CollectionStats] | None = None,
        profile: ModelProfile | None = None,
        profile_for: Callable[[str], ModelProfile] | None = None,
    ) -> None:
        """``probes``/``contexts``/``stats`` are keyed by the outcome's question key: probe signals,
        the retrieved text standing in for what RAG saw (answer-side signals) and the collection
        statistics of the question's scope (default: one document of ``doc_tokens``).
        ``profile`` overrides the per-model profile lookup; ``profile_for`` replaces it (default:
        LaRA model names to ctxroute profiles)."""
        if count_tokens is None:
            from ctxroute.retrievers.tokens import get_counter

            count_tokens = get_counter("cl100k_base").count
        self.typer = typer or QuestionTyper()
        self.count_tokens = count_tokens
        self.probes = dict(probes or {})
        self.contexts = dict(contexts or {})
        self.stats = dict(stats or {})
        self.fixed_profile = profile
        self.profile_for = profile_for or profile_for_model
        self._qp: dict[str, object] = {}
        self._profiles: dict[str, ModelProfile] = {}
        self._signals: dict[tuple[str, str], AnswerSignals] = {}
        self._features: dict[tuple[str, str], RouteFeatures] = {}
        self._pools: dict[str, set[str]] = {}

    def signals(self, o: Outcome) -> AnswerSignals:
        """Answer-side signals of the recorded RAG answer (cached per question and model); a
        recorded refusal counts as one even when the text detector misses its wording."""
        k = (o.key, o.model)
        s = self._signals.get(k)
        if s is None:
            ctx = self.contexts.get(o.key)
            pool = None
            if ctx is not None:
                pool = self._pools.get(o.key)
                if pool is None:
                    pool = self._pools[o.key] = content_terms("\n".join(ctx))
            s = self._signals[k] = answer_signals(o.question, o.rag_answer, context_terms=pool, known_refusal=o.rag_refused)
        return s

    def profile(self, model: str) -> ModelProfile:
        if self.fixed_profile is not None:
            return self.fixed_profile
        if model not in self._profiles:
            self._profiles[model] = self.profile_for(model)
        return self._profiles[model]

    def __call__(self, o: Outcome) -> RouteFeatures:
        k = (o.key, o.model)
        f = self._features.get(k)
        if f is None:
            f = self._features[k] = self._build(o)
        return f

    def _build(self, o: Outcome) -> RouteFeatures:
        qp = self._qp.get(o.question)
        if qp is None:
            qp = self._qp[o.question] = self.typer.classify(o.question)
        stats: CollectionStats = self.stats.get(o.key) or stats_from_counts([o.doc_tokens or max(0, o.lc_prompt_tokens)])
        return build_features(
            o.question,
            stats,
            self.profile(o.model),
            question_profile=qp,  # type: ignore[arg-type]
            probe=self.probes.get(o.key),
            count_tokens=self.count_tokens,
        )


def _oracle(o: Outcome) -> ReplayChoice:
    if o.rag_correct != o.lc_correct:
        route = "rag" if o.rag_correct else "lc"
    else:
        route = "rag" if o.rag_prompt_tokens <= o.lc_prompt_tokens else "lc"
    return _fixed(o, route)


def _fixed(o: Outcome, route: str, chosen: str = "") -> ReplayChoice:
    rag = route == "rag"
    return ReplayChoice(
        key=o.key,
        model=o.model,
        route=route,
        correct=o.rag_correct if rag else o.lc_correct,
        prompt_tokens=o.rag_prompt_tokens if rag else o.lc_prompt_tokens,
        lc_prompt_tokens=o.lc_prompt_tokens,
        chosen=chosen or route,
        level=o.level,
        length=o.length,
    )


def _escalate(o: Outcome, chosen: str) -> ReplayChoice:
    return ReplayChoice(
        key=o.key,
        model=o.model,
        route="rag>lc",
        correct=o.lc_correct,
        prompt_tokens=o.rag_prompt_tokens + o.lc_prompt_tokens,
        lc_prompt_tokens=o.lc_prompt_tokens,
        chosen=chosen,
        escalated=True,
        level=o.level,
        length=o.length,
    )


def replay_choices(
    outcomes: Sequence[Outcome],
    policy: str,
    *,
    params: LearnedParams | None = None,
    router: Router | None = None,
    features: FeatureBuilder | None = None,
) -> list[ReplayChoice]:
    """One :class:`ReplayChoice` per outcome under ``policy`` (see the module docstring)."""
    key = policy.strip().lower()
    escalate = key.endswith("+esc")
    key = key.removesuffix("+esc")
    if key == "oracle":
        return [_oracle(o) for o in outcomes]
    if key in ("rag", "lc"):
        return [_fixed(o, key) for o in outcomes]
    if key == "self-route":
        return [_escalate(o, "rag") if o.rag_refused else _fixed(o, "rag") for o in outcomes]
    if key == "auto":
        from ctxroute.router import AUTO_POLICY

        return replay_choices(outcomes, AUTO_POLICY, params=params, router=router, features=features)
    if key == "cascade":
        return _replay_cascade(outcomes, router, features or FeatureBuilder())
    if key not in ("rules", "learned"):
        raise InputError(f"unknown replay policy {policy!r}; choose one of {', '.join(REPLAY_POLICIES)}", policy=policy)
    if router is None:
        router = make_router(key, params=params)
    fb = features or FeatureBuilder()
    out: list[ReplayChoice] = []
    for o in outcomes:
        f = fb(o)
        d = router.route(f, fb.profile(o.model))
        chosen = d.route.value
        if d.route == Route.RAG:
            if escalate and o.rag_refused and d.fallbacks:
                out.append(_escalate(o, chosen))
            else:
                out.append(_fixed(o, "rag", chosen))
        else:
            out.append(_fixed(o, "lc", chosen))
    return out


def _replay_cascade(outcomes: Sequence[Outcome], router: Router | None, fb: FeatureBuilder) -> list[ReplayChoice]:
    from ctxroute.router.cascade import CascadeRouter

    cas = router if isinstance(router, CascadeRouter) else CascadeRouter()
    out: list[ReplayChoice] = []
    for o in outcomes:
        f = fb(o)
        d = cas.route(f, fb.profile(o.model))
        if d.route != Route.RAG:
            out.append(_fixed(o, "lc", d.route.value))
            continue
        esc = cas.after_answer(f, fb.signals(o), d)
        out.append(_escalate(o, "cascade") if esc.escalate else _fixed(o, "rag", "rag"))
    return out


def summarize(policy: str, choices: Sequence[ReplayChoice], oracle: Sequence[ReplayChoice], *, n_boot: int = 1000, seed: int = 0) -> ReplaySummary:
    """Accuracy, token ratio against always-LC, regret against the oracle (paired) and route mix."""
    if len(choices) != len(oracle):
        raise InputError(f"{len(choices)} choices but {len(oracle)} oracle choices; replay the same outcomes")
    if not choices:
        raise InputError("no outcomes to summarise; check the --model and split filters")
    acc = np.array([c.correct for c in choices], dtype=float)
    orc = np.array([c.correct for c in oracle], dtype=float)
    tokens = np.array([c.prompt_tokens for c in choices], dtype=float)
    lc = np.array([c.lc_prompt_tokens for c in choices], dtype=float)
    mix = Counter(c.route for c in choices)
    return ReplaySummary(
        policy=policy,
        n=len(choices),
        accuracy=bootstrap_ci(acc, n=n_boot, seed=seed),
        token_ratio=float(tokens.sum() / lc.sum()) if lc.sum() else float("nan"),
        mean_prompt_tokens=float(tokens.mean()),
        regret=bootstrap_ci(orc - acc, n=n_boot, seed=seed),
        route_mix={k: v / len(choices) for k, v in sorted(mix.items())},
        escalated=float(np.mean([c.escalated for c in choices])),
        mapped=sum(1 for c in choices if c.chosen not in ("rag", "lc")),
    )


def replay(
    outcomes: Sequence[Outcome],
    policies: Iterable[str] = REPLAY_POLICIES,
    *,
    params: LearnedParams | None = None,
    features: FeatureBuilder | None = None,
    n_boot: int = 1000,
    seed: int = 0,
) -> tuple[list[ReplaySummary], dict[str, list[ReplayChoice]]]:
    """Replay several policies over the same outcomes; ``learned`` is skipped without params."""
    fb = features or FeatureBuilder()
    oracle = replay_choices(outcomes, "oracle")
    summaries: list[ReplaySummary] = []
    all_choices: dict[str, list[ReplayChoice]] = {}
    for p in policies:
        if p.startswith("learned") and params is None:
            continue
        ch = oracle if p == "oracle" else replay_choices(outcomes, p, params=params, features=fb)
        all_choices[p] = ch
        summaries.append(summarize(p, ch, oracle, n_boot=n_boot, seed=seed))
    return summaries, all_choices


def write_choices(choices: Mapping[str, Sequence[ReplayChoice]], path: str | Path) -> None:
    """Replay choices as JSONL records that ``ctxroute eval report`` reads (one per policy x question)."""
    with Path(path).open("w", encoding="utf-8") as fh:
        for policy, chs in choices.items():
            for c in chs:
                rec = {
                    "id": c.key,
                    "model": c.model,
                    "route_requested": policy,
                    "route_taken": c.route,
                    "correct": {"judge": c.correct},
                    "prompt_tokens": c.prompt_tokens,
                    "lc_prompt_tokens": c.lc_prompt_tokens,
                    "task": c.level,
                    "answerable": c.level != "hallu",
                    "escalated": c.escalated,
                    "source": "replay",
                }
                fh.write(json.dumps(rec) + "\n")


__all__ = [
    "FeatureBuilder",
    "REPLAY_POLICIES",
    "ReplayChoice",
    "ReplaySummary",
    "profile_for_model",
    "replay",
    "replay_choices",
    "summarize",
    "write_choices",
]

