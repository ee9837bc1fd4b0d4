"""What a strategy returns, the context it runs in, and the one LLM-call helper."""
from __future__ import annotations

import inspect
import time
from dataclasses import dataclass, field
from typing import Any, Callable, Iterable, Mapping, Protocol, Sequence

from ctxroute.errors import ContextWindowExceeded, DocumentNotFound, InputError
from ctxroute.pipelines.llm.base import LLMClient, LLMRequest, LLMResponse, StreamDelta, StreamEnd, prompt_text
from ctxroute.pipelines.packing import SentenceMap
from ctxroute.retrievers.collection import CollectionStats
from ctxroute.types import Answer, CallUsage, Chunk, Citation, Document, Route, ScoredChunk

DeltaCallback = Callable[[str], None]


class CollectionLike(Protocol):
    """What the pipelines use of ``ctxroute.retrievers.collection.Collection``."""

    name: str

    def documents(self) -> Any: ...

    def document(self, doc_id: str) -> Document: ...

    def chunks(self, doc_id: str) -> Any: ...  # DocumentChunks

    def search(self, query: str, k: int = 10, retriever: str = "hybrid") -> list[ScoredChunk]: ...


@dataclass(frozen=True)
class StrategyResult:
    """Raw outcome of one strategy run, before citation verification.

    ``text`` keeps the model's ``[S12]`` markers; ``sentence_map`` resolves them. The
    extractive reader fills ``citations`` itself (already checked) and leaves markers out.
    """

    route: Route
    text: str
    sentence_map: SentenceMap
    usage: tuple[CallUsage, ...] = ()
    warnings: tuple[str, ...] = ()
    abstained: bool = False
    abstain_reason: str = ""
    timings_ms: Mapping[str, float] = field(default_factory=dict)  # retrieve, llm
    citations: tuple[Citation, ...] = ()
    hits: tuple[ScoredChunk, ...] = ()
    prompt_tokens_packed: int = 0


class ScopedCollection:
    """A collection restricted to some of its documents (per-question ``docs``).

    ``documents()``, ``search()`` and ``stats()`` only see the scoped documents, so the
    router's sizes, retrieval and every strategy's packing stay inside the scope; everything
    else (``embedder``, ``refresh``, ...) is the underlying collection's. Raises
    ``DocumentNotFound`` naming every id the collection does not hold.
    """

    def __init__(self, collection: CollectionLike, doc_ids: Iterable[str]) -> None:
        if isinstance(doc_ids, str):
            doc_ids = [doc_ids]
        ids = list(dict.fromkeys(str(d) for d in doc_ids))
        name = getattr(collection, "name", "?")
        if not ids:
            raise InputError("docs is empty; pass at least one document id, or None for the whole collection")
        known = [d.id for d in collection.documents()]
        known_set = set(known)
        missing = [d for d in ids if d not in known_set]
        if missing:
            raise DocumentNotFound(
                f"document{'s' if len(missing) > 1 else ''} {', '.join(repr(d) for d in missing)} "
                f"not in collection {name!r}; list them with `ctxroute docs list --collection {name}`",
                doc_ids=tuple(missing), collection=name,
            )
        self.base = collection
        self.name = name
        self.scope = frozenset(ids)
        self.doc_ids = tuple(d for d in known if d in self.scope)  # collection order
        try:
            self._native = "doc_ids" in inspect.signature(collection.search).parameters
        except (TypeError, ValueError):
            self._native = False

    def __getattr__(self, attr: str) -> Any:
        if attr == "base":  # not set yet (during __init__ failures): no recursion
            raise AttributeError(attr)
        return getattr(self.base, attr)

    def __len__(self) -> int:
        return len(self.doc_ids)

    def __contains__(self, doc_id: object) -> bool:
        return doc_id in self.scope

    def documents(self) -> list[Document]:
        return [d for d in self.base.documents() if d.id in self.scope]

    def document(self, doc_id: str) -> Document:
        return self.base.document(doc_id)

    def chunks(self, doc_id: str) -> Any:
        return self.base.chunks(doc_id)

    def search(self, query: str, k: int = 10, retriever: str = "hybrid") -> list[ScoredChunk]:
        if self._native:
            return list(self.base.search(query, k, retriever, doc_ids=self.doc_ids))  # type: ignore[call-arg]
        fetch = max(4 * k, k + 50)  # a collection without doc_ids: over-fetch and filter
        while True:
            raw = list(self.base.search(query, fetch, retriever))
            hits = [h for h in raw if h.chunk.doc_id in self.scope]
            if len(hits) >= k or len(raw) < fetch:
                return hits[:k]
            fetch *= 4

    def stats(self) -> CollectionStats:
        chunks = [self.base.chunks(d) for d in self.doc_ids]
        doc_tokens = tuple(
            int(c.document.n_tokens or sum(int(s.n_tokens) for s in c.sentences)) for c in chunks
        )
        base_stats = getattr(self.base, "stats", None)
        passage_tokens = int(getattr(base_stats(), "passage_tokens", 256)) if callable(base_stats) else 256
        return CollectionStats(
            n_docs=len(doc_tokens),
            total_tokens=sum(doc_tokens),
            doc_tokens=doc_tokens,
            n_passages=sum(len(c.passages) for c in chunks),
            n_sections=sum(len(c.sections) for c in chunks),
            n_sentences=sum(len(c.sentences) for c in chunks),
            passage_tokens=passage_tokens,
            doc_ids=self.doc_ids,
            doc_chars={d: len(self.base.document(d).text) for d in self.doc_ids},
        )


