"""Request and response models of the REST API (pydantic), separate from the library's
dataclasses so the wire format can stay stable while the library evolves."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$"  # collection names and document ids
DOC_ID_RE = re.compile(NAME_PATTERN)
TENANT_PATTERN = r"^[a-z0-9][a-z0-9_-]{0,62}$"
KEY_ID_PATTERN = r"^[0-9a-f]{12}$"
JOB_ID_PATTERN = r"^job_[0-9a-f]{16}$"
# Text a document may hold: no C0/C1 control characters except tab, newlines and form feeds,
# no lone surrogates, and at least one non-blank character (what the loader accepts).
_TEXT_CHAR = r"[^\x00-\x08\x0e-\x1f\x7f-\x9f]"
TEXT_PATTERN = rf"^{_TEXT_CHAR}*[^\s\x00-\x08\x0e-\x1f\x7f-\x9f]{_TEXT_CHAR}*$"
NONBLANK_PATTERN = r"\S"
RouteName = Literal["rag", "lc", "mr", "hybrid", "extractive", "compressed-lc"]


def _not_str_or_bool(v: Any) -> Any:
    if isinstance(v, (bool, str)):
        raise ValueError("must be a number")
    return v


def _int(lo: int, hi: int) -> Any:
    """An integer as JSON Schema means it: 8 and 8.0, never "8" or true."""
    return Annotated[int, Field(ge=lo, le=hi), BeforeValidator(_not_str_or_bool)]


def _number(lo: float, hi: float) -> Any:
    return Annotated[float, Field(ge=lo, le=hi), BeforeValidator(_not_str_or_bool)]


Bool = Annotated[bool, Field(strict=True)]  # 0 is not false


class _In(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Error(BaseModel):
    """The one error shape of every non-2xx response."""

    code: str
    message: str
    request_id: str


# --- collections and documents -----------------------------------------------------
class CollectionCreate(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "contracts"}]})
    name: str = Field(pattern=NAME_PATTERN, description="letters, digits, '.', '_' or '-'; at most 64")


class CollectionOut(BaseModel):
    name: str
    version: str
    documents: int
    chunks: int
    tokens: int


class CollectionList(BaseModel):
    collections: list[CollectionOut]


class DocumentIn(_In):
    text: str = Field(min_length=1, pattern=TEXT_PATTERN,
                      description="the document's text, kept verbatim (no control characters but tab, newlines, "
                                  "form feed; not blank)")
    title: str = Field(default="", max_length=500)
    source: str = Field(default="", max_length=1000)
    id: str | None = Field(default=None, pattern=NAME_PATTERN, description="defaults to a content hash")
    format: Literal["txt", "md", "html"] = "txt"


class DocumentsIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"documents": [
        {"text": "# Lease\n\nEither party may terminate with sixty days written notice.", "title": "Lease",
         "source": "lease.md", "id": "lease-2024", "format": "md"}]}]})
    documents: list[DocumentIn] = Field(min_length=1, max_length=1000)


class DocumentOut(BaseModel):
    id: str
    title: str
    source: str
    format: str
    chars: int
    pages: int | None = None


class DocumentDetail(DocumentOut):
    preview: str = Field(description="the first characters of the text")


class DocumentList(BaseModel):
    documents: list[DocumentOut]


class FileErrorOut(BaseModel):
    file: str
    message: str


class IngestOut(BaseModel):
    """Result of a synchronous upload (small uploads and JSON text)."""

    collection: str
    version: str
    documents: list[DocumentOut]
    errors: list[FileErrorOut] = []


class JobOut(BaseModel):
    id: str
    collection: str
    status: Literal["queued", "running", "succeeded", "partial", "failed", "interrupted"]
    stage: str
    progress: float
    files_total: int
    files_done: int
    documents_added: list[str]
    errors: list[FileErrorOut]
    created_at: float
    finished_at: float | None = None
    collection_version: str = ""


class JobList(BaseModel):
    jobs: list[JobOut]


# --- queries -----------------------------------------------------------------------
class BudgetIn(_In):
    max_tokens: _int(1, 100_000_000) | None = None  # type: ignore[valid-type]
    max_cost: _number(0, 1_000_000) | None = None  # type: ignore[valid-type]


class CompressIn(_In):
    """compressed-lc's budget for this request: a share of the documents' tokens and/or an
    absolute number of tokens (alone it replaces the default ratio 0.35; both: the smaller)."""

    ratio: Annotated[float, Field(gt=0, le=1), BeforeValidator(_not_str_or_bool)] | None = None
    max_tokens: _int(1, 10_000_000) | None = None  # type: ignore[valid-type]


class QueryIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [
        {"question": "How much notice ends the lease?", "route": None, "top_k": 8, "stream": False, "cache": True},
        {"question": "Compare the notice periods of both leases", "budget": {"max_tokens": 20000, "max_cost": 0.05}}]})
    question: str = Field(min_length=1, pattern=NONBLANK_PATTERN,
                          description="the question; length limited by CTXROUTE_MAX_QUESTION_CHARS")
    route: RouteName | None = Field(default=None, description="override the router")
    budget: BudgetIn | None = None
    top_k: _int(1, 100) = 8  # type: ignore[valid-type]
    stream: Bool = Field(default=False, description="server-sent events (also with Accept: text/event-stream)")
    cache: Bool = Field(default=True, description="serve and store answers in the answer cache")
    docs: list[str] | None = Field(default=None, max_length=100,
                                   description="answer over these document ids only (default: the whole collection)")
    compress: CompressIn | None = Field(default=None, description="compressed-lc's budget (the router's estimate follows)")


class RouteIn(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"question": "Summarise every section", "top_k": 8}]})
    question: str = Field(min_length=1, pattern=NONBLANK_PATTERN)
    route: RouteName | None = None
    budget: BudgetIn | None = None
    top_k: _int(1, 100) = 8  # type: ignore[valid-type]
    docs: list[str] | None = Field(default=None, max_length=100, description="route over these document ids only")
    compress: CompressIn | None = Field(default=None, description="compressed-lc's budget for its estimate")


class EstimateOut(BaseModel):
    route: str
    prompt_tokens: int
    cost: float
    feasible: bool
    why_not: str = ""


class DecisionOut(BaseModel):
    route: str
    reasons: list[str]
    features: dict[str, float | str | None]  # None: a non-finite value
    estimates: list[EstimateOut] = []
    fallbacks: list[str] = []
    policy: str


class CitationOut(BaseModel):
    doc_id: str
    title: str
    page: int | None
    start: int
    end: int
    quote: str
    supports: float
    claim: str = ""
    sentence_id: str = ""


class CallOut(BaseModel):
    stage: str
    model: str
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    cost: float
    cached: bool = False


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    cost: float
    calls: list[CallOut]


class QueryOut(BaseModel):
    answer: str
    citations: list[CitationOut]
    decision: DecisionOut
    route_taken: str
    usage: UsageOut
    latency_ms: dict[str, float]
    warnings: list[str]
    abstained: bool
    abstain_reason: str = ""
    fallbacks_taken: list[str] = []
    cached: bool = False
    collection_version: str = ""
    request_id: str = ""


class RouteOut(BaseModel):
    decision: DecisionOut
    collection_version: str


# --- admin -------------------------------------------------------------------------
class TenantCreate(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"name": "team-a"}]})
    name: str = Field(pattern=TENANT_PATTERN, description="lowercase letters, digits, '-' or '_'; 'default' and "
                                                          "static tenants' names are taken")


class TenantOut(BaseModel):
    name: str
    created_at: float
    keys: int


class TenantList(BaseModel):
    tenants: list[TenantOut]


class KeyCreate(_In):
    model_config = ConfigDict(json_schema_extra={"examples": [{"label": "ci"}]})
    label: str = Field(default="", max_length=200)


class KeyOut(BaseModel):
    key_id: str
    tenant: str
    created_at: float
    label: str


class KeyCreated(KeyOut):
    key: str = Field(description="the secret: shown once, store it now")


class KeyList(BaseModel):
    keys: list[KeyOut]


class Health(BaseModel):
    status: str
    checks: dict[str, bool | str] = {}
