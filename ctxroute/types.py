"""Core types shared by every layer (layer 0: imports nothing from ctxroute).

Frozen dataclasses with typed fields. Offsets are absolute character offsets into
``Document.text`` and are produced by the splitter, never recovered with ``str.find``.
"""
from __future__ import annotations

import bisect
from dataclasses import dataclass, field
from enum import Enum
from typing import Mapping


class Level(str, Enum):
    """Granularity of a chunk in the document > section > passage > sentence hierarchy."""

    DOCUMENT = "document"
    SECTION = "section"
    PASSAGE = "passage"
    SENTENCE = "sentence"


class Route(str, Enum):
    """Answering strategies the router chooses between."""

    RAG = "rag"
    LC = "lc"
    MR = "mr"
    HYBRID = "hybrid"
    EXTRACTIVE = "extractive"
    COMPRESSED = "compressed-lc"  # query-aware compressed long context


@dataclass(frozen=True)
class Document:
    """One source document. ``id`` is a content hash unless the caller gave one.

    ``page_starts`` holds the character offset at which each page begins (PDFs only;
    empty otherwise), so a character span can be turned into a page number.
    """

    id: str
    text: str
    title: str = ""
    source: str = ""
    metadata: Mapping[str, str] = field(default_factory=dict)
    page_starts: tuple[int, ...] = ()
    format: str = "txt"  # txt | md | html | pdf | jsonl: picks the section splitter

    def page_at(self, offset: int) -> int | None:
        """1-based page number holding ``offset``; ``None`` when the document has no pages."""
        if not self.page_starts:
            return None
        return max(1, bisect.bisect_right(self.page_starts, offset))


@dataclass(frozen=True)
class Chunk:
    """A unit of the hierarchy: ``doc.text[start:end]`` is its text."""

    id: str
    doc_id: str
    level: Level
    start: int
    end: int
    parent_id: str | None
    ordinal: int
    n_tokens: int = 0
    heading: str = ""  # section title (sections, and passages/sentences inherit it)

    def text_of(self, doc: Document) -> str:
        return doc.text[self.start : self.end]


@dataclass(frozen=True)
class ScoredChunk:
    """A retrieval hit. ``retriever`` names who produced the final score; ``ranks`` and
    ``scores`` keep every retriever's own rank (1-based) and score for fused hits."""

    chunk: Chunk
    score: float
    retriever: str
    ranks: Mapping[str, int] = field(default_factory=dict)
    scores: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class ModelProfile:
    """What the router and pipelines need to know about an LLM.

    ``usable_window`` is the length up to which the model is still reliable; it is
    configured separately from ``context_window`` because most models degrade well
    before their advertised window.
    """

    name: str
    context_window: int
    usable_window: int
    price_in_per_1k: float = 0.0
    price_out_per_1k: float = 0.0
    tokenizer: str = "cl100k_base"
    size_class: str = "small"  # tiny | small | medium | large | frontier
    max_output_tokens: int = 1024
    # provenance and other names; not compared, so two profiles with equal numbers are equal
    source: str = field(default="", compare=False)  # where the window, usable window and prices come from
    aliases: tuple[str, ...] = field(default=(), compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.aliases, tuple):  # a JSON round-trip gives a list
            object.__setattr__(self, "aliases", tuple(self.aliases))

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.price_in_per_1k + completion_tokens * self.price_out_per_1k) / 1000.0


@dataclass(frozen=True)
class Budget:
    """Per-request limits. ``None`` means unlimited."""

    max_tokens: int | None = None  # prompt + completion tokens over all LLM calls
    max_cost: float | None = None  # in the profile's currency (USD)


@dataclass(frozen=True)
class RouteEstimate:
    """Predicted prompt tokens and cost of one candidate route.

    ``total_tokens`` (prompt + completion over ``calls`` LLM calls) is what a request's
    ``Budget.max_tokens`` is compared against.
    """

    route: Route
    prompt_tokens: int
    cost: float
    feasible: bool = True
    why_not: str = ""
    completion_tokens: int = 0
    calls: int = 1

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class RoutingDecision:
    """The router's choice, with reasons a person can read and the features it used."""

    route: Route
    reasons: tuple[str, ...]
    features: Mapping[str, float | str]
    estimates: tuple[RouteEstimate, ...] = ()
    fallbacks: tuple[Route, ...] = ()
    policy: str = "rules"

    @property
    def reason(self) -> str:
        return "; ".join(self.reasons)


@dataclass(frozen=True)
class Citation:
    """A verified pointer at source text: ``quote == document.text[start:end]``."""

    doc_id: str
    start: int
    end: int
    quote: str
    supports: float  # support score of the cited sentence for its claim, 0..1
    sentence_id: str = ""  # id used in the prompt, e.g. "S12"
    title: str = ""
    page: int | None = None
    claim: str = ""
    # "model": cited by the LLM, then verified; "attributed": the LLM cited nothing and ctxroute
    # matched the claim to its best-supporting sentence (opt-in); "extractive": quoted by the reader
    origin: str = "model"


@dataclass(frozen=True)
class CallUsage:
    """Usage of one LLM call."""

    stage: str  # e.g. "rag.answer", "mr.map[3]", "mr.reduce"
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cost: float = 0.0
    cached: bool = False


@dataclass(frozen=True)
class Answer:
    """What a question gets back."""

    text: str
    citations: tuple[Citation, ...]
    decision: RoutingDecision
    route_taken: Route
    usage: tuple[CallUsage, ...] = ()
    latency_ms: Mapping[str, float] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()
    abstained: bool = False
    abstain_reason: str = ""
    fallbacks_taken: tuple[str, ...] = ()

    @property
    def prompt_tokens(self) -> int:
        return sum(u.prompt_tokens for u in self.usage)

    @property
    def completion_tokens(self) -> int:
        return sum(u.completion_tokens for u in self.usage)

    @property
    def cost(self) -> float:
        return sum(u.cost for u in self.usage)
