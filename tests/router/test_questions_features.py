"""Question typing, probe signals, features and estimates."""
from __future__ import annotations

import math

import numpy as np
import pytest

from ctxroute.errors import InputError
from ctxroute.retrievers.embedders import HashingEmbedder
from ctxroute.router import (
    FEATURE_NAMES,
    CollectionStats,
    QuestionType,
    QuestionTyper,
    build_features,
    estimate_routes,
    probe_signals,
)
from ctxroute.types import Chunk, Level, Route, ScoredChunk

from tests.router.helpers import PROFILES, TYPER, features

Q = QuestionType


@pytest.mark.parametrize(
    "question, qtype, cue",
    [
        ("What was the accuracy of the GRU-SVM model reported in paper 1?", Q.LOOKUP, "what is/was"),
        ("Who signed the agreement?", Q.LOOKUP, "who/when/where"),
        ("Compare the revenue of the two segments.", Q.COMPARISON, "compare"),
        ("What is the difference between Fred's and Scrooge's view of Christmas?", Q.COMPARISON, "difference between"),
        ("How did adjusted EBITDA change from 2022 to 2023 for both segments?", Q.COMPARISON, "both"),
        ("Summarize the story.", Q.AGGREGATION, "summar"),
        ("List all the obligations of the licensee.", Q.AGGREGATION, "list all"),
        ("How many times does the ghost appear?", Q.COUNTING, "how many times"),
        ("How many clients does 2U, Inc. have as of December 31, 2023?", Q.LOOKUP, "as of"),
        ("Why does Hartman leave the party, and what does he learn?", Q.MULTI_HOP, "why ... and"),
        ("How does the choice of amateur model influence performance?", Q.MULTI_HOP, "how does ... affect"),
        ("What is the projected revenue growth rate for Blue Star Foods?", Q.UNANSWERABLE, "projected/forecast"),
    ],
)
def test_question_cues(question, qtype, cue):
    p = TYPER.classify(question)
    assert p.qtype is qtype, p
    assert cue in p.cues
    assert math.isclose(sum(p.scores.values()), 1.0, rel_tol=1e-4)
    assert max(p.scores, key=p.scores.get) == qtype.value


def test_no_cue_is_a_lookup():
    p = TYPER.classify("Tell me about the harbour.")
    assert p.qtype is Q.LOOKUP and p.cues == ()


def test_prototypes_blend_deterministically():
    typer = QuestionTyper(HashingEmbedder(dim=128))
    a = typer.classify("Summarize the main themes of the book.")
    b = typer.classify("Summarize the main themes of the book.")
    assert a == b and a.qtype is Q.AGGREGATION
    # the embedding vote moves the scores away from the rule-only ones
    assert a.scores != TYPER.classify("Summarize the main themes of the book.").scores
    assert math.isclose(sum(a.scores.values()), 1.0, rel_tol=1e-4)


def _hit(i: int, score: float, doc: str = "d", dense: float | None = None, parent: str = "s0") -> ScoredChunk:
    c = Chunk(id=f"{doc}:{i}", doc_id=doc, level=Level.PASSAGE, start=i * 100, end=i * 100 + 100,
              parent_id=parent, ordinal=i)
    return ScoredChunk(c, score, "hybrid", scores={"dense": dense} if dense is not None else {})


def test_probe_signals_confident_and_flat():
    sharp = probe_signals([_hit(0, 10.0), _hit(5, 2.0), _hit(9, 1.9), _hit(20, 1.8)], doc_chars={"d": 10_000})
    flat = probe_signals([_hit(i * 10, 5.0 - 0.01 * i, parent=f"s{i}") for i in range(10)], doc_chars={"d": 10_000})
    assert sharp.margin == pytest.approx(0.8)
    assert sharp.entropy < 0.2 < 0.9 < flat.entropy
    assert flat.n_sections_in_top == 10 and sharp.n_sections_in_top == 1
    assert sharp.spread == pytest.approx(2100 / 10_000)
    assert sharp.source == "hybrid"


def test_probe_prefers_dense_scores_and_counts_docs():
    hits = [_hit(0, 0.03, "a", dense=0.8), _hit(1, 0.02, "b", dense=0.4), _hit(2, 0.01, "b")]
    s = probe_signals(hits)
    assert s.source == "dense" and s.top_score == pytest.approx(0.8) and s.margin == pytest.approx(0.5)
    assert s.n_docs_in_top == 2 and s.n_hits == 3


def test_probe_of_no_hits():
    s = probe_signals([])
    assert s.n_hits == 0 and s.source == "none"
    f, _ = features("Who?", 1000, "tiny", probe=s)
    assert f.has_probe == 0


def test_features_dict_and_vector():
    f, _ = features("Compare the two methods.", (10_000, 30_000), "small")
    d = f.as_dict()
    assert d["total_tokens"] == 40_000.0 and d["max_doc_tokens"] == 30_000.0 and d["n_docs"] == 2.0
    assert d["fits_window"] == 0.0 and d["qtype"] == "comparison" and d["size_class"] == "small"
    assert d["budget_tokens"] == -1.0 and "q_comparison" in d
    assert all(isinstance(v, str) or math.isfinite(v) for v in d.values())
    v = f.vector()
    assert v.shape == (len(FEATURE_NAMES),) and np.isfinite(v).all()
    assert v[FEATURE_NAMES.index("size_small")] == 1.0 and v[FEATURE_NAMES.index("qtype_comparison")] == 1.0


def test_build_features_errors():
    stats = CollectionStats(1, 10, (10,))
    with pytest.raises(InputError, match="question is empty"):
        build_features("  ", stats, PROFILES["tiny"], question_profile=TYPER.classify("x"))
    with pytest.raises(InputError, match="collection is empty"):
        build_features("Who?", CollectionStats(0, 0, ()), PROFILES["tiny"], question_profile=TYPER.classify("x"))
    with pytest.raises(InputError, match=">= 0"):
        CollectionStats(1, -1, (-1,))


def test_estimates_shapes():
    f, profile = features("Summarize the book.", 100_000, "large")
    est = {e.route: e for e in estimate_routes(f, profile)}
    assert est[Route.RAG].prompt_tokens < 4_000 and est[Route.RAG].calls == 1
    assert not est[Route.LC].feasible and "usable window 32.8k" in est[Route.LC].why_not
    assert est[Route.HYBRID].prompt_tokens <= profile.usable_window
    mr = est[Route.MR]
    assert mr.feasible and mr.calls >= 5 and mr.prompt_tokens > 100_000
    assert mr.cost == pytest.approx(profile.cost(mr.prompt_tokens, mr.completion_tokens))
    assert est[Route.EXTRACTIVE].total_tokens == 0 and est[Route.EXTRACTIVE].calls == 0
    # the collection fits: LC costs about the collection, one call
    f2, _ = features("Summarize the book.", 20_000, "large")
    lc = {e.route: e for e in estimate_routes(f2, profile)}[Route.LC]
    assert lc.feasible and 20_000 < lc.prompt_tokens < 21_000


def test_precomputed_embedding_matches_and_is_checked():
    emb = HashingEmbedder(dim=64)
    typer = QuestionTyper(emb)
    q = "How does the first method compare with the second?"
    assert typer.classify(q, embedding=emb.embed([q])[0]) == typer.classify(q)
    with pytest.raises(InputError, match="dim 3"):
        typer.classify(q, embedding=np.zeros(3))
