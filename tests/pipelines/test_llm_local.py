"""LocalLLM with the real SmolLM2-135M (slow: loads the model once per session)."""
from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from ctxroute.errors import ContextWindowExceeded
from ctxroute.pipelines.llm.base import LLMClient, LLMRequest, StreamDelta, StreamEnd
from ctxroute.pipelines.llm.local import LOCAL_PROFILE, LocalLLM, find_gguf

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def smollm() -> LocalLLM:
    cache = os.environ.get("CTXROUTE_CACHE_DIR")
    llm = LocalLLM(cache_dir=Path(cache) / "models" if cache else None)  # as build_llm does
    llm.load()
    return llm


def test_constructor_is_cheap_and_gguf_is_found(tmp_path: Path) -> None:
    llm = LocalLLM(cache_dir=tmp_path)
    assert not llm.loaded and not any(tmp_path.iterdir())
    assert isinstance(llm, LLMClient)
    assert find_gguf().stat().st_size > 50_000_000
    assert llm.profile == LOCAL_PROFILE and llm.profile.context_window == 8192


def test_load_leaves_a_complete_converted_copy(smollm: LocalLLM) -> None:
    info = smollm.load()
    assert smollm.loaded and info.model_dir == smollm.model_dir
    assert {"config.json", "model.safetensors", "tokenizer.json"} <= {p.name for p in smollm.model_dir.iterdir()}
    assert not [p for p in smollm.cache_dir.iterdir() if p.name.startswith(".")]  # no temp dirs left


def test_warm_load_from_the_converted_copy_is_fast(smollm: LocalLLM) -> None:
    smollm.load()  # make sure the converted copy exists
    again = LocalLLM(cache_dir=smollm.cache_dir)
    info = again.load()
    assert not info.converted and info.seconds < 10


async def test_complete_short_prompt(smollm: LocalLLM) -> None:
    request = LLMRequest.of("You are a helpful assistant. Answer in one short sentence.", "What is the capital of France?", max_tokens=24)
    r = await smollm.complete(request)
    assert "paris" in r.text.lower()
    assert 0 < r.completion_tokens <= 24 and r.prompt_tokens > smollm.count_tokens("What is the capital of France?")
    assert r.model == "smollm2-135m-instruct"


async def test_stream_matches_completion_and_keeps_loop_free(smollm: LocalLLM) -> None:
    request = LLMRequest.of("Answer briefly.", "Name a large animal.", max_tokens=16)
    ticks = 0

    async def ticker() -> None:
        nonlocal ticks
        while True:
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    items = [i async for i in smollm.stream(request)]
    task.cancel()
    deltas = [i.text for i in items if isinstance(i, StreamDelta)]
    end = items[-1]
    assert isinstance(end, StreamEnd) and len(deltas) >= 2
    assert "".join(deltas) == end.response.text
    assert ticks > 5  # the event loop kept running during generation
    assert (await smollm.complete(request)).text == end.response.text  # greedy: deterministic


async def test_stop_strings_and_max_tokens(smollm: LocalLLM) -> None:
    r = await smollm.complete(LLMRequest.of("Answer briefly.", "Count from one to twenty in words, separated by commas.", max_tokens=40, stop=(",",)))
    assert "," not in r.text and r.finish_reason == "stop"
    r2 = await smollm.complete(LLMRequest.of("You write long essays.", "Write an essay about the history of Rome.", max_tokens=5))
    assert r2.completion_tokens == 5 and r2.finish_reason == "length"


def test_count_tokens_matches_tokenizer(smollm: LocalLLM) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(smollm.model_dir)
    text = "Retrieval-augmented generation routes questions over long documents."
    assert smollm.count_tokens(text) == len(tok(text, add_special_tokens=False)["input_ids"]) > 5
    assert smollm.count_tokens("") == 0


async def test_prompt_over_the_window(smollm: LocalLLM) -> None:
    with pytest.raises(ContextWindowExceeded) as info:
        await smollm.complete(LLMRequest.of("s", "word " * 9000, max_tokens=10))
    assert info.value.window == 8192 and info.value.prompt_tokens > 8192


async def test_abandoned_stream_stops_generation(smollm: LocalLLM) -> None:
    stream = smollm.stream(LLMRequest.of("You write long essays.", "Write a long essay about the sea.", max_tokens=400))
    first = await stream.__anext__()
    assert isinstance(first, StreamDelta)
    await stream.aclose()  # the worker sees the cancel flag and ends long before 400 tokens
    r = await asyncio.wait_for(smollm.complete(LLMRequest.of("Answer briefly.", "Say yes.", max_tokens=3)), timeout=120)
    assert r.completion_tokens <= 3


async def test_generation_failure_surfaces_as_llm_error(smollm: LocalLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    from ctxroute.errors import LLMError

    def boom(*args: object, **kwargs: object) -> None:
        raise RuntimeError("out of memory (simulated)")

    monkeypatch.setattr(smollm.hf_model, "generate", boom)
    request = LLMRequest.of("s", "hello", max_tokens=5)
    with pytest.raises(LLMError, match="simulated"):
        await asyncio.wait_for(smollm.complete(request), timeout=30)
    with pytest.raises(LLMError, match="simulated"):
        await asyncio.wait_for(_drain(smollm, request), timeout=30)


async def _drain(llm: LocalLLM, request: LLMRequest) -> None:
    async for _ in llm.stream(request):
        pass
