from __future__ import annotations

import asyncio
import json
import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ctxroute.errors import InputError
from ctxroute.pipelines.citations import verify_citations
from ctxroute.pipelines.llm.base import LLMRequest
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.pipelines.map_reduce import MapReduce, MapReduceConfig, parse_record
from ctxroute.types import ModelProfile
from tests.pipelines.test_strategies import collection, sid_of, store  # noqa: F401  (fixtures)

PROFILE = ModelProfile(name="small", context_window=4000, usable_window=1200, size_class="small")


def test_parse_plain_json() -> None:
    r = parse_record('{"facts": [{"text": "margin 12.4%", "sentences": ["S3", "S4"]}], "rationale": "r", '
                     '"answer": "12.4%", "confidence": 4}', 0)
    assert r.facts[0].sentence_ids == ("S3", "S4") and r.answer == "12.4%" and r.confidence == 4 and not r.warning


@pytest.mark.parametrize(
    "reply",
    [
        "```json\n{\"facts\": [{\"text\": \"a\", \"sentences\": [\"S1\"]}], \"answer\": \"x\", \"confidence\": 3}\n```",
        "Sure! Here it is: {\"facts\": [{\"text\": \"a\", \"sentences\": \"S1\"}], \"answer\": \"x\", \"confidence\": \"3\"} hope it helps",
        "{'facts': [{'text': 'a', 'sentences': ['S1']}], 'answer': 'x', 'confidence': 3,}",
        "{\"facts\": [\"a [S1]\"], \"answer\": \"x\", \"confidence\": 3, \"ok\": true}",
    ],
)
def test_parse_tolerates_fences_trailing_text_and_single_quotes(reply: str) -> None:
    r = parse_record(reply, 2)
    assert r.group == 2 and r.facts[0].sentence_ids == ("S1",) and r.answer == "x" and r.confidence == 3
    assert not r.no_information and not r.warning


def test_parse_missing_fields_no_information_and_plain_text() -> None:
    assert parse_record('{"answer": "only this"}', 0).confidence == 0 and parse_record('{"answer": "y"}', 0).facts == ()
    assert parse_record("NO_INFORMATION", 1).no_information
    assert parse_record('{"answer": "NO_INFORMATION", "confidence": 0}', 1).no_information
    assert parse_record("", 1).no_information
    plain = parse_record("The margin was 12% [S4] I think", 3)
    assert plain.confidence == 0 and plain.warning and plain.facts[0].sentence_ids == ("S4",)
    assert parse_record('{"confidence": 99, "facts": "b [S2]"}', 0).confidence == 5


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_parse_never_crashes(text: str) -> None:
    r = parse_record(text, 0)
    assert 0 <= r.confidence <= 5


def _map_reply(request: LLMRequest) -> str:
    user = request.messages[-1].content
    if "operating margin of 12.4%" in user:
        return json.dumps({"facts": [{"text": "Northern margin 12.4% in 2031",
                                      "sentences": [sid_of(user, "operating margin of 12.4%")]}],
                           "rationale": "states the margin", "answer": "12.4%", "confidence": 5})
    if "Western division" in user:  # a conflicting, low-confidence partial answer
        return json.dumps({"facts": [{"text": "margin maybe 9%", "sentences": [sid_of(user, "Western office")]}],
                           "answer": "9%", "confidence": 1})
    return "NO_INFORMATION"


def _reduce_reply(request: LLMRequest) -> str:
    notes = request.messages[-1].content
    # the highest-confidence note comes first; cite the ids it lists
    first = re.search(r"Note 1 \(part \d+, confidence ([\d.]+)/5\):\n- [^\n]*\[(S\d+)\]", notes)
    assert first and float(first.group(1)) == 5
    return f"The Northern division's operating margin was 12.4% in 2031 [{first.group(2)}]."


async def test_map_reduce_conflict_higher_confidence_wins_and_ids_survive(collection) -> None:  # noqa: F811
    llm = ScriptedLLM(rules=[("final answer", _reduce_reply), ("extract what is relevant", _map_reply)],
                      profile=PROFILE)
    mr = MapReduce(llm, MapReduceConfig(map_max_tokens=150, reduce_max_tokens=150, max_concurrency=2))
    result = await mr.run("What was the operating margin of the Northern division?", collection)
    stages = [u.stage for u in result.usage]
    assert stages[-1] == "mr.reduce" and sum(s.startswith("mr.map[") for s in stages) >= 2
    v = verify_citations(result.text, result.sentence_map)
    assert [c.quote for c in v.citations] == ["The Northern division reported an operating margin of 12.4% in 2031."]
    reduce_prompt = llm.requests[-1].messages[-1].content
    assert "confidence 5/5" in reduce_prompt and "confidence 1/5" in reduce_prompt
    assert "Cited sentences:" in reduce_prompt and "operating margin of 12.4% in 2031." in reduce_prompt
    for request in llm.requests[:-1]:  # every map prompt fits the usable window
        assert llm.count_tokens("\n".join(m.content for m in request.messages)) + request.max_tokens <= 1200


