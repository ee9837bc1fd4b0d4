"""The compressor's selection order: strong units by score, weak ones (below ``weak_score``) in the
hits' rank order (RAG's order), the seed of whole top passages, and the guarantees that hold for
every setting (budget, whole table rows, document order, exact spans)."""
from __future__ import annotations

import re

import pytest

from ctxroute.errors import InputError
from ctxroute.pipelines.compress import ID_TOKENS, MARKER_TOKENS, CompressConfig, DocSentences, compress, select_sentences
from ctxroute.pipelines.compress_score import hit_ranks
from ctxroute.pipelines.result import Corpus
from ctxroute.types import Chunk, Document, ScoredChunk

from tests.pipelines.test_compress import QUESTION, coll  # noqa: F401  (the fixture)

WORDS = ["alpha", "bravo", "charlie", "delta", "echo", "foxtrot", "golf", "hotel", "india", "juliet"]


def _doc() -> tuple[DocSentences, list[Chunk]]:
    """Ten sentences of 10 tokens (the first mentions zebras), five passages of two sentences."""
    parts, sents, pos = [], [], 0
    for i, w in enumerate(WORDS):
        t = ("The zebra herd grazed here. " if i == 0 else f"Sentence {w} says nothing new. ")
        parts.append(t)
        sents.append(Chunk(id=f"s{i}", doc_id="d", level="sentence", start=pos, end=pos + len(t) - 1, parent_id=None,
                           ordinal=i, n_tokens=10))
        pos += len(t)
    doc = Document(id="d", text="".join(parts), title="t")
    passages = [Chunk(id=f"p{j}", doc_id="d", level="passage", start=sents[2 * j].start, end=sents[2 * j + 1].end,
                      parent_id=None, ordinal=j, n_tokens=20) for j in range(5)]
    return DocSentences(doc, sents), passages


def _hits(passages: list[Chunk]) -> list[ScoredChunk]:
    # rank order p3, p1, p4 (p0, holding the zebra sentence, is not retrieved)
    return [ScoredChunk(passages[3], 1.0, "hybrid"), ScoredChunk(passages[1], 0.9, "hybrid"),
            ScoredChunk(passages[4], 0.8, "hybrid")]


FOUR = 4 * (10 + ID_TOKENS) + 2 * MARKER_TOKENS  # four sentences, two dropped stretches (one marker each)


def test_hit_ranks_give_each_sentence_its_best_hit():
    d, passages = _doc()
    ranks = hit_ranks(_hits(passages), [d])["d"]
    assert ranks.tolist() == [float("inf")] * 2 + [1, 1] + [float("inf")] * 2 + [0, 0, 2, 2]


def test_weak_units_follow_the_rank_order_and_strong_ones_come_first():
    d, passages = _doc()
    hits = _hits(passages)
    base = CompressConfig(ratio=None, max_tokens=FOUR, seed_share=0.0, window=0, w_lead=0.0)
    # every unit weak: the ranked passages in rank order, like RAG's pick (two runs inside the document:
    # three dropped stretches, before, between and after them)
    rag_like = select_sentences("zebra herd", [d], hits, CompressConfig(**{**base.__dict__, "weak_score": 5.0,
                                                                            "max_tokens": FOUR + MARKER_TOKENS}))
    assert rag_like.kept["d"] == (2, 3, 6, 7)
    # by score only: the lexical match (score 2 x 1.0) comes first, p1 (0.9) loses its place to p4 (0.8), next to p3
    by_score = select_sentences("zebra herd", [d], hits, CompressConfig(**{**base.__dict__, "weak_score": None}))
    assert by_score.kept["d"] == (0, 6, 7, 8)
    # a threshold under the lexical match: it is strong (first), then the rest in rank order
    mixed = select_sentences("zebra herd", [d], hits, CompressConfig(**{**base.__dict__, "weak_score": 0.5,
                                                                          "max_tokens": 3 * 14 + 2 * MARKER_TOKENS}))
    assert mixed.kept["d"] == (0, 6, 7)
    for sel in (rag_like, by_score, mixed):
        assert sel.kept_tokens <= sel.budget


