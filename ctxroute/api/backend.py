"""The service's use of the library: tenant-scoped collection stores, the embedder, the LLM
and the engines, loaded once (library types become wire models in ``api/wire.py``). Blocking
methods run in worker threads (the routes call them with ``asyncio.to_thread``);
``answer``/``answer_stream`` are async."""
from __future__ import annotations

import asyncio
import shutil
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, AsyncIterator

from ctxroute.api import models as M
from ctxroute.api.auth import DEV_TENANT
from ctxroute.api.jobs import JobHandle
from ctxroute.api.settings import ApiSettings
from ctxroute.errors import CollectionNotFound, Conflict
from ctxroute.pipelines.engine import Engine, EngineConfig
from ctxroute.pipelines.llm.base import LLMClient
from ctxroute.retrievers.collection import Collection, CollectionConfig, CollectionStore
from ctxroute.api.uploads import UploadLimits, parse_file
from ctxroute.api.wire import answer_out, citation_out, decision_out, document_out
from ctxroute.retrievers.documents import document_from_text
from ctxroute.retrievers.embedders import make_embedder
from ctxroute.types import Budget, Document

_MAX_OPEN = 64  # open collections kept in memory (LRU)


_MAX_ENGINES = 32  # engines kept for distinct (top_k, compressed-lc budget) requests (LRU)


@dataclass(frozen=True)
class QueryOptions:
    route: str | None = None
    top_k: int = 8
    budget: M.BudgetIn | None = None
    docs: tuple[str, ...] | None = None  # answer over these documents only (None: all)
    compress: M.CompressIn | None = None  # compressed-lc's budget (None: the engine's default)

    @classmethod
    def of(cls, body: M.QueryIn | M.RouteIn) -> "QueryOptions":
        """The options of a query or route request."""
        return cls(route=body.route, top_k=body.top_k, budget=body.budget,
                   docs=tuple(body.docs) if body.docs else None, compress=body.compress)

    @property
    def compress_key(self) -> tuple[float | None, int | None]:
        c = self.compress
        return (c.ratio, c.max_tokens) if c is not None else (None, None)

    def to_budget(self) -> Budget:
        if self.budget is None:
            return Budget()
        return Budget(max_tokens=self.budget.max_tokens, max_cost=self.budget.max_cost)

    def cache_part(self) -> str:
        b = self.budget
        part = f"k={self.top_k};bt={b.max_tokens if b else None};bc={b.max_cost if b else None}"
        if self.docs is not None:  # only scoped requests change the key (old cache entries stay valid)
            part += ";docs=" + ",".join(sorted(set(self.docs)))
        if self.compress_key != (None, None):  # likewise only a request that sets compressed-lc's budget
            part += ";compress={}/{}".format(*self.compress_key)
        return part


