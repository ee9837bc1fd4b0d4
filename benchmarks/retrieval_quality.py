"""Recall@k of gold evidence for bm25, dense, graph and hybrid retrieval on real QA sets.

Data (read-only, never copied): ``../shared/data`` (see its README.md); loaders in
``benchmarks/quality_data.py``: LooGLE (evidence sentences), L-Eval contracts (verbatim
clauses), LaRA 32k location questions (gold slice) and the SEC 10-Q filings (the answer's
numbers found in the retrieved passages).

One index per document (questions ask about their own document). A question's recall@k is
the share of its gold units (located evidence items, or the answer's numbers) that some top-k
passage covers; the table averages it over questions with at least one gold unit.
``--dump FILE`` writes every retriever's top-50 list per question (chunk id, score, covered
units) for offline fusion tuning (``benchmarks/fusion_tuning.py``). ``--cache DIR`` keeps the
built collections (embedding the PDFs is slow on a CPU); delete it after changing the code.

Run: ``python benchmarks/retrieval_quality.py [--data ../shared/data] [--k 1,5,10,20]
[--embedder minilm|hashing] [--datasets loogle,leval_contracts,lara,sec] [--limit-docs N]
[--out quality.json]`` or ``ctxroute bench quality``.
"""
from __future__ import annotations

import argparse
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.types import Document, ScoredChunk  # noqa: E402


sys.path.insert(0, str(Path(__file__).resolve().parent))  # benchmarks/: its scripts load each other
from _siblings import sibling as _sibling  # noqa: E402


_data = _sibling("quality_data")
EvidenceLocator = _data.EvidenceLocator
QADoc = _data.QADoc
QAItem = _data.QAItem
numbers_in = _data.numbers_in
Span = tuple[int, int]
RETRIEVERS = ("bm25", "dense", "graph", "bm25+dense", "hybrid")
DATASETS = ("loogle", "leval_contracts", "lara", "sec")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
DUMP_DEPTH = 50


# --- retrieval ----------------------------------------------------------------------------
def build_retrievers(doc: Document, embedder: object, root: Path) -> dict[str, object]:
    """Ingest one document into a collection under ``root`` (reused when it is already
    there); its retrievers by name, plus ``bm25+dense`` (the hybrid without the graph)."""
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
    from ctxroute.retrievers.hybrid import HybridRetriever

    store = CollectionStore(root)
    name = re.sub(r"[^A-Za-z0-9_.-]", "_", doc.id)
    if store.exists(name):
        coll = store.open(name, embedder)
    else:
        coll = store.create(name, CollectionConfig.for_embedder(embedder), embedder)
        coll.add_documents([doc])
    config = coll.config
    out: dict[str, object] = {n: coll.retriever(n) for n in ("bm25", "dense", "graph", "hybrid")}
    weights = {k: v for k, v in config.fusion_weights.items() if k in ("bm25", "dense")}
    out["bm25+dense"] = HybridRetriever({"bm25": out["bm25"], "dense": out["dense"]}, weights=weights,
                                        rrf_k=config.fusion_rrf_k)
    out["_passages"] = len(coll.passages())
    out["_collection"] = coll
    out["_doc"] = coll.documents()[0]
    return out


def covered(item: QAItem, doc: Document, hit: ScoredChunk) -> set[int]:
    """Indexes of the item's gold units that this hit covers."""
    c = hit.chunk
    if item.numbers:
        have = numbers_in(doc.text[c.start : c.end])
        return {i for i, n in enumerate(item.numbers) if n in have}
    return {i for i, spans in enumerate(item.evidence) if any(c.start < e and s < c.end for s, e in spans)}


def recall_at(cover_lists: Sequence[set[int]], n_units: int, k: int) -> float:
    got: set[int] = set()
    for c in cover_lists[:k]:
        got |= c
    return len(got) / n_units


@dataclass
class DatasetResult:
    dataset: str
    documents: int = 0
    questions: int = 0
    scored_questions: int = 0  # with at least one gold unit
    evidence: int = 0
    unlocated: int = 0
    passages: int = 0
    recall: dict[str, dict[int, float]] = field(default_factory=dict)  # retriever -> k -> mean
    # SEC: share of table questions with every gold number in the top 10
    all_numbers_at_10: dict[str, float] = field(default_factory=dict)
    # SEC, with --reader: the extractive reader's answers holding a gold number / questions
    reader_correct: int = 0
    reader_questions: int = 0
    seconds: float = 0.0