async def test_all_no_information_abstains_without_reduce(collection) -> None:  # noqa: F811
    llm = ScriptedLLM(default="NO_INFORMATION", profile=PROFILE)
    result = await MapReduce(llm, MapReduceConfig(map_max_tokens=100)).run("Who won the 1990 chess cup?", collection)
    assert result.abstained and "NO_INFORMATION" in result.abstain_reason
    assert all(u.stage.startswith("mr.map") for u in result.usage)


async def test_bounded_concurrency(collection) -> None:  # noqa: F811
    active = 0
    peak = 0

    class Slow(ScriptedLLM):
        async def complete(self, request):  # type: ignore[no-untyped-def]
            nonlocal active, peak
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.01)
            try:
                return await super().complete(request)
            finally:
                active -= 1

    llm = Slow(default="NO_INFORMATION", profile=PROFILE)
    await MapReduce(llm, MapReduceConfig(max_concurrency=2, map_max_tokens=100)).run("office", collection)
    assert len(llm.requests) >= 3 and peak == 2


async def test_chain_mode_passes_notes_forward(collection) -> None:  # noqa: F811
    llm = ScriptedLLM(rules=[("final answer", _reduce_reply), ("extract what is relevant", _map_reply)],
                      profile=PROFILE)
    result = await MapReduce(llm, MapReduceConfig(mode="chain", map_max_tokens=150)).run(
        "What was the operating margin of the Northern division?", collection)
    chain_prompts = [r.messages[-1].content for r in llm.requests if r.stage.startswith("mr.chain")]
    assert len(chain_prompts) >= 2
    first_with_info = next(i for i, p in enumerate(chain_prompts) if "operating margin of 12.4%" in p)
    assert "Notes from the previous parts" in chain_prompts[first_with_info + 1]
    assert "Northern margin 12.4%" in chain_prompts[first_with_info + 1]
    assert verify_citations(result.text, result.sentence_map).citations


async def test_collapse_when_notes_exceed_the_window(collection) -> None:  # noqa: F811
    long_fact = "office detail " * 50

    def map_reply(request: LLMRequest) -> str:
        user = request.messages[-1].content
        sid = re.search(r"\[(S\d+)\]", user).group(1)
        return json.dumps({"facts": [{"text": long_fact, "sentences": [sid]}], "answer": "a", "confidence": 2})

    llm = ScriptedLLM(
        rules=[("final answer", "Offices kept records [S1]."),
               ("merge notes", json.dumps({"facts": [{"text": "merged", "sentences": ["S1"]}], "confidence": 3})),
               ("extract what is relevant", map_reply)],
        profile=ModelProfile(name="s", context_window=4000, usable_window=900, size_class="small"),
    )
    result = await MapReduce(llm, MapReduceConfig(map_max_tokens=150, reduce_max_tokens=100)).run("offices", collection)
    stages = [u.stage for u in result.usage]
    assert any(s.startswith("mr.collapse") for s in stages) and stages[-1] == "mr.reduce"


def test_bad_config() -> None:
    with pytest.raises(InputError):
        MapReduce(ScriptedLLM(), MapReduceConfig(max_concurrency=0))
    with pytest.raises(InputError):
        MapReduce(ScriptedLLM(), MapReduceConfig(mode="tree"))  # type: ignore[arg-type]


async def test_map_groups_split_for_a_hungrier_tokenizer(collection) -> None:  # noqa: F811
    from tests.pipelines.test_strategies import InflatedLLM

    llm = InflatedLLM(default="NO_INFORMATION", profile=PROFILE)
    await MapReduce(llm, MapReduceConfig(map_max_tokens=100)).run("office", collection)
    for request in llm.requests:  # no ContextWindowExceeded: every map prompt fits by the model's own count
        assert llm.count_tokens("\n".join(m.content for m in request.messages)) + 100 <= PROFILE.usable_window
