"""Recall@k of gold evidence for bm25, dense, graph and hybrid retrieval on real QA sets.

Data (read-only, never copied): ``../shared/data`` (see its README.md).
- LooGLE sample (shortdep_qa + longdep_qa): each question's ``S`` evidence sentence(s),
  located in the article by normalised matching.
- L-Eval legal contracts: each gold answer is a verbatim clause of its contract.

One index per document (questions ask about their own document). A question's recall@k is
the share of its located evidence items that some top-k passage overlaps (character spans);
the table averages it over questions with at least one located item.

Run: ``python benchmarks/retrieval_quality.py [--data ../shared/data] [--k 1,5,10]
[--embedder minilm|hashing] [--limit-docs N] [--out quality.json]`` or ``ctxroute bench quality``.
"""
from __future__ import annotations

import argparse
import ast
import json
import re
import sys
import tempfile
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.types import Document, ScoredChunk

Span = tuple[int, int]
RETRIEVERS = ("bm25", "dense", "graph", "bm25+dense", "hybrid", "hybrid-tuned")
DEFAULT_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"

# --- locating evidence ------------------------------------------------------------------
_CITATION = re.compile(r"\[\s*(?:\d+|[a-z]{1,3}|citation needed|note \d+)\s*\]", re.IGNORECASE)
_LIST_NUMBER = re.compile(r"^\s*\d{1,2}\.(?=\D)")
_PIECE_BREAK = re.compile(r"\.{3,}|…|\n+|(?<=[.!?;:])\s+")


def _normalise(text: str) -> tuple[str, list[int]]:
    """ASCII letters and digits only, lowercased, citation markers dropped; with the
    original offset of every kept character (so a match maps back to a span)."""
    masked = bytearray(len(text))
    for m in _CITATION.finditer(text):
        masked[m.start() : m.end()] = b"\x01" * (m.end() - m.start())
    chars: list[str] = []
    offsets: list[int] = []
    for i, ch in enumerate(text):
        if not masked[i] and ch.isascii() and ch.isalnum():
            chars.append(ch.lower())
            offsets.append(i)
    return "".join(chars), offsets


