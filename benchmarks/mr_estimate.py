"""The router's map-reduce estimate against the calls the strategy makes.

Runs ``MapReduce`` with the scripted LLM (map workers reply with notes of realistic size: two
facts citing sentences of their part, a rationale, a partial answer) over synthetic reports and,
when ``../shared/data/docugami-sec-10q`` is there, over SEC 10-Q filings extracted from PDF, for
several model profiles; prints calls and prompt tokens, real and estimated, and the error.

    .venv/bin/python benchmarks/mr_estimate.py [--sec-docs 3] [--profiles mistral-nemo,generic]

No LLM is called, so the numbers do not depend on the machine.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import re
from pathlib import Path
from typing import Any

from ctxroute.pipelines.llm.base import LLMRequest
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.pipelines.map_reduce import MapReduce
from ctxroute.profiles import get_profile
from ctxroute.retrievers.chunking import chunk_document
from ctxroute.retrievers.documents import document_from_text, load_path
from ctxroute.router import CollectionStats, QuestionTyper, build_features, estimate_routes
from ctxroute.synthetic import generate_corpus
from ctxroute.types import ModelProfile, Route

SEC_DIR = Path(__file__).resolve().parents[2] / "shared" / "data" / "docugami-sec-10q" / "data" / "v1" / "docs"
QUESTION = "Summarize how net sales by category changed across all quarters."


class MemoryCollection:
    """Documents chunked by the real chunker; sizes as ``Collection.stats`` reports them."""

    name = "memory"

    def __init__(self, docs: list[Any]) -> None:
        self._docs = {d.id: d for d in docs}
        self._chunks = {d.id: chunk_document(d) for d in docs}

    def documents(self) -> list[Any]:
        return list(self._docs.values())

    def document(self, doc_id: str) -> Any:
        return self._docs[doc_id]

    def chunks(self, doc_id: str) -> Any:
        return self._chunks[doc_id]

    def search(self, query: str, k: int = 10, retriever: str = "hybrid") -> list:
        return []

    def stats(self) -> CollectionStats:
        doc_tokens = tuple(int(c.document.n_tokens) for c in self._chunks.values())
        return CollectionStats(len(doc_tokens), sum(doc_tokens), doc_tokens,
                               sum(len(c.passages) for c in self._chunks.values()))


def note(request: LLMRequest) -> str:
    ids = re.findall(r"\[(S\d+)\]", request.messages[-1].content) or ["S1"]
    if request.stage.startswith(("mr.map", "mr.collapse")):
        a, b = (ids[3], ids[7]) if len(ids) > 7 else (ids[0], ids[0])
        return json.dumps({
            "facts": [{"text": "Net sales of the category grew by four percent on the previous year, on higher volumes",
                       "sentences": [a]},
                      {"text": "Gross margin improved slightly as component costs fell in the second half",
                       "sentences": [b]}],
            "rationale": "This part reports the sales change and the margin for the period in question.",
            "answer": "Net sales grew about 4% year on year.", "confidence": 3})
    return f"Net sales grew about 4% [{ids[0]}]."


def measure(coll: MemoryCollection, profile: ModelProfile) -> dict[str, Any]:
    llm = ScriptedLLM(rules=[(".", note)], profile=profile)
    result = asyncio.run(MapReduce(llm).run(QUESTION, coll))
    feats = build_features(QUESTION, coll.stats(), profile, question_profile=QuestionTyper().classify(QUESTION),
                           count_tokens=llm.count_tokens)
    est = {e.route: e for e in estimate_routes(feats, profile)}[Route.MR]
    calls, prompt = len(result.usage), sum(u.prompt_tokens for u in result.usage)
    return {"calls": calls, "prompt": prompt, "est_calls": est.calls, "est_prompt": est.prompt_tokens,
            "calls_err": (est.calls - calls) / calls, "prompt_err": (est.prompt_tokens - prompt) / prompt}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--sec-docs", type=int, default=3, help="how many Apple 10-Qs to extract (0: none)")
    ap.add_argument("--profiles", default="gpt-4-turbo,llama-3.1-8b-instruct,mistral-nemo,generic")
    args = ap.parse_args()
    sets: dict[str, MemoryCollection] = {
        "synthetic 8x4000 words": MemoryCollection([document_from_text(d.text, title=d.title, format="md")
                                                    for d in generate_corpus(seed=3, n_docs=8, n_words=4000)]),
    }
    files = sorted(SEC_DIR.glob("*AAPL*.pdf"))[: args.sec_docs] if SEC_DIR.is_dir() else []
    if files:
        sets[f"SEC 10-Q AAPL x{len(files)}"] = MemoryCollection([d for f in files for d in load_path(f)])
    print("| collection | tokens | profile (usable) | calls real / est | prompt tokens real / est | calls err | tokens err |")
    print("|---|---:|---|---|---|---:|---:|")
    for name, coll in sets.items():
        for pname in args.profiles.split(","):
            prof = get_profile(pname)
            r = measure(coll, prof)
            print(f"| {name} | {coll.stats().total_tokens:,} | {prof.name} ({prof.usable_window:,}) | "
                  f"{r['calls']} / {r['est_calls']} | {r['prompt']:,} / {r['est_prompt']:,} | "
                  f"{100 * r['calls_err']:+.0f}% | {100 * r['prompt_err']:+.0f}% |")


if __name__ == "__main__":
    main()
