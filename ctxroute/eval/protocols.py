"""Out-of-sample protocols for router evidence on recorded outcomes.

Each protocol splits the outcomes into folds; for every fold the fitted policies (``learned``,
``cascade``) are fitted on the other folds only (their ``lam`` too), then every policy is
replayed on the held-out fold:

- ``cross-length``: fit on LaRA 32k, test on 128k, and back;
- ``domain``: leave one domain out (book / paper / financial);
- ``family``: leave one model family out (gpt, claude, gemini, llama, qwen, mistral).

``rules`` has no fitted part, but its thresholds were set while looking at LaRA: its numbers
are in-sample on every protocol. ``cascade`` is fitted for the fit folds' own share of
unanswerable questions (the test fold comes from the same benchmark); ``auto`` is what ships:
the cascade fitted for the default expected share in use
(``ctxroute.eval.cascade.DEFAULT_UNANSWERABLE_RATE``), on the same fit folds. Accuracy carries a bootstrap 95% interval; prompt tokens are a share of
always-LC's on the same questions.
"""
from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from typing import Callable, Mapping, Sequence

from ctxroute.errors import InputError
from ctxroute.eval.cascade import DEFAULT_UNANSWERABLE_RATE, fit_cascade
from ctxroute.eval.fit import fit_from_outcomes, tune_lam, with_lam
from ctxroute.eval.lara import Outcome
from ctxroute.eval.replay import FeatureBuilder, ReplaySummary, replay_choices, summarize
from ctxroute.router.cascade import CascadeRouter
from ctxroute.router.policies import AUTO_POLICY, LearnedRouter

PROTOCOLS = ("cross-length", "domain", "family")
PROTOCOL_POLICIES = ("rag", "lc", "self-route", "rules", "learned", "cascade", "auto", "oracle")
FIXED = ("rag", "lc")


def model_family(model: str) -> str:
    m = model.lower()
    for fam in ("gpt", "claude", "gemini", "llama", "qwen", "mistral"):
        if fam in m:
            return fam
    return m.split("-")[0]


def protocol_folds(outcomes: Sequence[Outcome], protocol: str) -> list[tuple[str, list[Outcome], list[Outcome]]]:
    """(fold name, fit outcomes, test outcomes) for ``protocol``."""
    key: Callable[[Outcome], str]
    if protocol == "cross-length":
        lengths = sorted({o.length for o in outcomes})
        if len(lengths) < 2:
            raise InputError(f"cross-length needs outcomes of two lengths, found {lengths}")
        return [(f"fit {a} -> test {b}", [o for o in outcomes if o.length == a], [o for o in outcomes if o.length == b])
                for a in lengths for b in lengths if a != b]
    if protocol == "domain":
        key = lambda o: o.domain  # noqa: E731
    elif protocol == "family":
        key = lambda o: model_family(o.model)  # noqa: E731
    else:
        raise InputError(f"unknown protocol {protocol!r}; choose one of {', '.join(PROTOCOLS)}", protocol=protocol)
    groups = sorted({key(o) for o in outcomes})
    if len(groups) < 2:
        raise InputError(f"protocol {protocol} needs at least two groups, found {groups}")
    return [(f"held out: {g}", [o for o in outcomes if key(o) != g], [o for o in outcomes if key(o) == g]) for g in groups]


@dataclass(frozen=True)
class FoldResult:
    protocol: str
    fold: str
    n_fit: int
    n_test: int
    lam_learned: float
    lam_cascade: float
    summaries: tuple[ReplaySummary, ...]
    notes: Mapping[str, str] = field(default_factory=dict)

    def by_policy(self) -> dict[str, ReplaySummary]:
        return {s.policy: s for s in self.summaries}

    def goal(self, max_token_ratio: float = 0.40, above: float = 0.01, oracle_gap: float = 0.06) -> dict[str, object]:
        """The issue's goal for ``auto``: >= ``above`` over the better fixed route, within
        ``oracle_gap`` of the oracle, at most ``max_token_ratio`` of always-LC's prompt tokens."""
        by = self.by_policy()
        a = by["auto"]
        best_fixed = max(by[p].accuracy.mean for p in FIXED)
        checks = {
            "above_best_fixed": a.accuracy.mean - best_fixed,
            "below_oracle": by["oracle"].accuracy.mean - a.accuracy.mean,
            "token_ratio": a.token_ratio,
        }
        met = checks["above_best_fixed"] >= above and checks["below_oracle"] <= oracle_gap and a.token_ratio <= max_token_ratio
        return {**checks, "met": met}

    def winner(self) -> str:
        by = self.by_policy()
        cands = [p for p in by if p not in ("oracle", "auto")]
        return max(cands, key=lambda p: (round(by[p].accuracy.mean, 6), -by[p].token_ratio))

    def as_dict(self) -> dict[str, object]:
        return {
            "protocol": self.protocol, "fold": self.fold, "n_fit": self.n_fit, "n_test": self.n_test,
            "lam_learned": self.lam_learned, "lam_cascade": self.lam_cascade,
            "policies": {s.policy: s.as_dict() for s in self.summaries}, "goal": self.goal(), "winner": self.winner(),
            "notes": dict(self.notes),
        }