class EvidenceLocator:
    """Finds evidence strings in one document despite lost accents, dropped citation
    markers, re-wrapped lines and '......' elisions."""

    def __init__(self, text: str, min_piece: int = 20) -> None:
        self.norm, self.offsets = _normalise(text)
        self.min_piece = min_piece

    def _index(self, piece: str, after: int) -> int:
        i = self.norm.find(piece, after)
        return self.norm.find(piece) if i < 0 and after else i

    def _find(self, piece: str, after: int) -> tuple[int, Span] | None:
        i = self._index(piece, after)
        if i < 0:
            return None
        return i + len(piece), (self.offsets[i], self.offsets[i + len(piece) - 1] + 1)

    def _find_anchored(self, piece: str, after: int, n: int = 16) -> tuple[int, Span] | None:
        """A piece with small inner differences: ``n``-character anchors taken every ``n``
        characters; the largest group that agrees on where the piece starts, if it holds
        at least 40% of the anchors, gives the span."""
        if len(piece) < 2 * n:
            return None
        found: list[tuple[int, int]] = []  # (estimated piece start, anchor position)
        anchors = range(0, len(piece) - n + 1, n)
        for a in anchors:
            i = self._index(piece[a : a + n], after)
            if i >= 0:
                found.append((i - a, i))
        if not found:
            return None
        slack = max(n, len(piece) // 4)
        best = max(
            ([f for f in found if abs(f[0] - est) <= slack] for est, _ in found),
            key=len,
        )
        if len(best) < max(2, 0.4 * len(anchors)):
            return None
        lo = min(i for _, i in best)
        hi = max(i for _, i in best) + n
        return hi, (self.offsets[lo], self.offsets[hi - 1] + 1)

    def locate(self, evidence: str) -> list[Span]:
        """Spans of ``evidence`` in the text; ``[]`` when less than half of it is found."""
        evidence = _LIST_NUMBER.sub("", evidence)
        whole, _ = _normalise(evidence)
        if not whole:
            return []
        exact = self._find(whole, 0)
        if exact is not None:
            return [exact[1]]
        spans: list[Span] = []
        found = 0
        total = 0
        after = 0
        for raw in _PIECE_BREAK.split(evidence):
            piece, _ = _normalise(_LIST_NUMBER.sub("", raw))
            if len(piece) < self.min_piece:
                continue
            total += len(piece)
            hit = self._find(piece, after) or self._find_anchored(piece, after)
            if hit is not None:
                after, span = hit
                spans.append(span)
                found += len(piece)
        if total == 0 or found * 2 < total:
            return []
        return sorted(spans)


# --- data sets ----------------------------------------------------------------------------
@dataclass(frozen=True)
class QAItem:
    question: str
    evidence: tuple[tuple[Span, ...], ...]  # per located evidence item, its spans
    n_unlocated: int = 0


@dataclass(frozen=True)
class QADoc:
    dataset: str
    doc: Document
    items: tuple[QAItem, ...]

    @property
    def n_evidence(self) -> int:
        return sum(len(i.evidence) + i.n_unlocated for i in self.items)

    @property
    def n_unlocated(self) -> int:
        return sum(i.n_unlocated for i in self.items)


def _item(locator: EvidenceLocator, question: str, evidence: Iterable[str]) -> QAItem:
    located: list[tuple[Span, ...]] = []
    missing = 0
    for ev in evidence:
        spans = locator.locate(ev)
        if spans:
            located.append(tuple(spans))
        else:
            missing += 1
    return QAItem(question=question.strip(), evidence=tuple(located), n_unlocated=missing)


def load_loogle(data: Path, *, limit_docs: int | None = None) -> list[QADoc]:
    """LooGLE shortdep_qa + longdep_qa, one QADoc per article (files sharing an article merge)."""
    folder = data / "LooGLE" / "LooGLE-testdata"
    by_title: dict[str, tuple[str, list[tuple[str, list[str]]]]] = {}
    for name in ("shortdep_qa.jsonl", "longdep_qa.jsonl"):
        for line in (folder / name).read_text(encoding="utf-8").splitlines():
            if not line.strip():
                continue
            row = json.loads(line)
            text, pairs = by_title.setdefault(row["title"], (row["input"], []))
            for pair in ast.literal_eval(row["qa_pairs"]):
                ev = pair.get("S", [])
                pairs.append((pair["Q"], [ev] if isinstance(ev, str) else list(ev)))
    out: list[QADoc] = []
    for title, (text, pairs) in list(by_title.items())[:limit_docs]:
        doc = Document(id=f"loogle:{len(out)}", text=text, title=title, source="LooGLE")
        loc = EvidenceLocator(text)
        out.append(QADoc("loogle", doc, tuple(_item(loc, q, ev) for q, ev in pairs)))
    return out


def load_leval_contracts(data: Path, *, limit_docs: int | None = None) -> list[QADoc]:
    """L-Eval legal_contract_qa: questions from ``instructions``, evidence = gold ``outputs``."""
    path = data / "L-Eval" / "LEval-data" / "Open-ended-tasks" / "legal_contract_qa.jsonl"
    out: list[QADoc] = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        if limit_docs is not None and len(out) >= limit_docs:
            break
        row = json.loads(line)
        text = row["input"]
        doc = Document(id=f"leval:{len(out)}", text=text, title=f"contract {len(out)}", source="L-Eval")
        loc = EvidenceLocator(text)
        items = tuple(_item(loc, q, [a]) for q, a in zip(row["instructions"], row["outputs"]))
        out.append(QADoc("leval_contracts", doc, items))
    return out


# --- retrieval ----------------------------------------------------------------------------
def build_retrievers(doc: Document, embedder: object, root: Path) -> dict[str, object]:
    """Ingest one document into a fresh collection under ``root``; its retrievers by name,
    plus ``bm25+dense`` (the hybrid without the graph) and ``hybrid-tuned`` (RRF with
    ``TUNED_RRF_K`` and ``TUNED_WEIGHTS``) for comparison."""
    from ctxroute.retrievers.collection import CollectionConfig, CollectionStore
    from ctxroute.retrievers.hybrid import TUNED_RRF_K, TUNED_WEIGHTS, HybridRetriever

    config = CollectionConfig.for_embedder(embedder)
    coll = CollectionStore(root).create(re.sub(r"[^A-Za-z0-9_.-]", "_", doc.id), config, embedder)
    coll.add_documents([doc])
    out: dict[str, object] = {name: coll.retriever(name) for name in ("bm25", "dense", "graph", "hybrid")}
    weights = {k: v for k, v in config.fusion_weights.items() if k in ("bm25", "dense")}
    out["bm25+dense"] = HybridRetriever({"bm25": out["bm25"], "dense": out["dense"]}, weights=weights)
    out["hybrid-tuned"] = HybridRetriever(
        {"bm25": out["bm25"], "dense": out["dense"], "graph": out["graph"]}, weights=TUNED_WEIGHTS, rrf_k=TUNED_RRF_K
    )
    out["_passages"] = len(coll.passages())
    return out


def _overlaps(hits: Sequence[ScoredChunk], spans: Sequence[Span]) -> bool:
    return any(h.chunk.start < e and s < h.chunk.end for h in hits for s, e in spans)


@dataclass
class DatasetResult:
    dataset: str
    documents: int = 0
    questions: int = 0
    scored_questions: int = 0  # with at least one located evidence item
    evidence: int = 0
    unlocated: int = 0
    passages: int = 0
    recall: dict[str, dict[int, float]] = field(default_factory=dict)  # retriever -> k -> mean
    seconds: float = 0.0


def _score(
    item: QAItem, retrievers: Mapping[str, object], names: Sequence[str], ks: Sequence[int]
) -> dict[str, dict[int, float]]:
    """Per retriever and k: the share of the item's evidence that the top k overlap."""
    out: dict[str, dict[int, float]] = {}
    for name in names:
        hits = retrievers[name].retrieve(item.question, max(ks))  # type: ignore[attr-defined]
        out[name] = {
            k: sum(_overlaps(hits[:k], spans) for spans in item.evidence) / len(item.evidence) for k in ks
        }
    return out


def evaluate(
    qadocs: Sequence[QADoc],
    embedder: object,
    ks: Sequence[int] = (1, 5, 10),
    *,
    retrievers: Sequence[str] = RETRIEVERS,
    progress: Callable[[int, int], None] | None = None,
) -> list[DatasetResult]:
    """Recall@k per data set and retriever. ``progress(done_questions, total_questions)``."""
    total = sum(len(d.items) for d in qadocs)
    done = 0
    sums: dict[str, dict[str, dict[int, float]]] = {}
    results: dict[str, DatasetResult] = {}
    with tempfile.TemporaryDirectory(prefix="ctxroute-quality-") as tmp:
        for qd in qadocs:
            t0 = time.perf_counter()
            res = results.setdefault(qd.dataset, DatasetResult(qd.dataset))
            acc = sums.setdefault(qd.dataset, {r: {k: 0.0 for k in ks} for r in retrievers})
            built = build_retrievers(qd.doc, embedder, Path(tmp))
            res.documents += 1
            res.passages += int(built["_passages"])  # type: ignore[call-overload]
            res.evidence += qd.n_evidence
            res.unlocated += qd.n_unlocated
            for item in qd.items:
                res.questions += 1
                if item.evidence:
                    res.scored_questions += 1
                    for name, per_k in _score(item, built, retrievers, ks).items():
                        for k, v in per_k.items():
                            acc[name][k] += v
                done += 1
                if progress is not None:
                    progress(done, total)
            res.seconds += time.perf_counter() - t0
    for name, res in results.items():
        n = max(res.scored_questions, 1)
        res.recall = {r: {k: sums[name][r][k] / n for k in ks} for r in retrievers}
    return list(results.values())


def make_embedder(kind: str, *, bf16: bool = False) -> object:
    from ctxroute.retrievers.embedders import HashingEmbedder, SentenceTransformerEmbedder

    if kind == "hashing":
        return HashingEmbedder(dim=256)
    if kind == "minilm":
        return SentenceTransformerEmbedder(bf16=bf16).load()
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
            f"({res.scored_questions} with located evidence); {res.unlocated} of {res.evidence} evidence "
            f"items could not be located; {res.seconds:.1f} s"
        )
    return "\n".join(lines)


