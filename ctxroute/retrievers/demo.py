"""The project's own demo collection: seeded synthetic annual reports (``ctxroute.synthetic``),
built once with MiniLM. Used by ``ctxroute demo``, ``ctxroute serve --demo`` and the API."""
from __future__ import annotations

from typing import Any, Callable

from ctxroute.types import Document

DEMO_COLLECTION = "demo"
DEMO_SEED = 7
DEMO_DOCS = 2
DEMO_WORDS = 6000


def demo_documents() -> list[Document]:
    """The demo corpus (seeded synthetic annual reports) as Documents."""
    from ctxroute.retrievers.documents import document_from_text
    from ctxroute.synthetic import generate_corpus

    return [
        document_from_text(d.text, title=d.title, source=f"synthetic:seed={DEMO_SEED}:{i}", format="md")
        for i, d in enumerate(generate_corpus(seed=DEMO_SEED, n_docs=DEMO_DOCS, n_words=DEMO_WORDS))
    ]


def ensure_demo_collection(store: Any, *, embedder: Any = None, progress: Callable[[str, int, int], None] | None = None) -> Any:
    """Open the demo collection, (re)building it from ``ctxroute.synthetic`` with MiniLM when it
    is absent or was built from a different version of the generator."""
    from ctxroute.errors import CollectionNotFound, ManifestMismatch
    from ctxroute.retrievers.collection import CollectionConfig
    from ctxroute.retrievers.embedders import make_embedder

    docs = demo_documents()
    try:
        coll = store.open(DEMO_COLLECTION, embedder)
        if {d.id for d in coll.documents()} == {d.id for d in docs}:
            return coll
        store.delete(DEMO_COLLECTION)  # stale: the generator changed since it was built
    except CollectionNotFound:
        pass
    except ManifestMismatch:  # built with another embedder: the demo collection is rebuilt
        store.delete(DEMO_COLLECTION)
    embedder = embedder or make_embedder(None)
    coll = store.open_or_create(DEMO_COLLECTION, CollectionConfig.for_embedder(embedder), embedder)
    coll.add_documents(docs, progress=progress)
    return coll
