"""Evidence retention of the query-aware compressor (``ctxroute.pipelines.compress``), no LLM.

For each question, the documents' sentences are compressed to ``ratio`` x their tokens and we
measure how much of the gold evidence the kept sentences hold, against two baselines at the
same token budget: random sentence dropping (3 seeds) and RAG's top passages (in rank order
while they fit). Data (read-only, never copied): ``../shared/data``.

- LooGLE (``S`` evidence sentences) and L-Eval contracts (verbatim gold clauses): located with
  ``benchmarks/quality_data.py``; retention = share of the evidence's characters inside kept
  sentences (per question, averaged over questions).
- LaRA 32k ``location`` questions: the gold is a coarse slice (``context_order``); inside it the
  evidence sentence is the one sharing most of the gold answer's content terms (at least half of
  them, else the question is skipped); retention = share of those sentences kept.
- SEC 10-Q (``--datasets sec``): the answers' numbers found in the filing; retention = share of
  them present in the kept text.

Scoring: one collection per document with ``--embedder`` (``hashing``: cheap on 2 cores, with
``--retriever bm25``; ``minilm``: all-MiniLM-L6-v2, the product's default, with ``--retriever
hybrid``, the compressor's default), passage scores from the ``--retriever``, lexical match from
the compressor; no dense sentence scores. The RAG baseline reads the whole ranking (k = every
passage); the compressor its own search, as ``compress()`` does (``search_k``).
``--ablation`` adds the compressor before this round (``weak_score=None``: every unit by
score) and before the round before (no seed, no lead prior, no quote boost) on the same
collections. ``--cache DIR`` keeps the collections and each question's rankings on disk
(``compression_cache.py``): the first MiniLM run embeds the 81 documents (~11 min on 2 cores),
later runs score a config in about a minute; ``compression_tuning.py`` reads the same cache.

Speed: a ~100k-token document (LooGLE articles concatenated) compressed at 0.35 for several
questions, in ms per 100k tokens, against one BM25 query and one tokenisation of the whole text
measured in the same run.

Run: ``python benchmarks/compression_retention.py [--data ../shared/data] [--datasets
loogle,leval_contracts,lara] [--ratios 0.1,0.2,0.35,0.5] [--out retention.json]`` or
``ctxroute bench compress``.
"""
from __future__ import annotations

import argparse
import bisect
import functools
import json
import random
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.types import Chunk, Document  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
RATIOS = (0.1, 0.2, 0.35, 0.5)
Span = tuple[int, int]


sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its scripts load each other
from _siblings import sibling as _sibling  # noqa: E402


@dataclass(frozen=True)
class Gold:
    """One question's gold: evidence spans (char share), sentence spans (kept or not) or numbers."""

    question: str
    spans: tuple[Span, ...] = ()
    numbers: tuple[str, ...] = ()


@dataclass(frozen=True)
class GoldDoc:
    dataset: str
    doc: Document
    items: tuple[Gold, ...]


# --- data --------------------------------------------------------------------------------
def load_gold(data: Path, datasets: Sequence[str], lara_docs: int, limit_docs: int | None) -> list[GoldDoc]:
    qd = _sibling("quality_data")
    out: list[GoldDoc] = []
    if "loogle" in datasets and (data / "LooGLE").is_dir():
        for d in qd.load_loogle(data, limit_docs=limit_docs):
            out.append(GoldDoc("loogle", d.doc, tuple(Gold(i.question, tuple(s for ev in i.evidence for s in ev))
                                                      for i in d.items if i.evidence)))
    if "leval_contracts" in datasets and (data / "L-Eval").is_dir():
        for d in qd.load_leval_contracts(data, limit_docs=limit_docs):
            out.append(GoldDoc("leval_contracts", d.doc, tuple(Gold(i.question, tuple(s for ev in i.evidence for s in ev))
                                                               for i in d.items if i.evidence)))
    if "lara" in datasets and (data / "LaRA").is_dir():
        out += _lara(data, lara_docs)
    if "sec" in datasets and (data / qd.SEC_DIR).is_dir():
        for d in qd.load_sec(data, limit_docs=limit_docs):
            out.append(GoldDoc("sec", d.doc, tuple(Gold(i.question, numbers=i.numbers) for i in d.items if i.numbers)))
    return [g for g in out if g.items]


