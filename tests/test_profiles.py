from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from ctxroute.errors import InputError
from ctxroute.profiles import generic_profile, get_profile, load_profiles
from ctxroute.types import ModelProfile

REQUIRED = [
    "gpt-4-turbo", "gpt-4o", "gpt-4o-mini", "gpt-4.1", "gpt-4.1-mini", "gpt-4.1-nano", "o1", "o3", "o3-mini", "o4-mini",
    "claude-3-5-sonnet", "claude-3-5-haiku", "claude-3-7-sonnet", "claude-sonnet-4", "claude-opus-4", "claude-haiku-4-5",
    "gemini-1.5-pro", "gemini-1.5-flash", "gemini-2.0-flash", "gemini-2.5-pro", "gemini-2.5-flash",
    "qwen2.5-7b-instruct", "qwen2.5-72b-instruct", "llama-3.1-8b-instruct", "llama-3.1-70b-instruct",
    "llama-3.1-405b-instruct", "llama-3.3-70b-instruct", "mistral-nemo", "mistral-large", "smollm2-135m-instruct",
]
# effective lengths from the RULER README table (longest length above the Llama-2-7B 4k baseline)
RULER_USABLE = {
    "gpt-4-turbo": 65536,  # GPT-4-1106-preview: 64K
    "llama-3.1-8b-instruct": 32768,  # 32K
    "llama-3.1-70b-instruct": 65536,  # 64K
    "qwen2.5-72b-instruct": 32768,  # Qwen2-72B: 32K
    "mistral-nemo": 16000,  # 16K
    "mistral-large": 65536,  # Mistral-Large-2411: 64K
    "mistral-large-2407": 32768,  # Mistral-Large-2407: 32K
}


def test_builtin_profiles_are_consistent() -> None:
    profiles = load_profiles()
    assert set(REQUIRED) <= set(profiles)
    for p in profiles.values():
        assert 0 < p.usable_window <= p.context_window
        assert p.price_in_per_1k >= 0 and p.price_out_per_1k >= 0
    smol = profiles["smollm2-135m-instruct"]
    assert (smol.context_window, smol.size_class, smol.price_in_per_1k) == (8192, "tiny", 0.0)
    assert profiles["gpt-4o"].cost(1000, 1000) == pytest.approx(0.0025 + 0.01)
    assert profiles["gpt-4-turbo"].cost(1000, 1000) == pytest.approx(0.01 + 0.03)


def test_every_builtin_profile_cites_its_sources() -> None:
    for p in load_profiles().values():
        assert "http" in p.source, p.name  # a model card or pricing page
        if p.name in RULER_USABLE:
            assert "RULER" in p.source and p.usable_window == RULER_USABLE[p.name], p.name
        elif "RULER" not in p.source:  # not measured: half the window, or a stated conservative choice
            half = p.usable_window == p.context_window // 2 and "half the window" in p.source
            assert half or "conservative" in p.source or p.size_class == "tiny", p.name


