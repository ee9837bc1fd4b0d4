from __future__ import annotations

import json
from pathlib import Path

import pytest

from ctxroute.errors import InputError
from ctxroute.profiles import generic_profile, get_profile, load_profiles

REQUIRED = [
    "gpt-4o", "gpt-4o-mini", "gpt-4.1", "claude-3-5-sonnet", "claude-3-5-haiku", "gemini-1.5-pro",
    "qwen2.5-7b-instruct", "qwen2.5-72b-instruct", "llama-3.1-8b-instruct", "llama-3.1-70b-instruct",
    "mistral-nemo", "smollm2-135m-instruct",
]


def test_builtin_profiles_are_consistent() -> None:
    profiles = load_profiles()
    assert set(REQUIRED) <= set(profiles)
    for p in profiles.values():
        assert 0 < p.usable_window <= p.context_window
        assert p.price_in_per_1k >= 0 and p.price_out_per_1k >= 0
    smol = profiles["smollm2-135m-instruct"]
    assert (smol.context_window, smol.size_class, smol.price_in_per_1k) == (8192, "tiny", 0.0)
    assert profiles["gpt-4o"].cost(1000, 1000) == pytest.approx(0.0025 + 0.01)


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
        {"name": "my-model", "context_window": 40000, "aliases": ["mine"]},
        {"name": "gpt-4o", "context_window": 128000, "usable_window": 100000, "price_in_per_1k": 0.001},
    ]}))
    yml = tmp_path / "more.yaml"
    yml.write_text("- name: Yaml-Model\n  context_window: 1000\n  usable_window: 900\n  size_class: tiny\n")
    profiles = load_profiles([js, yml])
    assert profiles["my-model"].usable_window == 10000
    assert profiles["gpt-4o"].usable_window == 100000
    assert profiles["yaml-model"].size_class == "tiny"
    assert get_profile("mine", js).name == "my-model"
    assert "my-model" not in load_profiles()  # built-ins untouched


@pytest.mark.parametrize(
    "content, needle",
    [
        ('[{"name": "x"}]', "context_window"),
        ('[{"name": "x", "context_window": 100, "usable_window": 200}]', "usable_window"),
        ('[{"name": "x", "context_window": 100, "windw": 3}]', "windw"),
        ('[{"name": "x", "context_window": 100, "size_class": "huge"}]', "huge"),
        ("{not json", "not valid"),
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