def _lara(data: Path, per_domain: int) -> list[GoldDoc]:
    """LaRA 32k location questions; gold = the sentence of the gold slice that shares most of the
    answer's content terms (>= half of them), located after chunking (see :func:`lara_sentences`)."""
    from ctxroute.eval.datasets import load_lara

    ds = load_lara(data / "LaRA", length="32k", level="location")
    by_doc: dict[str, list] = {}
    for it in ds.items:
        if it.evidence:
            by_doc.setdefault(it.docs[0], []).append(it)
    out: list[GoldDoc] = []
    taken: dict[str, int] = {}
    for dk in sorted(by_doc):
        domain = dk.split("/")[1]
        if taken.get(domain, 0) >= per_domain:
            continue
        taken[domain] = taken.get(domain, 0) + 1
        src = ds.documents[dk]
        doc = Document(id=f"lara:{domain}:{taken[domain]}", text=src.text, title=src.title, source="LaRA")
        # spans hold the slice for now; lara_sentences() narrows them to the answer sentence
        items = tuple(Gold(it.question + "\x00" + it.answer, ((int(it.evidence[0].start), int(it.evidence[0].end)),))
                      for it in by_doc[dk])
        out.append(GoldDoc("lara_32k_location", doc, items))
    return out


def lara_sentences(g: GoldDoc, sentences: Sequence[Chunk]) -> GoldDoc:
    from ctxroute.router.answer import content_terms

    items = []
    for it in g.items:
        question, answer = it.question.split("\x00", 1)
        terms = content_terms(answer)
        s0, e0 = it.spans[0]
        best, best_share = None, 0.0
        if len(terms) >= 2:
            for s in sentences:
                if s.end <= s0 or s.start >= e0:
                    continue
                share = len(content_terms(s.text_of(g.doc)) & terms) / len(terms)
                if share > best_share:
                    best, best_share = s, share
        if best is not None and best_share >= 0.5:
            items.append(Gold(question, ((best.start, best.end),)))
    return replace(g, items=tuple(items))


# --- measures ----------------------------------------------------------------------------
def char_share(spans: Sequence[Span], kept: Sequence[Span], text: str) -> float:
    """Share of the gold spans' non-space characters inside kept spans (kept sorted, disjoint)."""
    starts = [s for s, _ in kept]
    total = inside = 0
    for s0, e0 in spans:
        for pos in range(s0, e0):
            if text[pos].isspace():
                continue
            total += 1
            i = bisect.bisect_right(starts, pos) - 1
            if i >= 0 and kept[i][0] <= pos < kept[i][1]:
                inside += 1
    return inside / total if total else 0.0


def retention(g: Gold, kept: Sequence[Span], doc: Document) -> float:
    if g.numbers:
        qd = _sibling("quality_data")
        have = qd.numbers_in(" ".join(doc.text[s:e] for s, e in kept))
        return sum(n in have for n in g.numbers) / len(g.numbers)
    return char_share(g.spans, kept, doc.text)


def _spans(sentences: Sequence[Chunk], idx: Sequence[int]) -> list[Span]:
    return sorted((sentences[i].start, sentences[i].end) for i in idx)


def random_keep(sentences: Sequence[Chunk], budget: int, seed: int) -> list[int]:
    from ctxroute.router.estimates import ID_TOKENS_PER_SENTENCE

    order = list(range(len(sentences)))
    random.Random(seed).shuffle(order)
    used, out = 0, []
    for i in order:
        c = max(1, sentences[i].n_tokens) + ID_TOKENS_PER_SENTENCE
        if used + c <= budget:
            out.append(i)
            used += c
    return out


@functools.lru_cache(maxsize=None)
def count_tokens(text: str) -> int:
    """cl100k, the index's tokenizer: both methods are charged for their sentences as the prompt
    holds them (``compress.prompt_tokens``). Memoised: every question and ratio charges the same
    sentences of a document again."""
    from ctxroute.retrievers.tokens import get_counter

    return get_counter().count(text)


def sentence_tokens(sentences: Sequence[Chunk], doc: Document | None = None) -> list[int]:
    """What ``rag_keep`` charges per sentence before its id: the sentence as the prompt holds it
    (with ``doc``; else the index's count). The same for every question on a document."""
    from ctxroute.pipelines.compress import prompt_tokens

    if doc is None:
        return [max(1, s.n_tokens) for s in sentences]
    return prompt_tokens(sentences, [s.text_of(doc) for s in sentences], count_tokens)


