"""One error shape and the mapping from library errors to statuses; timeouts and token budgets."""
from __future__ import annotations

import httpx
import pytest

from ctxroute import errors as E
from ctxroute.api.errors import BodyTooLarge, NotReady, RateLimited, TenantBudgetExhausted, status_of
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.retrievers.embedders import HashingEmbedder
from tests.api.conftest import DOCS, upload


@pytest.mark.parametrize("exc, status", [
    (E.InputError("x"), 400),
    (E.DocumentError("f.pdf", "broken"), 422),
    (E.InputTooLarge("x"), 413),
    (E.CollectionNotFound("c"), 404),
    (E.DocumentNotFound("d"), 404),
    (E.Conflict("x"), 409),
    (E.BudgetExceeded("x"), 429),
    (E.LLMRateLimited("x", retry_after=7), 429),
    (E.LLMServerError("x"), 502),
    (E.LLMAuthError("x"), 502),
    (E.LLMTimeout("x"), 504),
    (E.ContextWindowExceeded("x"), 502),
    (NotReady("x"), 503),
    (E.StoreUnavailable("x"), 503),
    (RateLimited("x", retry_after=3), 429),
    (TenantBudgetExhausted("x", retry_after=3), 429),
    (BodyTooLarge(10), 413),
    (E.CtxrouteError("x"), 500),
])
def test_status_mapping(exc, status):
    assert status_of(exc) == status


class _ExplodingEmbedder(HashingEmbedder):
    """Embeds documents, then fails on a query with an internal detail in the message."""

    armed = False

    def embed(self, texts):  # type: ignore[no-untyped-def]
        if self.armed:
            raise RuntimeError("secret internals: /etc/ctxroute/pepper")
        return super().embed(texts)


def test_unknown_error_is_500_without_internals(settings_factory, live_server):
    embedder = _ExplodingEmbedder()
    server = live_server(settings_factory(), embedder=embedder)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/v1/collections", json={"name": "boom"})
        assert upload(c, "boom", DOCS).status_code == 201
        embedder.armed = True
        r = c.post("/v1/collections/boom/query", json={"question": "Who is the harbour master?"})
        assert r.status_code == 500
        body = r.json()
        assert set(body) == {"code", "message", "request_id"} and body["code"] == "internal_error"
        assert "secret" not in r.text and "RuntimeError" not in r.text and "Traceback" not in r.text
        assert body["request_id"] in body["message"]
        # a stream ends with an error event of the same shape
        with c.stream("POST", "/v1/collections/boom/query", json={"question": "Who founded it?", "stream": True}) as s:
            text = "".join(s.iter_text())
        assert "event: error" in text and "secret" not in text and "internal_error" in text
        embedder.armed = False
        assert c.post("/v1/collections/boom/query", json={"question": "Who is the harbour master?"}).status_code == 200


def test_request_timeout(settings_factory, live_server):
    llm = ScriptedLLM(default="Too slow [S1].", latency_s=3.0)
    server = live_server(settings_factory(reader="llm", request_timeout_s=0.5), llm=llm)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/v1/collections", json={"name": "slow"})
        upload(c, "slow", DOCS)
        r = c.post("/v1/collections/slow/query", json={"question": "Who is the harbour master?", "route": "rag"})
        assert r.status_code == 504 and "CTXROUTE_REQUEST_TIMEOUT_S" in r.json()["message"]
        with c.stream("POST", "/v1/collections/slow/query",
                      json={"question": "Who is the harbour master?", "route": "rag", "stream": True}) as s:
            text = "".join(s.iter_text())
        assert text.startswith("event: decision") and "event: error" in text and '"code":"timeout"' in text


def test_tenant_token_budget(settings_factory, live_server):
    llm = ScriptedLLM(default="The harbour master is Captain Ruth Okafor.")
    server = live_server(settings_factory(reader="llm", tenant_tokens_per_day=50), llm=llm)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/v1/collections", json={"name": "tok"})
        upload(c, "tok", DOCS)
        first = c.post("/v1/collections/tok/query", json={"question": "Who is the harbour master?", "route": "rag"})
        assert first.status_code == 200 and first.json()["usage"]["prompt_tokens"] > 50
        # a cached answer costs no tokens and is still served
        assert c.post("/v1/collections/tok/query",
                      json={"question": "Who is the harbour master?", "route": "rag"}).json()["cached"]
        r = c.post("/v1/collections/tok/query", json={"question": "Where is fuel sold?", "route": "rag"})
        assert r.status_code == 429 and r.json()["code"] == "token_budget_exhausted"
        assert int(r.headers["retry-after"]) > 0
        metrics = c.get("/metrics").text
        prompt = [ln for ln in metrics.splitlines() if ln.startswith('ctxroute_llm_tokens_total{kind="prompt",tenant="default"}')]
        assert float(prompt[0].split()[-1]) == first.json()["usage"]["prompt_tokens"]



def test_llm_failure_fallback_is_not_cached(settings_factory, live_server):
    llm = ScriptedLLM([E.LLMServerError("upstream 500", status=500)],
                      default="The harbour master is Captain Ruth Okafor.")
    server = live_server(settings_factory(reader="llm"), llm=llm)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/v1/collections", json={"name": "fb"})
        upload(c, "fb", DOCS)
        q = {"question": "Who is the harbour master?", "route": "rag"}
        first = c.post("/v1/collections/fb/query", json=q).json()
        assert first["route_taken"] == "extractive" and first["fallbacks_taken"]
        assert any("LLM call failed" in w for w in first["warnings"])
        second = c.post("/v1/collections/fb/query", json=q).json()
        assert not second["cached"] and second["route_taken"] == "rag"
        assert c.post("/v1/collections/fb/query", json=q).json()["cached"]


def test_non_finite_numbers_stay_valid_json():
    import json

    from ctxroute.api.backend import decision_out
    from ctxroute.types import Route, RouteEstimate, RoutingDecision

    d = RoutingDecision(Route.RAG, ("r",), {"margin": float("nan"), "qtype": "lookup", "n": 3},
                        estimates=(RouteEstimate(Route.LC, 10, float("inf"), feasible=False),))
    out = decision_out(d).model_dump()
    json.dumps(out, allow_nan=False)  # what JSONResponse does
    assert out["features"] == {"margin": None, "qtype": "lookup", "n": 3.0}


def test_budget_that_no_route_fits_is_429(settings_factory, live_server):
    llm = ScriptedLLM(default="The harbour master is Captain Ruth Okafor.")
    server = live_server(settings_factory(reader="llm"), llm=llm)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/v1/collections", json={"name": "bud"})
        upload(c, "bud", DOCS)
        body = {"question": "Who is the harbour master?", "budget": {"max_tokens": 5}}
        preview = c.post("/v1/collections/bud/route", json=body)
        r = c.post("/v1/collections/bud/query", json=body)
    for resp in (preview, r):
        assert resp.status_code == 429, resp.text
        assert resp.json()["code"] == "budget_exceeded" and "Retry-After" in resp.headers
        assert "5" in resp.json()["message"]
    assert not llm.requests, "no LLM call may be made when no route fits the budget"
