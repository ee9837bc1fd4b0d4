"""LangChain integration: the collection as a ``BaseRetriever``, the engine as a ``Runnable``."""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document as LCDocument
from langchain_core.retrievers import BaseRetriever
from langchain_core.runnables import RunnableLambda
from pydantic import ConfigDict

from ctxroute.types import Answer, Route

if TYPE_CHECKING:
    from ctxroute.pipelines.engine import Engine


class CtxrouteRetriever(BaseRetriever):
    """Passages of a ctxroute collection as LangChain ``Document``s.

    ``metadata`` carries ``doc_id``, ``chunk_id``, ``start``/``end`` (character span in the
    source document), ``title``, ``heading``, ``page`` (PDFs), ``score`` and ``retriever``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    collection: Any
    k: int = 8
    retriever: str = "hybrid"

    def _get_relevant_documents(self, query: str, *, run_manager: CallbackManagerForRetrieverRun) -> list[LCDocument]:
        out: list[LCDocument] = []
        for hit in self.collection.search(query, self.k, retriever=self.retriever):
            c = hit.chunk
            doc = self.collection.document(c.doc_id)
            out.append(
                LCDocument(
                    page_content=doc.text[c.start : c.end],
                    metadata={
                        "doc_id": c.doc_id,
                        "chunk_id": c.id,
                        "start": c.start,
                        "end": c.end,
                        "title": doc.title,
                        "heading": c.heading,
                        "page": doc.page_at(c.start),
                        "score": float(hit.score),
                        "retriever": hit.retriever,
                    },
                )
            )
        return out


def engine_runnable(engine: "Engine", collection: Any, *, route: Route | str | None = None) -> RunnableLambda:
    """``RunnableLambda`` taking a question (str, or a dict with ``question`` and optional
    ``route``/``budget``) and returning the ``Answer``; sync ``invoke`` and async ``ainvoke``."""

    def unpack(value: Any) -> tuple[str, Any, Any]:
        if isinstance(value, str):
            return value, route, None
        if isinstance(value, dict):
            return str(value.get("question", "")), value.get("route", route), value.get("budget")
        raise TypeError(f"expected a question string or a dict with 'question', got {type(value).__name__}")

    async def afunc(value: Any) -> Answer:
        q, r, b = unpack(value)
        return await engine.answer(q, collection, route=r, budget=b)

    def func(value: Any) -> Answer:
        q, r, b = unpack(value)
        return engine.answer_sync(q, collection, route=r, budget=b)

    return RunnableLambda(func, afunc=afunc, name="ctxroute_engine")
