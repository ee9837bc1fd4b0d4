"""End to end on the embedded SmolLM2-135M: a few short LLM calls over a project-written document.

The tiny model's answers are not judged for correctness; what must hold whatever it writes:
the engine returns an Answer, records usage and latency, and every citation it keeps quotes
the source exactly (anything it removed is reported as a warning)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from ctxroute.pipelines.engine import Engine, EngineConfig
from ctxroute.pipelines.llm.local import LocalLLM
from ctxroute.retrievers.collection import CollectionStore
from ctxroute.retrievers.documents import document_from_text
from ctxroute.retrievers.embedders import HashingEmbedder
from ctxroute.types import Route

pytestmark = pytest.mark.slow

NOTE = """# Harbor Station log

## Staff

The Harbor Station is run by Ana Lindqvist, who became station chief in 2029.
Twelve researchers work at the station during the summer season.

## Measurements

The station measured a mean sea temperature of 14.2 degrees in August.
The highest wave recorded in 2031 was 7.5 metres, on the 3rd of November.
"""


@pytest.fixture(scope="module")
def engine(tmp_path_factory: pytest.TempPathFactory) -> Engine:
    cache = os.environ.get("CTXROUTE_CACHE_DIR")
    llm = LocalLLM(cache_dir=Path(cache) if cache else None)
    llm.load()
    store = CollectionStore(tmp_path_factory.mktemp("e2e") / "collections")
    store.create("log", embedder=HashingEmbedder()).add_documents(
        [document_from_text(NOTE, title="Harbor Station log", format="md")])
    return Engine(store, llm, config=EngineConfig.with_answer_tokens(48, escalate=False))


def _check(answer, engine: Engine) -> None:  # type: ignore[no-untyped-def]
    coll = engine.collection("log")
    for c in answer.citations:
        assert coll.document(c.doc_id).text[c.start:c.end] == c.quote
    assert answer.usage and all(u.model and u.prompt_tokens > 0 for u in answer.usage)
    assert answer.latency_ms["llm"] > 0 and answer.latency_ms["total"] >= answer.latency_ms["llm"]
    # honesty: either the answer has verified citations, or a warning says why it has none
    assert answer.citations or answer.abstained or answer.warnings


@pytest.mark.parametrize("route", [Route.RAG, Route.LC])
async def test_local_model_answers_with_checked_citations(engine: Engine, route: Route) -> None:
    answer = await engine.answer("Who is the station chief of the Harbor Station?", "log", route=route)
    assert answer.route_taken == route
    _check(answer, engine)