class Backend:
    def __init__(self, settings: ApiSettings, *, llm: LLMClient | None = None, embedder: Any | None = None) -> None:
        self.settings = settings
        self.llm = llm
        self.embedder = embedder
        self._own_llm = llm is None
        self._open: OrderedDict[tuple[str, str], tuple[Collection, str]] = OrderedDict()
        self._stores: dict[str, CollectionStore] = {}
        self._lock = threading.Lock()
        self._engines: OrderedDict[tuple[int, float | None, int | None], Engine] = OrderedDict()

    # --- lifecycle ------------------------------------------------------------------
    async def load(self) -> None:
        """Load the embedder (and MiniLM weights), the LLM client and the engine."""
        if self.embedder is None:
            self.embedder = make_embedder(self.settings.embedder)
        if hasattr(self.embedder, "load"):
            await asyncio.to_thread(self.embedder.load)
        if self.llm is None and self.settings.reader == "llm":
            from ctxroute.pipelines.llm.factory import LLMConfig, build_llm

            self.llm = build_llm(LLMConfig.from_env(self.settings.llm_env))
        inner = getattr(self.llm, "inner", self.llm)  # behind the completion cache
        if self.uses_llm and callable(getattr(inner, "load", None)):
            await asyncio.to_thread(inner.load)  # an embedded model loads before /readyz says ready
        self.engine_for(8)

    def engine_for(self, top_k: int, compress: tuple[float | None, int | None] = (None, None)) -> Engine:
        """The engine whose retrieval reads ``top_k`` passages and whose compressed-lc keeps
        ``compress`` (ratio, max_tokens; (None, None): the default), one per distinct pair, cached."""
        key = (top_k, *compress)
        with self._lock:
            engine = self._engines.get(key)
            if engine is not None:
                self._engines.move_to_end(key)
            else:
                base = EngineConfig(max_question_chars=self.settings.max_question_chars)
                config = replace(
                    base, probe_k=max(base.probe_k, top_k), rag=replace(base.rag, k=top_k),
                    extractive=replace(base.extractive, k=top_k),
                ).with_compression(*compress)
                engine = self._engines[key] = Engine({}, self.llm if self.uses_llm else None, config=config)
                while len(self._engines) > _MAX_ENGINES:  # requests choose top_k and the budget
                    self._engines.popitem(last=False)
            return engine

    async def aclose(self) -> None:
        if self.llm is not None and self._own_llm:
            await self.llm.aclose()

    @property
    def uses_llm(self) -> bool:
        return self.llm is not None and self.settings.reader == "llm"

    @property
    def model_name(self) -> str:
        return self.llm.profile.name if self.uses_llm and self.llm is not None else "extractive"

    def checks(self) -> dict[str, bool | str]:
        return {
            "embedder": str(getattr(self.embedder, "name", "")),
            "reader": self.model_name,
            "engine": bool(self._engines),
        }

    # --- collections ----------------------------------------------------------------
    def tenant_root(self, tenant: str) -> Path:
        """Where a tenant's collections live. The development tenant ``default`` shares
        ``<home>/collections`` with the CLI, so `ctxroute ingest` collections are served as-is."""
        if tenant == DEV_TENANT:
            return self.settings.home / "collections"
        return self.settings.home / "tenants" / tenant / "collections"

    def _store(self, tenant: str) -> CollectionStore:
        """The tenant's collections: files under ``tenant_root`` or, with ``CTXROUTE_STORE``
        a postgresql:// URL, the tenant's namespace there (shared by every replica)."""
        store = self._stores.get(tenant)
        if store is None:
            if self.settings.store_url:
                store = CollectionStore(self.settings.store_url, namespace=tenant)
            else:
                store = CollectionStore(self.tenant_root(tenant))
            with self._lock:
                store = self._stores.setdefault(tenant, store)
        return store

    def collection(self, tenant: str, name: str) -> Collection:
        """The open collection (cached; reloaded when another writer committed). Blocking."""
        key = (tenant, name)
        with self._lock:
            entry = self._open.get(key)
            if entry is not None:
                self._open.move_to_end(key)
        store = self._store(tenant)
        if entry is None:
            col = store.open(name, self.embedder)
        else:
            col = entry[0]
            current = store.current(name)
            if current is None:
                self._forget(tenant, name)
                raise CollectionNotFound(name)
            if current != col._state.version_dir:  # one version read per request when nothing changed
                col.refresh()
        with self._lock:
            self._open[key] = (col, col._state.version_dir)
            while len(self._open) > _MAX_OPEN:
                self._open.popitem(last=False)
        return col

    def cached_collection(self, tenant: str, name: str) -> Collection | None:
        """The open collection when the store's live version is the one it loaded (a small
        file read for the files store; safe on the event loop); None when it must be
        (re)loaded with ``collection``. Shared stores always answer None: their version check
        is a network round trip, made in a thread by ``collection``."""
        entry = self._open.get((tenant, name))
        if entry is None or self.settings.store_url:
            return None
        try:
            current = self._store(tenant).current(name)
        except OSError:
            return None
        return entry[0] if current == entry[1] else None

    async def open(self, tenant: str, name: str) -> Collection:
        """``collection`` without a thread hop in the common case."""
        col = self.cached_collection(tenant, name)
        return col if col is not None else await asyncio.to_thread(self.collection, tenant, name)

    def _forget(self, tenant: str, name: str) -> None:
        with self._lock:
            self._open.pop((tenant, name), None)

    def check_exists(self, tenant: str, name: str) -> None:
        if not self._store(tenant).exists(name):
            raise CollectionNotFound(name)

    def _info(self, col: Collection) -> M.CollectionOut:
        s = col.stats()
        return M.CollectionOut(name=col.name, version=col.version, documents=s.n_docs, chunks=s.n_passages,
                               tokens=s.total_tokens)

    def create_collection(self, tenant: str, name: str) -> M.CollectionOut:
        col = self._store(tenant).create(name, CollectionConfig.for_embedder(self.embedder), self.embedder)
        return self._info(col)

    def list_collections(self, tenant: str) -> list[M.CollectionOut]:
        return [M.CollectionOut(name=i.name, version=i.version, documents=i.n_docs, chunks=i.n_passages,
                                tokens=i.total_tokens) for i in self._store(tenant).list()]

    def collection_info(self, tenant: str, name: str) -> M.CollectionOut:
        return self._info(self.collection(tenant, name))

    def delete_collection(self, tenant: str, name: str) -> None:
        self._forget(tenant, name)
        self._store(tenant).delete(name)

    def purge_tenant(self, tenant: str) -> None:
        """Delete a managed tenant's folder (collections and jobs). Never the development
        tenant's: its collections are the CLI's."""
        if tenant == DEV_TENANT:
            raise Conflict(f"tenant {DEV_TENANT!r} is reserved; its collections are the CLI's and are never purged")
        with self._lock:
            for key in [k for k in self._open if k[0] == tenant]:
                del self._open[key]
        if self.settings.store_url:  # the record is shared: delete the tenant's collections there
            store = self._store(tenant)
            for info in store.list():
                store.delete(info.name)
        with self._lock:
            self._stores.pop(tenant, None)
        shutil.rmtree(self.settings.home / "tenants" / tenant, ignore_errors=True)

    # --- documents ------------------------------------------------------------------
    def list_documents(self, tenant: str, name: str) -> list[M.DocumentOut]:
        return [document_out(d) for d in self.collection(tenant, name).documents()]

    def document_info(self, tenant: str, name: str, doc_id: str) -> M.DocumentDetail:
        d = self.collection(tenant, name).document(doc_id)
        return M.DocumentDetail(**document_out(d).model_dump(), preview=d.text[:500])

    def remove_document(self, tenant: str, name: str, doc_id: str) -> None:
        self.collection(tenant, name).remove_document(doc_id)

    @staticmethod
    def document_from_in(d: M.DocumentIn) -> Document:
        return document_from_text(d.text, title=d.title, source=d.source or d.title, doc_id=d.id, format=d.format)


    def add_documents(self, tenant: str, name: str, docs: list[Document], errors: list[M.FileErrorOut]) -> M.IngestOut:
        col = self.collection(tenant, name)
        stats = col.add_documents(docs)
        source = {d.id: d.source or d.id for d in docs}
        for doc_id in stats.skipped:
            errors.append(M.FileErrorOut(file=source[doc_id], message=f"document {doc_id} is already in the collection (same text); skipped"))
        added = set(stats.added)
        return M.IngestOut(collection=name, version=stats.version,
                           documents=[document_out(d) for d in docs if d.id in added], errors=errors)

    def ingest_job(self, tenant: str, name: str, h: JobHandle, limits: UploadLimits) -> None:
        """Body of a background upload job: load every file (errors per file, caps as for a
        synchronous upload), then index."""
        docs: list[Document] = []
        n = len(h.files)
        for i, (fname, path) in enumerate(h.files, start=1):
            try:
                loaded, errs, _ = parse_file(path.read_bytes(), fname, limits)
            except OSError as exc:
                loaded, errs = [], [M.FileErrorOut(file=fname, message=f"unreadable upload: {exc.strerror}")]
            docs.extend(loaded)
            for e in errs:
                h.add_error(e.file, e.message)
            h.update(files_done=i, progress=0.2 * i / n)
        if not docs:
            return

        def progress(stage: str, done: int, total: int) -> None:
            weights = {"chunk": (0.2, 0.1), "embed": (0.3, 0.5)}
            base, span = weights.get(stage, (0.8, 0.15))
            h.update(stage=f"indexing:{stage}", progress=min(0.99, base + span * done / max(1, total)))

        stats = self.collection(tenant, name).add_documents(docs, progress=progress)
        source = {d.id: d.source or d.id for d in docs}
        for doc_id in stats.skipped:
            h.add_error(source[doc_id], f"document {doc_id} is already in the collection (same text); skipped")
        h.update(documents_added=tuple(stats.added), collection_version=stats.version)

    # --- questions --------------------------------------------------------------------
    async def route(self, tenant: str, name: str, question: str, opts: QueryOptions) -> M.RouteOut:
        """The routing decision (retrieval probe, features, policy) without any LLM call."""
        col = await self.open(tenant, name)
        decision = await self.engine_for(opts.top_k, opts.compress_key).decide(
            question, col, route=opts.route, budget=opts.to_budget(), docs=opts.docs
        )
        return M.RouteOut(decision=decision_out(decision), collection_version=col.version)

    async def answer(self, tenant: str, name: str, question: str, opts: QueryOptions) -> M.QueryOut:
        col = await self.open(tenant, name)
        answer = await self.engine_for(opts.top_k, opts.compress_key).answer(
            question, col, route=opts.route, budget=opts.to_budget(), docs=opts.docs
        )
        return answer_out(answer, col.version)

    async def answer_stream(self, tenant: str, name: str, question: str, opts: QueryOptions) -> AsyncIterator[tuple[str, Any]]:
        """(kind, data) pairs: decision, delta, fallback, progress (map-reduce calls), citation (one
        per verified citation), done (data: the QueryOut)."""
        col = await self.open(tenant, name)
        events = self.engine_for(opts.top_k, opts.compress_key).answer_stream(
            question, col, route=opts.route, budget=opts.to_budget(), docs=opts.docs
        )
        streamed = False  # a delta was sent for the current attempt
        held: list[dict[str, Any]] = []  # citations of an attempt that sent no delta (extractive)
        try:
            async for ev in events:
                if ev.kind == "decision":
                    yield "decision", decision_out(ev.data).model_dump()
                elif ev.kind == "delta":
                    streamed = True
                    yield "delta", {"text": ev.data}
                elif ev.kind == "fallback":
                    streamed, held = False, []
                    yield "fallback", {"route": ev.data, "discard_deltas": True}
                elif ev.kind == "progress":  # map-reduce: {"stage": "map"|"reduce", "done": n, "total": m}
                    yield "progress", dict(ev.data)
                elif ev.kind == "citations":
                    cites = [citation_out(c).model_dump() for c in ev.data]
                    if streamed:
                        for c in cites:
                            yield "citation", c
                    else:
                        held.extend(cites)
                elif ev.kind == "final":
                    if not streamed:  # readers that write no tokens (extractive) still send the text as a delta
                        yield "delta", {"text": ev.data.text}
                        for c in held:
                            yield "citation", c
                    yield "done", answer_out(ev.data, col.version)
        finally:
            await events.aclose()

    # --- demo ---------------------------------------------------------------------------
    async def ensure_demo(self, tenant: str) -> None:
        """Open the demo collection of ``tenant``, building it (synthetic reports) when absent."""
        from ctxroute.retrievers.demo import ensure_demo_collection

        await asyncio.to_thread(ensure_demo_collection, self._store(tenant), embedder=self.embedder)
        await asyncio.to_thread(self.collection, tenant, "demo")  # loaded before /readyz says ready


__all__ = ["Backend", "QueryOptions", "answer_out", "decision_out"]