def test_not_retrieved_weak_units_come_last_by_score():
    d, passages = _doc()
    cfg = CompressConfig(ratio=None, max_tokens=10_000, seed_share=0.0, window=0, w_lead=0.0, weak_score=5.0)
    sel = select_sentences("zebra herd", [d], _hits(passages), cfg)
    assert sel.kept["d"] == tuple(range(10))  # everything fits: nothing is lost by the order


@pytest.mark.parametrize("weak", [None, 0.0, 0.25, 1.0, 100.0])
@pytest.mark.parametrize("ratio", [0.1, 0.35, 0.5])
def test_guarantees_hold_for_every_weak_score(coll, weak, ratio):  # noqa: F811
    corpus = Corpus(coll)
    out = compress(QUESTION, corpus, CompressConfig(ratio=ratio, weak_score=weak, retriever="hybrid"))
    sel, packed = out.selection, out.packed
    assert 0 < sel.kept_tokens <= sel.budget
    cost = 0
    for did, idx in sel.kept.items():
        sents = coll.chunks(did).sentences
        text = coll.document(did).text
        cost += sum(sents[i].n_tokens + ID_TOKENS for i in idx)
        kept = set(idx)
        # a table row's sentences (sharing one line) are kept together or not at all
        for i, s in enumerate(sents):
            line_start = text.rfind("\n", 0, s.start) + 1
            line_end = text.find("\n", s.start)
            line = text[line_start:line_end if line_end >= 0 else len(text)]
            if line.lstrip().startswith("|"):
                same = [j for j, t in enumerate(sents) if line_start <= t.start < (line_end if line_end >= 0 else len(text))]
                assert all(j in kept for j in same) or not any(j in kept for j in same)
    assert cost <= sel.budget
    refs = list(packed.sentence_map.refs.values())
    order = {d: i for i, d in enumerate(corpus.doc_ids())}
    assert [(order[r.doc_id], r.start) for r in refs] == sorted((order[r.doc_id], r.start) for r in refs)
    for r in refs:
        assert coll.document(r.doc_id).text[r.start:r.end] == coll.sentence_at(r.doc_id, r.start).text_of(coll.document(r.doc_id))
    assert re.search(r"\[\.\.\. \d+ sentences? omitted \.\.\.\]", packed.text)


@pytest.mark.parametrize("ratio", [0.2, 0.35, 0.5])
def test_selection_contains_the_seed_rag_would_pick(coll, ratio):  # noqa: F811
    """At the same budget, the kept sentences include RAG's pick at seed_share x the budget: the top
    passages whole, in rank order, while they fit (whatever weak_score is)."""
    corpus = Corpus(coll)
    hits = coll.search(QUESTION, 40, retriever="hybrid")
    docs = [DocSentences(corpus.document(d), corpus.sentences(d)) for d in corpus.doc_ids()]
    for weak in (None, 0.25, 100.0):
        cfg = CompressConfig(ratio=ratio, weak_score=weak, seed_share=0.5)
        sel = select_sentences(QUESTION, docs, hits, cfg)
        cap, used, seed = cfg.seed_share * sel.budget, 0, set()
        for h in hits:
            sents = corpus.sentences(h.chunk.doc_id)
            new = [(h.chunk.doc_id, i) for i, s in enumerate(sents)
                   if s.start >= h.chunk.start and s.end <= h.chunk.end and (h.chunk.doc_id, i) not in seed]
            c = sum(sents[i].n_tokens + ID_TOKENS for _, i in new) + MARKER_TOKENS  # at most one new run
            if new and used + c <= cap:
                seed.update(new)
                used += c
        kept = {(d, i) for d, idx in sel.kept.items() for i in idx}
        assert seed and seed <= kept
        assert sel.kept_tokens <= sel.budget


def test_bad_weak_score():
    with pytest.raises(InputError):
        CompressConfig(weak_score=-0.1)
