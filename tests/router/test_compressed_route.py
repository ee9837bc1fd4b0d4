"""compressed-lc in the estimates, the rules table and the cascade's escalation order."""
from __future__ import annotations

from ctxroute.router import RulesRouter
from ctxroute.router.cascade import CascadeRouter
from ctxroute.router.estimates import EstimateSettings, estimates_for
from ctxroute.types import Budget, Route

from tests.router.helpers import UNSURE, features


def _by(f, profile, ratio=0.35):  # type: ignore[no-untyped-def]
    return {e.route: e for e in estimates_for(f, profile, EstimateSettings(compress_ratio=ratio))}


def test_estimate_scales_with_the_ratio_and_checks_the_window():
    f, profile = features("Compare the two methods in paper 0.", 100_000, "frontier", probe=UNSURE)
    by = _by(f, profile)
    q = f.question_tokens + 200
    assert by[Route.COMPRESSED].prompt_tokens == 35_000 + q and by[Route.COMPRESSED].feasible
    assert by[Route.COMPRESSED].calls == 1 and by[Route.COMPRESSED].completion_tokens == 300
    assert _by(f, profile, 0.1)[Route.COMPRESSED].prompt_tokens == 10_000 + q
    big = _by(f, profile, 0.9)[Route.COMPRESSED]
    assert not big.feasible and "ratio 0.9" in big.why_not and "usable window 64k" in big.why_not
    assert not by[Route.LC].feasible


def test_rules_reason_names_ratio_and_tokens_and_follows_settings():
    f, profile = features("Compare the two methods in paper 0.", 100_000, "frontier", probe=UNSURE)
    d = RulesRouter(settings=EstimateSettings(compress_ratio=0.2)).route(f, profile)
    assert d.route is Route.COMPRESSED
    assert d.reasons[0].startswith("compressed-fits:")
    assert "ratio 0.2" in d.reason and "~20.2k prompt tokens" in d.reason and "100k tokens > usable window 64k" in d.reason
    assert d.fallbacks[0] is Route.HYBRID


def test_rules_skip_compressed_for_lookups_and_small_models():
    f, profile = features("Who signed the lease?", 100_000, "frontier", probe=UNSURE)
    assert RulesRouter().route(f, profile).route is not Route.COMPRESSED
    f, profile = features("Compare the two methods in paper 0.", 30_000, "small", probe=UNSURE)
    assert RulesRouter().route(f, profile).route is Route.HYBRID


def test_compressed_over_budget_is_not_chosen():
    f, profile = features("Compare the two methods in paper 0.", 100_000, "frontier", probe=UNSURE,
                          budget=Budget(max_tokens=20_000))
    d = RulesRouter().route(f, profile, Budget(max_tokens=20_000))
    assert d.route is not Route.COMPRESSED


def test_cascade_escalates_to_compressed_when_lc_does_not_fit():
    f, profile = features("Compare the two methods in paper 0.", 100_000, "frontier", probe=UNSURE)
    # default (the fitted, evaluated behaviour): hybrid is the target when LC does not fit
    assert CascadeRouter().route(f, profile).fallbacks[0] is Route.HYBRID
    router = CascadeRouter(escalate_to_compressed=True)
    d = router.route(f, profile)
    assert d.route is Route.RAG and d.fallbacks[0] is Route.COMPRESSED
    assert "escalate to compressed-lc" in d.reasons[0]
    # fits: LC stays the target; far beyond: hybrid
    f, profile = features("Compare the two methods in paper 0.", 40_000, "frontier", probe=UNSURE)
    assert router.route(f, profile).fallbacks[0] is Route.LC
    f, profile = features("Compare the two methods in paper 0.", 400_000, "frontier", probe=UNSURE)
    assert router.route(f, profile).fallbacks[0] is Route.HYBRID


def test_absolute_budget_alone_or_with_a_ratio_and_its_reason():
    from ctxroute.router.estimates import compress_budget

    f, profile = features("Compare the two methods in paper 0.", 100_000, "frontier", probe=UNSURE)
    q = f.question_tokens + 200
    by = lambda s: {e.route: e for e in estimates_for(f, profile, s)}[Route.COMPRESSED]  # noqa: E731
    assert by(EstimateSettings(compress_ratio=None, compress_max_tokens=8_000)).prompt_tokens == 8_000 + q
    assert by(EstimateSettings(compress_ratio=0.05, compress_max_tokens=8_000)).prompt_tokens == 5_000 + q  # the smaller
    assert by(EstimateSettings(compress_ratio=0.35, compress_max_tokens=8_000)).prompt_tokens == 8_000 + q
    too_big = by(EstimateSettings(compress_ratio=None, compress_max_tokens=70_000))
    assert not too_big.feasible and "at most 70k tokens" in too_big.why_not
    assert compress_budget(1_000, None, None) == 350 and compress_budget(10, 0.01, None) == 1  # never 0
    d = RulesRouter(settings=EstimateSettings(compress_ratio=None, compress_max_tokens=8_000)).route(f, profile)
    assert d.route is Route.COMPRESSED and "compressed to at most 8k tokens it is ~8.2k prompt tokens" in d.reason