def run_protocol(
    outcomes: Sequence[Outcome],
    protocol: str,
    fb: FeatureBuilder,
    *,
    max_token_ratio: float = 0.30,
    n_boot: int = 1000,
    progress: Callable[[str], None] | None = None,
) -> list[FoldResult]:
    """Every fold of ``protocol``: fit on the rest, replay every policy on the fold."""
    out: list[FoldResult] = []
    for name, fit, test in protocol_folds(outcomes, protocol):
        if progress:
            progress(f"{protocol}: {name} (fit {len(fit)}, test {len(test)})")
        lp = fit_from_outcomes(fit, features=fb, meta={"protocol": protocol, "fold": name})
        lchoice, _ = tune_lam(fit, lp, max_token_ratio=max_token_ratio, features=fb)
        lp = with_lam(lp, lchoice.lam)
        # cascade: the fit folds' own share of unanswerable questions (same benchmark as the test
        # fold); auto: what ships, the cascade fitted for the default expected share in use
        cp, _ = fit_cascade(fit, fb, max_token_ratio=max_token_ratio, unanswerable_rate=None,
                            meta={"protocol": protocol, "fold": name})
        ap, _ = fit_cascade(fit, fb, max_token_ratio=max_token_ratio, meta={"protocol": protocol, "fold": name})
        oracle = replay_choices(test, "oracle")
        summaries: list[ReplaySummary] = []
        for pol in PROTOCOL_POLICIES:
            key = AUTO_POLICY if pol == "auto" else pol
            if key == "learned":
                ch = replay_choices(test, "learned", router=LearnedRouter(lp), features=fb)
            elif key == "cascade":
                ch = replay_choices(test, "cascade", router=CascadeRouter(ap if pol == "auto" else cp), features=fb)
            else:
                ch = oracle if key == "oracle" else replay_choices(test, key, features=fb)
            summaries.append(summarize(pol, ch, oracle, n_boot=n_boot))
        out.append(FoldResult(protocol, name, len(fit), len(test), lchoice.lam, cp.lam, tuple(summaries),
                              notes={"lam_auto": str(ap.lam), "fit_unanswerable_rate": f"{cp.meta.get('fit_unanswerable_rate', 0):.3f}"}))
    return out


def pooled(results: Sequence[FoldResult]) -> dict[str, tuple[float, float]]:
    """Accuracy and token ratio per policy pooled over the folds (weighted by test size)."""
    acc: dict[str, float] = defaultdict(float)
    tok: dict[str, list[float]] = defaultdict(lambda: [0.0, 0.0])
    n = sum(r.n_test for r in results)
    for r in results:
        for s in r.summaries:
            acc[s.policy] += s.accuracy.mean * r.n_test / max(1, n)
            tok[s.policy][0] += s.token_ratio * r.n_test
            tok[s.policy][1] += r.n_test
    return {p: (acc[p], tok[p][0] / max(1.0, tok[p][1])) for p in acc}


def protocol_markdown(results: Sequence[FoldResult], *, title: str, max_token_ratio: float = 0.30, in_sample: Sequence[str] = ("rules",)) -> str:
    if not results:
        raise InputError("no protocol results to report")
    pols = [s.policy for s in results[0].summaries]
    lines = [
        f"# {title}",
        "",
        f"Protocol `{results[0].protocol}`: `learned`, `cascade` and `auto` are fitted on the other folds only, "
        f"lam chosen there for the best accuracy within {100 * max_token_ratio:.0f}% of always-LC's prompt tokens. "
        f"`cascade` expects the fit folds' share of unanswerable questions; `auto` (= `{AUTO_POLICY}` as shipped) expects "
        f"{100 * DEFAULT_UNANSWERABLE_RATE:.0f}% (the shipped default; LaRA has 26%). "
        "Cells: accuracy % [bootstrap 95% CI] / prompt tokens as % of always-LC. "
        + (f"In-sample: {', '.join(in_sample)} (thresholds set while looking at LaRA). " if in_sample else "")
        + "Goal for auto: >= 1 point above the better fixed route, within 6 points of the oracle, <= 40% of LC tokens.",
        "",
        "| fold | n | " + " | ".join(pols) + " | winner | goal (auto - best fixed / oracle - auto / tokens) |",
        "|---|---|" + "---|" * len(pols) + "---|---|",
    ]
    for r in results:
        g = r.goal()
        cells = [f"{100 * s.accuracy.mean:.1f} [{100 * s.accuracy.low:.1f}, {100 * s.accuracy.high:.1f}] / {100 * s.token_ratio:.0f}%" for s in r.summaries]
        lines.append(
            f"| {r.fold} | {r.n_test} | " + " | ".join(cells) + f" | {r.winner()} | "
            f"{'met' if g['met'] else 'NOT met'}: {100 * float(g['above_best_fixed']):+.1f} / {100 * float(g['below_oracle']):.1f} / {100 * float(g['token_ratio']):.0f}% |"
        )
    pool = pooled(results)
    lines.append("| pooled over folds | " + str(sum(r.n_test for r in results)) + " | "
                 + " | ".join(f"{100 * pool[p][0]:.1f} / {100 * pool[p][1]:.0f}%" for p in pols) + " | | |")
    lines.append("")
    return "\n".join(lines)


__all__ = ["FIXED", "FoldResult", "PROTOCOLS", "PROTOCOL_POLICIES", "model_family", "pooled", "protocol_folds", "protocol_markdown", "run_protocol"]