def scoped(collection: CollectionLike, doc_ids: Iterable[str] | None) -> CollectionLike:
    """``collection`` restricted to ``doc_ids``; the collection itself when ``doc_ids`` is None."""
    if doc_ids is None:
        return collection
    return ScopedCollection(collection, doc_ids)  # type: ignore[return-value]


class Corpus:
    """Cached per-request view of a collection: documents and their chunk hierarchy."""

    def __init__(self, collection: CollectionLike) -> None:
        self.collection = collection
        self._docs: dict[str, Document] = {}
        self._chunks: dict[str, Any] = {}
        self._order: list[str] | None = None

    @classmethod
    def of(cls, collection: "CollectionLike | Corpus") -> "Corpus":
        """The corpus itself, or a new view over a collection."""
        return collection if isinstance(collection, Corpus) else cls(collection)

    def hits(self, question: str, k: int, retriever: str, hits: Sequence[ScoredChunk] | None = None) -> list[ScoredChunk]:
        """``hits`` (e.g. the router's probe) cut to ``k``, else a fresh search."""
        if hits is None:
            hits = self.collection.search(question, k, retriever=retriever)
        return list(hits[:k])

    def doc_ids(self) -> list[str]:
        """Document ids in collection order."""
        if self._order is None:
            docs = list(self.collection.documents())
            for d in docs:
                self._docs.setdefault(d.id, d)
            self._order = [d.id for d in docs]
        return self._order

    def document(self, doc_id: str) -> Document:
        if doc_id not in self._docs:
            self._docs[doc_id] = self.collection.document(doc_id)
        return self._docs[doc_id]

    def chunks(self, doc_id: str) -> Any:
        if doc_id not in self._chunks:
            self._chunks[doc_id] = self.collection.chunks(doc_id)
        return self._chunks[doc_id]

    def sentences(self, doc_id: str) -> Sequence[Chunk]:
        return self.chunks(doc_id).sentences

    def passages(self, doc_id: str) -> Sequence[Chunk]:
        return self.chunks(doc_id).passages

    def documents_for(self, doc_ids: Sequence[str]) -> dict[str, Document]:
        return {d: self.document(d) for d in doc_ids}

    def sentences_for(self, doc_ids: Sequence[str]) -> dict[str, Sequence[Chunk]]:
        return {d: self.sentences(d) for d in doc_ids}


def answer_room(llm: LLMClient, system: str, question: str, max_tokens: int, slack: int = 100) -> int:
    """Context tokens an answering call may pack into the model's usable window: what the system
    prompt, the question (asked before and after the context), the answer and ``slack`` leave."""
    return llm.profile.usable_window - max_tokens - llm.count_tokens(system + question * 2) - slack


def check_window(llm: LLMClient, request: LLMRequest, *, stage: str) -> int:
    """Prompt tokens of ``request``; raises ContextWindowExceeded BEFORE any model call
    when prompt + max_tokens exceeds the profile's usable window."""
    tokens = llm.count_tokens(prompt_text(request.messages))
    window = llm.profile.usable_window
    if tokens + request.max_tokens > window:
        raise ContextWindowExceeded(
            f"{stage}: prompt of {tokens} tokens + {request.max_tokens} for the answer exceeds the usable window "
            f"of {window} tokens of {llm.profile.name}; use map-reduce or hybrid, or a model with a larger window",
            prompt_tokens=tokens,
            window=window,
        )
    return tokens


async def call_llm(
    llm: LLMClient, request: LLMRequest, *, on_delta: DeltaCallback | None = None
) -> tuple[LLMResponse, CallUsage]:
    """One LLM call (streamed when ``on_delta`` is given) and its usage record."""
    t0 = time.perf_counter()
    if on_delta is None:
        response = await llm.complete(request)
    else:
        response = None
        parts: list[str] = []
        async for item in llm.stream(request):
            if isinstance(item, StreamDelta):
                parts.append(item.text)
                on_delta(item.text)
            elif isinstance(item, StreamEnd):
                response = item.response
        if response is None:  # a stream without an end record: count what we saw
            text = "".join(parts)
            response = LLMResponse(
                text=text,
                prompt_tokens=llm.count_tokens(prompt_text(request.messages)),
                completion_tokens=llm.count_tokens(text),
                model=llm.profile.name,
            )
    latency = (time.perf_counter() - t0) * 1000.0
    usage = CallUsage(
        stage=request.stage,
        model=response.model or llm.profile.name,
        prompt_tokens=response.prompt_tokens,
        completion_tokens=response.completion_tokens,
        latency_ms=round(response.latency_ms or latency, 2),
        cost=llm.profile.cost(response.prompt_tokens, response.completion_tokens),
        cached=response.cached,
    )
    return response, usage


def _plain(value: Any) -> Any:
    import dataclasses
    import enum

    if isinstance(value, enum.Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k.value if isinstance(k, enum.Enum) else k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value != value:  # NaN is not JSON
        return None
    return value


def answer_to_dict(answer: Answer) -> dict[str, Any]:
    """The Answer as JSON-ready data (enums as values), plus token totals and the reason line."""
    out = _plain(answer)
    out["prompt_tokens"] = answer.prompt_tokens
    out["completion_tokens"] = answer.completion_tokens
    out["cost"] = answer.cost
    out["decision"]["reason"] = answer.decision.reason
    return out