@pytest.mark.parametrize(
    "name, expected",
    [
        ("gpt-4-turbo", "gpt-4-turbo"),
        ("openai/gpt-4-turbo", "gpt-4-turbo"),
        ("gpt-4-turbo-2024-04-09", "gpt-4-turbo"),
        ("gpt-4-1106-preview", "gpt-4-turbo"),
        ("gpt-4-0125-preview", "gpt-4-turbo"),
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-mini-2025-04-14", "gpt-4.1-mini"),
        ("o3-mini-2025-01-31", "o3-mini"),
        ("claude-3-5-sonnet-20241022", "claude-3-5-sonnet"),
        ("anthropic/claude-3.5-sonnet", "claude-3-5-sonnet"),
        ("anthropic.claude-3-5-sonnet-20241022-v2:0", "claude-3-5-sonnet"),
        ("claude-3-5-sonnet-v2@20241022", "claude-3-5-sonnet"),
        ("claude-3-7-sonnet-20250219", "claude-3-7-sonnet"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-opus-4-20250514", "claude-opus-4"),
        ("models/gemini-1.5-pro-002", "gemini-1.5-pro"),
        ("gemini-2.5-pro-preview-05-06", "gemini-2.5-pro"),
        ("gemini-2.0-flash-001", "gemini-2.0-flash"),
        ("meta-llama/Llama-3.1-70B-Instruct", "llama-3.1-70b-instruct"),
        ("meta-llama/Meta-Llama-3.1-405B-Instruct-Turbo", "llama-3.1-405b-instruct"),
        ("llama3.1:70b-instruct-q4_K_M", "llama-3.1-70b-instruct"),
        ("meta-llama/llama-3.3-70b-instruct:free", "llama-3.3-70b-instruct"),
        ("Qwen/Qwen2.5-72B-Instruct", "qwen2.5-72b-instruct"),
        ("qwen2.5:7b", "qwen2.5-7b-instruct"),
        ("mistral-large-latest", "mistral-large"),
        ("mistral-large-2411", "mistral-large"),
        ("mistral-large-2407", "mistral-large-2407"),  # its own RULER length, not 2411's
        ("open-mistral-nemo", "mistral-nemo"),
    ],
)
def test_forgiving_names_resolve_to_their_model(name: str, expected: str) -> None:
    assert get_profile(name).name == expected


@pytest.mark.parametrize(
    "name",
    ["gpt-4", "gpt-4-0613", "gpt-4-32k", "o1-preview", "gpt-3.5-turbo-0125", "gemini-1.5-flash-8b",
     "qwen2-57b-instruct", "claude-3-opus-20240229", "llama-3.2-3b-instruct", "mistral-small-latest"],
)
def test_names_of_other_models_never_map_to_a_similar_profile(name: str) -> None:
    with pytest.raises(InputError):
        get_profile(name)


def test_unknown_name_error_says_how_to_pass_a_window() -> None:
    with pytest.raises(InputError) as info:
        get_profile("gpt-4")
    msg = str(info.value)
    assert "gpt-4-turbo" in msg and "gpt-4o" in msg and "Similar names" in msg
    assert "CTXROUTE_LLM_PROFILE=generic" in msg and "CTXROUTE_MODEL_PROFILES" in msg and "context_window" in msg
    assert get_profile("generic") == generic_profile("generic")


def test_profiles_round_trip_through_json() -> None:
    for p in load_profiles().values():
        back = ModelProfile(**json.loads(json.dumps(dataclasses.asdict(p))))
        assert back == p and back.source == p.source and back.aliases == p.aliases
    assert "gpt-4-1106-preview" in get_profile("gpt-4-turbo").aliases


def test_lookup_resolves_case_aliases_prefixes_and_snapshots() -> None:
    assert get_profile("GPT-4o").name == "gpt-4o"
    assert get_profile("gpt-4o-2024-08-06").name == "gpt-4o"
    assert get_profile("gpt-4o-mini").name == "gpt-4o-mini"
    assert get_profile("meta-llama/Llama-3.1-8B-Instruct").name == "llama-3.1-8b-instruct"
    assert get_profile("Qwen/Qwen2.5-7B-Instruct").name == "qwen2.5-7b-instruct"
    assert get_profile("claude-3-5-haiku-20241022").name == "claude-3-5-haiku"


def test_unknown_name_raises_listing_known_names_unless_generic_requested() -> None:
    with pytest.raises(InputError) as info:
        get_profile("my-private-model")
    assert "my-private-model" in str(info.value) and "gpt-4o" in str(info.value)
    p = get_profile("my-private-model", allow_generic=True)
    assert p == generic_profile("my-private-model")
    assert (p.context_window, p.usable_window) == (8192, 4096)


def test_user_files_add_and_override(tmp_path: Path) -> None:
    js = tmp_path / "mine.json"
    js.write_text(json.dumps({"default_usable_fraction": 0.25, "profiles": [
        {"name": "my-model", "context_window": 40000, "aliases": ["mine"], "source": "our load test, 2026"},
        {"name": "gpt-4o", "context_window": 128000, "usable_window": 100000, "price_in_per_1k": 0.001},
    ]}))
    yml = tmp_path / "more.yaml"
    yml.write_text("- name: Yaml-Model\n  context_window: 1000\n  usable_window: 900\n  size_class: tiny\n")
    profiles = load_profiles([js, yml])
    assert profiles["my-model"].usable_window == 10000
    assert profiles["gpt-4o"].usable_window == 100000
    assert profiles["yaml-model"].size_class == "tiny"
    assert get_profile("mine", js).name == "my-model"
    assert get_profile("mine", js).source == "our load test, 2026"
    assert "my-model" not in load_profiles()  # built-ins untouched


@pytest.mark.parametrize(
    "content, needle",
    [
        ('[{"name": "x"}]', "context_window"),
        ('[{"name": "x", "context_window": 100, "usable_window": 200}]', "usable_window"),
        ('[{"name": "x", "context_window": 100, "windw": 3}]', "windw"),
        ('[{"name": "x", "context_window": 100, "size_class": "huge"}]', "huge"),
        ("{not json", "not valid"),
        ('[{"name": "x", "context_window": 100, "aliases": "y"}]', "aliases"),
        ('[{"name": "x", "context_window": 100, "source": 3}]', "source"),
    ],
)
def test_bad_user_files_name_the_problem(tmp_path: Path, content: str, needle: str) -> None:
    path = tmp_path / "bad.json"
    path.write_text(content)
    with pytest.raises(InputError) as info:
        load_profiles(path)
    assert needle in str(info.value)


def test_missing_file_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError) as info:
        load_profiles(tmp_path / "absent.json")
    assert "absent.json" in str(info.value)


def test_cli_lists_builtin_and_user_profiles(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from ctxroute.cli import app

    mine = tmp_path / "mine.json"
    mine.write_text(json.dumps([{"name": "house-model", "context_window": 16000}]))
    monkeypatch.setenv("CTXROUTE_MODEL_PROFILES", str(mine))
    result = CliRunner().invoke(app, ["llm", "profiles", "--json"])
    assert result.exit_code == 0, result.output
    names = {p["name"] for p in json.loads(result.output)}
    assert {"house-model", "gpt-4o", "smollm2-135m-instruct"} <= names
    monkeypatch.setenv("CTXROUTE_MODEL_PROFILES", str(tmp_path / "missing.yaml"))
    failed = CliRunner().invoke(app, ["llm", "profiles"])
    assert failed.exit_code == 1 and "missing.yaml" in failed.output


def test_local_model_profile_matches_the_builtin_file() -> None:
    from ctxroute.pipelines.llm.local import LOCAL_PROFILE
    from ctxroute.pipelines.llm.scripted import SCRIPTED_PROFILE

    assert get_profile("smollm2-135m-instruct") == LOCAL_PROFILE
    assert get_profile("HuggingFaceTB/SmolLM2-135M-Instruct") == LOCAL_PROFILE
    assert SCRIPTED_PROFILE.usable_window <= SCRIPTED_PROFILE.context_window
