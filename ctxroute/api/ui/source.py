"""``GET /v1/collections/{name}/documents/{doc_id}/text``: a document's full text and page
offsets, so the page can highlight a citation by its exact character span.

(No ``from __future__ import annotations`` here: FastAPI must see the ``Depends`` of the
closure variables, not strings.)"""

import asyncio
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, Path
from pydantic import Field

from ctxroute.api import models as M
from ctxroute.api.wire import document_out


class DocumentText(M.DocumentOut):
    text: str = Field(description="the full text; a citation's quote is text[start:end]")
    page_starts: list[int] = Field(default=[], description="character offset of each page (PDFs; empty otherwise)")


# path parameters carry their patterns into the OpenAPI schema, as the other routes' do
Name = Annotated[str, Path(pattern=M.NAME_PATTERN, description="collection name")]
DocId = Annotated[str, Path(pattern=M.NAME_PATTERN, description="document id")]


def source_router(services: Callable[..., Any], tenant: Callable[..., Any]) -> APIRouter:
    router = APIRouter(tags=["documents"])

    @router.get("/v1/collections/{name}/documents/{doc_id}/text", response_model=DocumentText)
    async def document_text(
        name: Name, doc_id: DocId,
        svc: Annotated[Any, Depends(services)], t: Annotated[str, Depends(tenant)],
    ) -> DocumentText:
        """The document's text with its page offsets (read-only; the caller's own collections only)."""

        def load() -> DocumentText:
            d = svc.backend.collection(t, name).document(doc_id)
            return DocumentText(**document_out(d).model_dump(), text=d.text, page_starts=list(d.page_starts))

        return await asyncio.to_thread(load)

    return router


__all__ = ["DocumentText", "source_router"]
