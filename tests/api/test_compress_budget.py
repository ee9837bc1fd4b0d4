"""A request's compressed-lc budget (``compress``: ratio and/or max_tokens) on a real server: the
route preview's estimate follows it, the prompt sent to the model holds it, the answer cache keeps
one entry per budget, and bad budgets are 422s."""
from __future__ import annotations

import re

import httpx

from ctxroute.api.backend import QueryOptions
from ctxroute.api.models import CompressIn
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.retrievers.tokens import get_counter
from tests.api.conftest import DOCS, upload

Q = "Who is the harbour master, and what is the turbine rated at?"


def _answer(request) -> str:  # type: ignore[no-untyped-def]
    ids = re.findall(r"^\[(S\d+)\]", request.messages[-1].content, flags=re.MULTILINE)
    return f"See the kept sentences [{ids[0]}]." if ids else "Not in the documents."


def _context(request) -> str:  # type: ignore[no-untyped-def]
    blocks = re.findall(r"<document[^>]*>(.*?)</document>", request.messages[-1].content, flags=re.DOTALL)
    return "\n".join(blocks)


def test_cache_part_changes_only_with_a_budget():
    assert QueryOptions(compress=None).cache_part() == QueryOptions(compress=CompressIn()).cache_part() == QueryOptions().cache_part()
    a = QueryOptions(compress=CompressIn(ratio=0.2)).cache_part()
    b = QueryOptions(compress=CompressIn(max_tokens=60)).cache_part()
    assert len({a, b, QueryOptions().cache_part()}) == 3


def test_request_budget_reaches_estimate_prompt_and_cache(settings_factory, live_server):
    llm = ScriptedLLM(default=_answer)
    server = live_server(settings_factory(reader="llm"), llm=llm)
    count = get_counter().count
    with httpx.Client(base_url=server.url, timeout=60) as c:
        assert c.post("/v1/collections", json={"name": "field"}).status_code == 201
        assert upload(c, "field", DOCS).status_code == 201
        sizes: list[float] = []

        def estimate(body: dict) -> int:  # type: ignore[type-arg]
            r = c.post("/v1/collections/field/route", json={"question": Q, "route": "compressed-lc", **body})
            assert r.status_code == 200, r.text
            sizes.append(r.json()["decision"]["features"]["total_tokens"])
            est = {e["route"]: e for e in r.json()["decision"]["estimates"]}
            return est["compressed-lc"]["prompt_tokens"]

        default, fifth, capped = estimate({}), estimate({"compress": {"ratio": 0.2}}), estimate({"compress": {"max_tokens": 30}})
        total = int(sizes[0])
        assert total > 100 and len(set(sizes)) == 1
        q = default - int(0.35 * total)  # question + fixed prompt overhead
        assert fifth == int(0.2 * total) + q and capped == 30 + q
        assert estimate({"compress": {"ratio": 0.2, "max_tokens": 30}}) == min(30, int(0.2 * total)) + q

        answers = {}
        for name, body in (("default", {}), ("capped", {"compress": {"max_tokens": 30}})):
            n = len(llm.requests)
            r = c.post("/v1/collections/field/query", json={"question": Q, "route": "compressed-lc", **body})
            assert r.status_code == 200, r.text
            assert r.json()["route_taken"] == "compressed-lc" and not r.json()["cached"]
            sent = llm.requests[n:]
            assert len(sent) == 1
            answers[name] = count(_context(sent[0]))
        # the capped prompt holds its 30 tokens of sentences (ids, markers and document lines besides)
        assert answers["capped"] < answers["default"]
        lines = [ln for ln in _context(llm.requests[-1]).splitlines() if ln.startswith("[")]
        assert any("omitted ...]" in ln for ln in lines) and any(ln.startswith("[S") for ln in lines)
        assert sum(count(ln) for ln in lines) <= 30 + len(lines)  # each line's newline aside, within the budget
        again = c.post("/v1/collections/field/query", json={"question": Q, "route": "compressed-lc", "compress": {"max_tokens": 30}})
        assert again.json()["cached"]
        other = c.post("/v1/collections/field/query", json={"question": Q, "route": "compressed-lc", "compress": {"max_tokens": 31}})
        assert not other.json()["cached"], "another budget is another cache entry"

        for bad in ({"ratio": 0}, {"ratio": 1.5}, {"ratio": "0.3"}, {"max_tokens": 0}, {"max_tokens": 2.5}, {"tokens": 9}):
            r = c.post("/v1/collections/field/query", json={"question": Q, "compress": bad})
            assert r.status_code == 422, (bad, r.text)