def rag_keep(hits, sentences: Sequence[Chunk], budget: int, doc: Document | None = None,  # type: ignore[no-untyped-def]
             toks: Sequence[int] | None = None) -> list[int]:
    """Sentences of the top passages (``hits``: the whole ranking), in rank order while they
    fit (a passage that does not fit is skipped), each charged as ``pack_evidence`` charges it:
    its sentences as the prompt holds them (with ``doc``; else the index's counts), their ids and
    the ``[...]`` lines between stretches. ``toks``: ``sentence_tokens(sentences, doc)``, when the
    caller keeps it across questions."""
    from ctxroute.pipelines.packing import SEPARATOR_TOKENS, stretch_delta
    from ctxroute.router.estimates import ID_TOKENS_PER_SENTENCE

    starts = [s.start for s in sentences]
    if toks is None:
        toks = sentence_tokens(sentences, doc)
    used, out = 0, set()
    for h in hits:
        lo = bisect.bisect_left(starts, h.chunk.start)
        hi = bisect.bisect_left(starts, h.chunk.end)
        new = [i for i in range(lo, hi) if i not in out]
        if not new:
            continue
        c = sum(toks[i] + ID_TOKENS_PER_SENTENCE for i in new)
        c += SEPARATOR_TOKENS * stretch_delta(out, new, len(sentences), edges=False)
        if used + c <= budget:
            out.update(new)
            used += c
    return sorted(out)


@dataclass
class Result:
    dataset: str
    documents: int = 0
    questions: int = 0
    tokens: int = 0
    compressor: dict[float, float] = field(default_factory=dict)
    random: dict[float, float] = field(default_factory=dict)
    rag: dict[float, float] = field(default_factory=dict)
    kept_share: dict[float, float] = field(default_factory=dict)  # kept tokens / document tokens
    # compressor - RAG per ratio: mean paired difference, its 95% interval (bootstrap over documents:
    # a document's questions move together), questions won and lost
    vs_rag: dict[float, dict[str, float]] = field(default_factory=dict)


def paired_interval(diffs_by_doc: Sequence[Sequence[float]], n_boot: int = 2000, seed: int = 0) -> dict[str, float]:
    """Mean of the per-question differences, a percentile 95% interval from resampling whole
    documents, and how many questions went each way."""
    import numpy as np

    docs = [np.asarray(d, dtype=np.float64) for d in diffs_by_doc if len(d)]
    if not docs:
        return {"diff": 0.0, "low": 0.0, "high": 0.0, "wins": 0, "losses": 0}
    flat = np.concatenate(docs)
    sums = np.array([d.sum() for d in docs])
    counts = np.array([len(d) for d in docs])
    rng = np.random.default_rng(seed)
    pick = rng.integers(0, len(docs), size=(n_boot, len(docs)))
    boot = sums[pick].sum(axis=1) / counts[pick].sum(axis=1)
    low, high = np.percentile(boot, [2.5, 97.5])
    return {"diff": float(flat.mean()), "low": float(low), "high": float(high),
            "wins": int((flat > 1e-9).sum()), "losses": int((flat < -1e-9).sum())}


def evaluate(
    gdocs: Sequence[GoldDoc],
    ratios: Sequence[float] = RATIOS,
    *,
    retriever: str = "bm25",
    config: object = None,
    progress: Callable[[int, int], None] | None = None,
    baselines: bool = True,
    configs: Sequence[object] = (),
    embedder: object = None,
    embedder_name: str = "hashing",
    cache_dir: Path | None = None,
) -> list[Result]:
    """Retention per data set and ratio; ``configs`` (tuning) adds one compressor result per
    extra config, as data set ``"<name>#<i>"``, on the same collections. ``cache_dir`` keeps
    the collections and rankings (``compression_cache.prepare``) for the next run."""
    from ctxroute.retrievers.embedders import HashingEmbedder

    embedder = embedder if embedder is not None else HashingEmbedder(dim=256)
    extra = [getattr(c, "hits_cover", 1.5) for c in (config, *configs) if c is not None]
    prepared = _sibling("compression_cache").prepare(
        gdocs, cache_dir, embedder=embedder, embedder_name=embedder_name, retriever=retriever, ratios=ratios,
        covers=sorted({1.5, *extra}), lara_sentences=lara_sentences, progress=progress)
    return evaluate_prepared(prepared, ratios, retriever=retriever, config=config, baselines=baselines, configs=configs)


def select_prepared(p, it, cfg):  # type: ignore[no-untyped-def]
    """``select_sentences`` for question ``it`` of the prepared document ``p``
    (``compression_cache``) with ``cfg`` (its ratio set): the hits ``compress()`` would fetch
    (``search_k``), sentences charged as the prompt holds them (``count_tokens``)."""
    from ctxroute.pipelines.compress import DocSentences, select_sentences

    cache = _sibling("compression_cache")
    k = cache.search_ks(p.full_tokens, p.n_passages, [cfg.ratio], [cfg.hits_cover], cfg)[0]
    return select_sentences(it.question, [DocSentences(p.doc, p.sentences)], cache.hits_for(it, k), cfg,
                            full_tokens=p.full_tokens, count_tokens=count_tokens)


