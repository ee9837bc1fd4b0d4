"""Routing decisions on LaRA questions: one question per level (location, reasoning, comp,
hallu) for a 32k and a 128k document, under three model profiles, printed with reasons.

Each document goes into a temporary collection (hybrid probe: BM25 + dense + graph, fused).
``--embedder minilm`` (default) uses the real all-MiniLM-L6-v2 for the dense half;
``--embedder hashing`` uses the deterministic hashing embedder (much faster, weaker probe).
Only the router runs: no LLM is called.

Run: ``python benchmarks/route_lara.py [--embedder minilm|hashing] [--data ../shared/data] [--json out.json]``
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script from anywhere
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ctxroute.cli.route import decision_to_dict  # noqa: E402
from ctxroute.profiles import get_profile  # noqa: E402
from ctxroute.retrievers.collection import CollectionStore  # noqa: E402
from ctxroute.retrievers.documents import document_from_text  # noqa: E402
from ctxroute.retrievers.embedders import make_embedder  # noqa: E402
from ctxroute.retrievers.tokens import get_counter  # noqa: E402
from ctxroute.router import QuestionTyper, build_features, collection_signals, make_router  # noqa: E402

DEFAULT_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
DOCS = (("32k", "paper", "32k_paper_0.md"), ("128k", "financial", "2U, Inc..txt"))
LEVELS = ("location", "reasoning", "comp", "hallu")
PROFILES = ("gpt-4o", "qwen2.5-7b-instruct", "smollm2-135m-instruct")
POLICIES = ("rules", "self-route")


def first_question(qdir: Path, length: str, kind: str, level: str, file: str) -> dict:
    for line in (qdir / f"{length}_{kind}_{level}.jsonl").read_text(encoding="utf-8").splitlines():
        row = json.loads(line)
        if row["file"] == file:
            return row
    raise SystemExit(f"no {level} question for {file}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--embedder", default="minilm", help="minilm | hashing")
    ap.add_argument("--json", type=Path, default=None, help="write every decision here")
    args = ap.parse_args()
    lara = args.data / "LaRA" / "datasets"
    if not lara.is_dir():
        raise SystemExit(f"LaRA not found under {args.data} (see ../shared/data/README.md)")
    embedder = make_embedder(args.embedder)
    counter = get_counter("cl100k_base")
    routers = {p: make_router(p) for p in POLICIES}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store = CollectionStore(Path(tmp))
        typer_obj = QuestionTyper(embedder)
        for length, kind, file in DOCS:
            text = (lara / length / kind / file).read_text(encoding="utf-8")
            t0 = time.perf_counter()
            col = store.create(f"lara-{length}", embedder=embedder)
            col.add_documents([document_from_text(text, source=file, title=file)])
            s = col.stats()
            print(f"\n=== {length} {kind} {file!r}: {s.total_tokens:,} tokens, {s.n_passages} passages "
                  f"(ingested in {time.perf_counter() - t0:.1f} s with {embedder.name})")
            for level in LEVELS:
                q = first_question(lara / "query", length, kind, level, file)
                stats, _, probe = collection_signals(col, q["question"], k=10)
                qp = typer_obj.classify(q["question"])
                print(f"\n[{level}] {q['question']}")
                print(f"  type {qp.qtype.value} (cues: {', '.join(qp.cues) or '-'}); probe {probe.source}: "
                      f"top {probe.top_score:.3f}, margin {probe.margin:.3f}, entropy {probe.entropy:.2f}, "
                      f"{probe.n_sections_in_top} sections, spread {probe.spread:.2f}")
                for pname in PROFILES:
                    profile = get_profile(pname)
                    feats = build_features(q["question"], stats, profile, question_profile=qp, probe=probe,
                                           count_tokens=counter.count)
                    for policy, router in routers.items():
                        d = router.route(feats, profile)
                        fb = ",".join(r.value for r in d.fallbacks) or "-"
                        print(f"  {pname:<22} {policy:<10} -> {d.route.value:<6} then {fb:<16} | {d.reasons[0]}")
                        rows.append({"length": length, "file": file, "level": level, "question": q["question"],
                                     "profile": pname, **decision_to_dict(d)})
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1) + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
