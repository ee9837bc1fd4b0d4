"""Router (layer 2): features and policies -> RoutingDecision. Pure and deterministic: no I/O,
no LLM, no model loading (embedders and probe hits are passed in by the caller)."""
from __future__ import annotations

from ctxroute.router.estimates import EstimateSettings, estimate_routes, estimates_for
from ctxroute.router.features import (
    FEATURE_NAMES,
    CollectionStats,
    ProbeSignals,
    RouteFeatures,
    build_features,
    collection_signals,
    probe_signals,
)
from ctxroute.router.learned import LearnedParams, fit_learned
from ctxroute.router.answer import ANSWER_FEATURE_NAMES, AnswerSignals, answer_signals
from ctxroute.router.cascade import CASCADE_FEATURE_NAMES, CascadeRouter, Escalation
from ctxroute.router.policies import (
    AUTO_POLICY,
    POLICIES,
    FixedRouter,
    LearnedRouter,
    Router,
    RulesRouter,
    SelfRouteRouter,
    decide,
    make_router,
)
from ctxroute.router.questions import QuestionProfile, QuestionType, QuestionTyper
from ctxroute.router.rules import DEFAULT_RULES, Rule, RuleTable, Thresholds

__all__ = [
    "ANSWER_FEATURE_NAMES", "AUTO_POLICY", "AnswerSignals", "CASCADE_FEATURE_NAMES", "CascadeRouter", "Escalation",
    "answer_signals", "CollectionStats", "DEFAULT_RULES", "EstimateSettings", "FEATURE_NAMES", "FixedRouter", "LearnedParams",
    "LearnedRouter", "POLICIES", "ProbeSignals", "QuestionProfile", "QuestionType", "QuestionTyper", "RouteFeatures",
    "Router", "Rule", "RuleTable", "RulesRouter", "SelfRouteRouter", "Thresholds", "build_features", "collection_signals", "decide",
    "estimate_routes", "estimates_for", "fit_learned", "make_router", "probe_signals",
]