def evaluate_prepared(
    prepared: Sequence[object],
    ratios: Sequence[float] = RATIOS,
    *,
    retriever: str = "bm25",
    config: object = None,
    baselines: bool = True,
    configs: Sequence[object] = (),
) -> list[Result]:
    """Retention on prepared documents (``compression_cache.Prepared``): ``select_sentences``
    with the hits ``compress()`` would fetch (``search_k``), RAG's pick from the whole ranking."""
    from ctxroute.pipelines.compress import CompressConfig

    base = replace(config if config is not None else CompressConfig(), retriever=retriever)
    results: dict[str, Result] = {}
    sums: dict[str, dict[str, dict[float, float]]] = {}
    diffs: dict[str, dict[float, list[list[float]]]] = {}  # data set -> ratio -> per document, compressor - rag

    def run(cfg, p, it, r):  # type: ignore[no-untyped-def]
        return select_prepared(p, it, replace(cfg, ratio=r, retriever=retriever))

    for p in prepared:
        doc, sentences = p.doc, p.sentences  # type: ignore[attr-defined]
        res = results.setdefault(p.dataset, Result(p.dataset))  # type: ignore[attr-defined]
        acc = sums.setdefault(p.dataset, {k: {r: 0.0 for r in ratios} for k in ("c", "r", "g", "s")})  # type: ignore[attr-defined]
        res.documents += 1
        res.tokens += p.full_tokens  # type: ignore[attr-defined]
        doc_diffs = {r: [] for r in ratios}  # type: ignore[var-annotated]
        toks = sentence_tokens(sentences, doc) if baselines else None
        for r in ratios:
            diffs.setdefault(p.dataset, {}).setdefault(r, []).append(doc_diffs[r])  # type: ignore[attr-defined]
        for it in p.items:  # type: ignore[attr-defined]
            res.questions += 1
            for ci, extra in enumerate(configs):
                key = f"{p.dataset}#{ci}"  # type: ignore[attr-defined]
                xres = results.setdefault(key, Result(key))
                xacc = sums.setdefault(key, {k: {r: 0.0 for r in ratios} for k in ("c", "r", "g", "s")})
                xres.questions += 1
                for r in ratios:
                    sel = run(extra, p, it, r)
                    xacc["c"][r] += retention(it, _spans(sentences, sel.kept.get(doc.id, ())), doc)
                    xacc["s"][r] += sel.kept_tokens / max(1, sel.full_tokens)
            for r in ratios:
                sel = run(base, p, it, r)
                comp = retention(it, _spans(sentences, sel.kept.get(doc.id, ())), doc)
                acc["c"][r] += comp
                acc["s"][r] += sel.kept_tokens / max(1, sel.full_tokens)
                if not baselines:
                    continue
                b = sel.budget
                acc["r"][r] += sum(retention(it, _spans(sentences, random_keep(sentences, b, seed)), doc)
                                   for seed in range(3)) / 3
                rag = retention(it, _spans(sentences, rag_keep(it.ranking, sentences, b, doc, toks)), doc)
                acc["g"][r] += rag
                doc_diffs[r].append(comp - rag)
    for ds, res in results.items():
        q = max(1, res.questions)
        res.compressor = {r: acc_v / q for r, acc_v in sums[ds]["c"].items()}
        res.random = {r: v / q for r, v in sums[ds]["r"].items()}
        res.rag = {r: v / q for r, v in sums[ds]["g"].items()}
        res.kept_share = {r: v / q for r, v in sums[ds]["s"].items()}
        if baselines and ds in diffs:
            res.vs_rag = {r: paired_interval(diffs[ds][r]) for r in ratios}
    return list(results.values())


def speed(data: Path, target_tokens: int = 100_000, questions: Sequence[str] = (), repeats: int = 5) -> dict:
    """Compressor speed (``benchmarks/compression_speed.py``)."""
    return _sibling("compression_speed").speed(data, target_tokens, questions, repeats)


def make_embedder(name: str) -> object:
    from ctxroute.retrievers.embedders import HashingEmbedder, SentenceTransformerEmbedder

    if name == "hashing":
        return HashingEmbedder(dim=256)
    if name == "minilm":
        return SentenceTransformerEmbedder()
    raise SystemExit(f"unknown --embedder {name!r}; use hashing or minilm")