def evaluate(
    qadocs: Sequence[QADoc],
    embedder: object,
    ks: Sequence[int] = (1, 5, 10),
    *,
    retrievers: Sequence[str] = RETRIEVERS,
    progress: Callable[[int, int], None] | None = None,
    cache: Path | None = None,
    dump: list[dict] | None = None,
    reader: bool = False,
) -> list[DatasetResult]:
    """Recall@k per data set and retriever. ``progress(done_questions, total_questions)``;
    ``dump`` (a list) receives each question's ranked lists for offline fusion tuning;
    ``reader`` also runs the extractive reader on questions with gold numbers (SEC)."""
    from ctxroute.pipelines.extractive import ExtractiveReader

    total = sum(len(d.items) for d in qadocs)
    done = 0
    sums: dict[str, dict[str, dict[int, float]]] = {}
    full10: dict[str, dict[str, list[int]]] = {}
    results: dict[str, DatasetResult] = {}
    depth = max(max(ks), DUMP_DEPTH if dump is not None else 0)
    with tempfile.TemporaryDirectory(prefix="ctxroute-quality-") as tmp:
        root = cache if cache is not None else Path(tmp)
        for qd in qadocs:
            t0 = time.perf_counter()
            res = results.setdefault(qd.dataset, DatasetResult(qd.dataset))
            acc = sums.setdefault(qd.dataset, {r: {k: 0.0 for k in ks} for r in retrievers})
            f10 = full10.setdefault(qd.dataset, {r: [0, 0] for r in retrievers})
            built = build_retrievers(qd.doc, embedder, root)
            doc: Document = built["_doc"]  # type: ignore[assignment]
            res.documents += 1
            res.passages += int(built["_passages"])  # type: ignore[call-overload]
            res.evidence += qd.n_evidence
            res.unlocated += qd.n_unlocated
            for qi, item in enumerate(qd.items):
                res.questions += 1
                if item.n_units:
                    res.scored_questions += 1
                    record: dict = {"dataset": qd.dataset, "doc": qd.doc.id, "q": qi, "units": item.n_units,
                                    "kind": item.kind, "lists": {}}
                    for name in retrievers:
                        hits = built[name].retrieve(item.question, depth)  # type: ignore[attr-defined]
                        cov = [covered(item, doc, h) for h in hits]
                        for k in ks:
                            acc[name][k] += recall_at(cov, item.n_units, k)
                        if item.numbers and item.kind == "Table":
                            f10[name][0] += recall_at(cov, item.n_units, 10) == 1.0
                            f10[name][1] += 1
                        if name in ("bm25", "dense", "graph"):
                            record["lists"][name] = [[h.chunk.id, round(h.score, 6), sorted(c)] for h, c in zip(hits, cov)]
                    if dump is not None:
                        dump.append(record)
                    if reader and item.numbers:
                        answer = ExtractiveReader().run(item.question, built["_collection"])
                        res.reader_questions += 1
                        res.reader_correct += bool(numbers_in(answer.text) & set(item.numbers))
                done += 1
                if progress is not None:
                    progress(done, total)
            res.seconds += time.perf_counter() - t0
    for name, res in results.items():
        n = max(res.scored_questions, 1)
        res.recall = {r: {k: sums[name][r][k] / n for k in ks} for r in retrievers}
        res.all_numbers_at_10 = {r: v[0] / v[1] for r, v in full10[name].items() if v[1]}
    return list(results.values())


def make_embedder(kind: str, *, bf16: bool = False, long_text: str = "windows") -> object:
    from ctxroute.retrievers.embedders import HashingEmbedder, SentenceTransformerEmbedder

    if kind == "hashing":
        return HashingEmbedder(dim=256)
    if kind == "minilm":
        return SentenceTransformerEmbedder(bf16=bf16, long_text=long_text).load()
    raise SystemExit(f"unknown embedder {kind!r}; use minilm or hashing")


def markdown_table(results: Sequence[DatasetResult], ks: Sequence[int]) -> str:
    retrievers = list(results[0].recall) if results else []
    head = "| data set | retriever | " + " | ".join(f"recall@{k}" for k in ks) + " |"
    lines = [head, "|" + "---|" * (2 + len(ks))]
    for res in results:
        for r in retrievers:
            cells = " | ".join(f"{res.recall[r][k]:.3f}" for k in ks)
            lines.append(f"| {res.dataset} | {r} | {cells} |")
    lines.append("")
    for res in results:
        lines.append(
            f"- {res.dataset}: {res.documents} documents, {res.passages} passages, {res.questions} questions "
            f"({res.scored_questions} with gold units); {res.unlocated} of {res.evidence} evidence "
            f"items could not be located; {res.seconds:.1f} s"
        )
        if res.all_numbers_at_10:
            shares = ", ".join(f"{r} {v:.2f}" for r, v in res.all_numbers_at_10.items())
            lines.append(f"  - table questions with every answer number in the top 10: {shares}")
        if res.reader_questions:
            lines.append(f"  - extractive reader: answer holds a gold number for {res.reader_correct} of "
                         f"{res.reader_questions} questions ({res.reader_correct / res.reader_questions:.2f})")
    return "\n".join(lines)