def run(
    data: Path,
    ks: Sequence[int],
    embedder_kind: str,
    *,
    limit_docs: int | None = None,
    datasets: Sequence[str] = ("loogle", "leval_contracts"),
    progress: Callable[[int, int], None] | None = None,
) -> list[DatasetResult]:
    qadocs: list[QADoc] = []
    if "loogle" in datasets and (data / "LooGLE").is_dir():
        qadocs += load_loogle(data, limit_docs=limit_docs)
    if "leval_contracts" in datasets and (data / "L-Eval").is_dir():
        qadocs += load_leval_contracts(data, limit_docs=limit_docs)
    if not qadocs:
        raise FileNotFoundError(f"no LooGLE/ or L-Eval/ data under {data}; see ../shared/data/README.md")
    return evaluate(qadocs, make_embedder(embedder_kind), ks, progress=progress)


def parse_ks(text: str) -> list[int]:
    try:
        ks = sorted({int(x) for x in text.split(",") if x.strip()})
    except ValueError:
        raise SystemExit(f"--k must be comma-separated integers such as 1,5,10, got {text!r}") from None
    if not ks or ks[0] < 1:
        raise SystemExit(f"--k values must be >= 1, got {text!r}")
    return ks


def main(argv: Sequence[str] | None = None) -> None:
    import os

    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--k", default="1,5,10")
    ap.add_argument("--embedder", default="minilm", choices=["minilm", "hashing"])
    ap.add_argument("--limit-docs", type=int, default=None)
    ap.add_argument("--datasets", default="loogle,leval_contracts")
    ap.add_argument("--out", type=Path, default=None)
    args = ap.parse_args(argv)
    ks = parse_ks(args.k)
    from rich.progress import Progress

    with Progress(transient=True) as bar:
        task = bar.add_task("questions", total=None)
        results = run(
            args.data, ks, args.embedder, limit_docs=args.limit_docs,
            datasets=[d.strip() for d in args.datasets.split(",")],
            progress=lambda done, total: bar.update(task, completed=done, total=total),
        )
    print(markdown_table(results, ks))
    if args.out:
        args.out.write_text(json.dumps([asdict(r) for r in results], indent=2))


if __name__ == "__main__":
    main()