def ablation_config(cfg: object) -> object:
    """The compressor as it was before the seed, the lead prior and the quote boost (and the
    rank order for weak units, added a round later)."""
    return replace(cfg, seed_share=0.0, w_lead=0.0, quote_boost=1.0, weak_score=None)  # type: ignore[type-var]


def before_config(cfg: object) -> object:
    """The compressor before this round: every unit by score (no rank order for weak units),
    half the budget seeded."""
    return replace(cfg, weak_score=None, seed_share=0.5)  # type: ignore[type-var]


def markdown(results: Sequence[Result], ratios: Sequence[float], extra_labels: Sequence[str] = ()) -> str:
    head = "| data set | questions | method | " + " | ".join(f"ratio {r:g}" for r in ratios) + " |"
    lines = [head, "|" + "---|" * (3 + len(ratios))]
    main = [r for r in results if "#" not in r.dataset]
    for res in main:
        extra = [(extra_labels[int(x.dataset.split("#")[1])] if extra_labels else x.dataset, x.compressor)
                 for x in results if x.dataset.startswith(res.dataset + "#")]
        for label, vals in (("compressor", res.compressor), *extra, ("random sentences", res.random),
                            ("rag top passages", res.rag)):
            lines.append(f"| {res.dataset} | {res.questions} | {label} | " + " | ".join(f"{vals[r]:.3f}" for r in ratios) + " |")
        if res.vs_rag:
            v = res.vs_rag
            lines.append(f"| {res.dataset} | {res.questions} | compressor - rag [95% CI, by document] (questions won/lost) | "
                         + " | ".join(f"{v[r]['diff']:+.3f} [{v[r]['low']:+.3f}, {v[r]['high']:+.3f}] ({v[r]['wins']}/{v[r]['losses']})"
                                      for r in ratios) + " |")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--datasets", default="loogle,leval_contracts,lara")
    ap.add_argument("--ratios", default=",".join(f"{r:g}" for r in RATIOS))
    ap.add_argument("--retriever", default="bm25")
    ap.add_argument("--embedder", default="hashing", help="hashing (cheap) or minilm (the product's default)")
    ap.add_argument("--ablation", action="store_true",
                    help="also the compressor without weak-unit rank order, and without seed, lead prior, quote boost")
    ap.add_argument("--lara-docs", type=int, default=3, help="LaRA documents per domain")
    ap.add_argument("--limit-docs", type=int, default=None)
    ap.add_argument("--w-lexical", type=float, default=None)
    ap.add_argument("--w-passage", type=float, default=None)
    ap.add_argument("--window", type=int, default=None)
    ap.add_argument("--no-speed", action="store_true")
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--cache", type=Path, default=None,
                    help="keep collections and rankings here (benchmarks/compression_cache.py): a second run does not re-embed")
    a = ap.parse_args(argv)
    from ctxroute.pipelines.compress import CompressConfig

    cfg = CompressConfig(retriever=a.retriever)
    for k, v in (("w_lexical", a.w_lexical), ("w_passage", a.w_passage), ("window", a.window)):
        if v is not None:
            cfg = replace(cfg, **{k: v})
    ratios = [float(x) for x in a.ratios.split(",") if x.strip()]
    gdocs = load_gold(a.data, [d.strip() for d in a.datasets.split(",")], a.lara_docs, a.limit_docs)
    if not gdocs:
        raise SystemExit(f"no data set found under {a.data}; see ../shared/data/README.md")
    t0 = time.perf_counter()
    extra = [before_config(cfg), ablation_config(cfg)] if a.ablation else []
    results = evaluate(gdocs, ratios, retriever=a.retriever, config=cfg, configs=extra, embedder=make_embedder(a.embedder),
                       embedder_name=a.embedder, cache_dir=a.cache,
                       progress=lambda i, n: print(f"\r{i}/{n} documents", end="", file=sys.stderr))
    print(file=sys.stderr)
    print(markdown(results, ratios, ["compressor before this round (seed 0.5, no weak-unit rank order)", "compressor without seed/lead/quote"] if extra else ()))
    print(f"\nconfig: {cfg}\nretention run: {time.perf_counter() - t0:.1f} s")
    sp = None if a.no_speed else speed(a.data)
    if sp:
        print("speed:", json.dumps(sp))
    if a.out:
        a.out.write_text(json.dumps({"config": asdict(cfg), "embedder": a.embedder, "retriever": a.retriever, "results": [asdict(r) for r in results], "speed": sp}, indent=1))


if __name__ == "__main__":
    main()