def load(data: Path, datasets: Sequence[str], limit_docs: int | None = None, lara_docs: int = 4,
         sec_files: str = "*") -> list[QADoc]:
    qadocs: list[QADoc] = []
    if "loogle" in datasets and (data / "LooGLE").is_dir():
        qadocs += _data.load_loogle(data, limit_docs=limit_docs)
    if "leval_contracts" in datasets and (data / "L-Eval").is_dir():
        qadocs += _data.load_leval_contracts(data, limit_docs=limit_docs)
    if "lara" in datasets and (data / "LaRA").is_dir():
        qadocs += _data.load_lara(data, limit_docs=min(lara_docs, limit_docs or lara_docs))
    if "sec" in datasets and (data / _data.SEC_DIR).is_dir():
        qadocs += _data.load_sec(data, limit_docs=limit_docs, only=sec_files)
    if not qadocs:
        raise FileNotFoundError(f"none of {list(datasets)} found under {data}; see ../shared/data/README.md")
    return qadocs


def run(
    data: Path,
    ks: Sequence[int],
    embedder_kind: str,
    *,
    limit_docs: int | None = None,
    datasets: Sequence[str] = ("loogle", "leval_contracts"),
    progress: Callable[[int, int], None] | None = None,
    bf16: bool = False,
    cache: Path | None = None,
    dump: list[dict] | None = None,
    lara_docs: int = 4,
    reader: bool = False,
    sec_files: str = "*",
    long_text: str = "windows",
) -> list[DatasetResult]:
    """``lara_docs``: LaRA documents per domain (book, financial, paper); embedding all is slow.
    ``long_text``: the embedder's policy for passages over the model's 256 wordpieces."""
    qadocs = load(data, datasets, limit_docs, lara_docs, sec_files)
    embedder = make_embedder(embedder_kind, bf16=bf16, long_text=long_text)  # hashing ignores the policy
    return evaluate(qadocs, embedder, ks, progress=progress, cache=cache, dump=dump,
                    reader=reader)


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--k must be comma-separated integers such as 1,5,10, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise SystemExit(f"--k values must be >= 1, got {text!r}")
    return ks


def parse_datasets(text: str) -> list[str]:
    names = [d.strip() for d in text.split(",") if d.strip()]
    unknown = sorted(set(names) - set(DATASETS))
    if unknown or not names:
        raise SystemExit(f"unknown data sets {unknown}; use some of {', '.join(DATASETS)}")
    return names


def main(argv: Sequence[str] | None = None) -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--k", default="1,5,10,20")
    ap.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"])
    ap.add_argument("--bf16", action="store_true")
    ap.add_argument("--limit-docs", type=int, default=None)
    ap.add_argument("--datasets", default="loogle,leval_contracts")
    ap.add_argument("--lara-docs", type=int, default=4, help="LaRA documents per domain")
    ap.add_argument("--sec-files", default="*", help='glob over the 10-Q file names, e.g. "2023 Q3*"')
    ap.add_argument("--cache", type=Path, default=None)
    ap.add_argument("--dump", type=Path, default=None)
    ap.add_argument("--reader", action="store_true", help="also score the extractive reader on the SEC set")
    ap.add_argument("--long-text", default="windows", choices=["windows", "truncate"],
                    help="how MiniLM embeds passages over 256 wordpieces")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    ks = parse_ks(args.k)
    from rich.progress import Progress

    dump: list[dict] | None = [] if args.dump else None
    with Progress(transient=True) as bar:
        task = bar.add_task("questions", total=None)
        results = run(
            args.data, ks, args.embedder, limit_docs=args.limit_docs, datasets=parse_datasets(args.datasets),
            progress=lambda done, total: bar.update(task, completed=done, total=total),
            bf16=args.bf16, cache=args.cache, dump=dump, lara_docs=args.lara_docs,
            reader=args.reader, sec_files=args.sec_files, long_text=args.long_text,
        )
    print(markdown_table(results, ks))
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))
    if args.dump and dump is not None:
        args.dump.write_text("\n".join(json.dumps(r) for r in dump) + "\n")


if __name__ == "__main__":
    main()
