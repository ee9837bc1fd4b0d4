"""Model profiles: what each LLM's window, usable window, prices and tokenizer are (layer 0).

Built-in profiles ship in ``ctxroute/data/model_profiles.json``. Users add or override
profiles with their own JSON or YAML file (the edges read ``CTXROUTE_MODEL_PROFILES`` and
pass the path here). A file is either a list of profiles or ``{"profiles": [...]}``; each
profile needs ``name`` and ``context_window``; ``usable_window`` defaults to
``default_usable_fraction`` (0.5) of the window; ``source`` says where the numbers come from and
``aliases`` lists other names of the same model.

Name matching is exact after a few safe rewrites (case, provider prefixes such as ``openai/`` or
``anthropic.``, dated snapshots, ``-latest``, quantisation tags, an ``-instruct`` suffix): it
never falls back to a similar-looking name, so ``gpt-4`` does not become ``gpt-4o``. Unknown
names are an error (listing the known names and close matches) unless the caller explicitly asks
for a generic fallback; the name ``generic`` itself gives :func:`generic_profile`.
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import re
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

from ctxroute.errors import InputError
from ctxroute.types import ModelProfile

DEFAULT_USABLE_FRACTION = 0.5
GENERIC_WINDOW = 8192
SIZE_CLASSES = ("tiny", "small", "medium", "large", "frontier")

_FIELDS = {f.name for f in dataclasses.fields(ModelProfile)}
_EXTRA_KEYS = {"note"}
GENERIC_NAME = "generic"
# suffixes that name a snapshot, deployment or quantisation of the same model; stripped one at a
# time from the end (each intermediate name is tried): gpt-4o-2024-08-06, claude-3-5-sonnet-20241022,
# claude-3-5-sonnet-v2@20241022, anthropic.claude-3-5-sonnet-20241022-v2:0, gemini-1.5-pro-002,
# gemini-2.5-pro-preview-05-06, mistral-large-2411, llama3.1:70b-instruct-q4_k_m, model:free
_SUFFIXES = re.compile(
    r"(?:[-@]\d{4}-?\d{2}-?\d{2}"  # -2024-08-06, -20241022, @20241022
    r"|-preview-\d{2}-\d{2}|-exp-\d{4}"  # gemini previews and experiments
    r"|-\d{4}"  # -2411, -0806 (the base name must still be a known profile)
    r"|-0\d\d"  # gemini -001/-002
    r"|-v\d+(?::\d+)?"  # bedrock / vertex revisions -v2:0, -v1
    r"|[-:](?:latest|free|beta|nitro|floor|extended)"
    r"|[-:.](?:awq|gptq|fp8|fp16|bf16|int4|int8|gguf|mlx|q\d(?:_k)?(?:_[sml])?|q\d_\d)"
    r"|-(?:versatile|instant))$"
)
# cloud-provider model-id prefixes: anthropic.claude-..., us.anthropic.claude-..., meta.llama...
_PROVIDER_DOT = re.compile(r"^(?:[a-z]{2}\.)?(?:anthropic|meta|mistral|amazon|cohere|google)\.")


def normalize_name(name: str) -> str:
    """Lower-case, strip whitespace, inner blanks as '-': the form profile names are matched in."""
    return re.sub(r"\s+", "-", name.strip().lower())


def name_candidates(name: str) -> list[str]:
    """The names ``name`` is looked up as, most specific first: itself, without a provider prefix,
    then with snapshot/deployment/quantisation suffixes stripped one by one, each also with and
    without an ``-instruct`` suffix. Pure string rewrites: nothing here guesses a family."""
    wanted = normalize_name(name)
    bases = [wanted]
    if "/" in wanted:
        bases.append(wanted.rsplit("/", 1)[-1])
    bases += [_PROVIDER_DOT.sub("", b) for b in bases if _PROVIDER_DOT.match(b)]
    out: list[str] = []
    for base in bases:
        cur = base
        while cur:
            out.append(cur)
            nxt = _SUFFIXES.sub("", cur)
            if nxt == cur:
                break
            cur = nxt
    more: list[str] = []
    for c in out:
        if c.endswith("-instruct"):
            more.append(c[: -len("-instruct")])
        elif not c.endswith(("-chat", "-it")):
            more.append(c + "-instruct")
    return list(dict.fromkeys(out + more))


def generic_profile(name: str, context_window: int = GENERIC_WINDOW) -> ModelProfile:
    """A conservative profile for a model nobody described: window 8,192, half of it usable."""
    return ModelProfile(
        name=name,
        context_window=context_window,
        usable_window=int(context_window * DEFAULT_USABLE_FRACTION),
        size_class="small",
    )


def _profile_from(raw: Mapping[str, Any], fraction: float, source: str) -> tuple[ModelProfile, tuple[str, ...]]:
    if not isinstance(raw, Mapping):
        raise InputError(f"{source}: each profile must be a mapping, got {type(raw).__name__}", source=source)
    unknown = set(raw) - _FIELDS - _EXTRA_KEYS
    if unknown:
        raise InputError(
            f"{source}: profile {raw.get('name')!r} has unknown keys {sorted(unknown)}; "
            f"allowed: {sorted(_FIELDS | _EXTRA_KEYS)}",
            source=source,
        )
    if "name" not in raw or "context_window" not in raw:
        raise InputError(f"{source}: profile {dict(raw)!r} needs at least 'name' and 'context_window'", source=source)
    fields = {k: v for k, v in raw.items() if k in _FIELDS}
    fields["name"] = normalize_name(str(fields["name"]))
    window = fields["context_window"]
    if not isinstance(window, int) or window <= 0:
        raise InputError(f"{source}: profile {fields['name']!r}: context_window must be a positive integer, got {window!r}", source=source)
    fields.setdefault("usable_window", int(window * fraction))
    usable = fields["usable_window"]
    if not isinstance(usable, int) or not 0 < usable <= window:
        raise InputError(
            f"{source}: profile {fields['name']!r}: usable_window must be an integer in 1..{window}, got {usable!r}",
            source=source,
        )
    if fields.get("size_class", "small") not in SIZE_CLASSES:
        raise InputError(
            f"{source}: profile {fields['name']!r}: size_class {fields['size_class']!r} is not one of {SIZE_CLASSES}",
            source=source,
        )
    if not isinstance(fields.get("source", ""), str):
        raise InputError(f"{source}: profile {fields['name']!r}: source must be a string, got {fields['source']!r}", source=source)
    raw_aliases = raw.get("aliases", ())
    if isinstance(raw_aliases, str) or not all(isinstance(a, str) for a in raw_aliases):
        raise InputError(f"{source}: profile {fields['name']!r}: aliases must be a list of names, got {raw_aliases!r}", source=source)
    fields["aliases"] = tuple(normalize_name(a) for a in raw_aliases)
    for key in ("price_in_per_1k", "price_out_per_1k"):
        price = fields.get(key, 0.0)
        if not isinstance(price, (int, float)) or price < 0:
            raise InputError(f"{source}: profile {fields['name']!r}: {key} must be a number >= 0, got {price!r}", source=source)
        fields[key] = float(price)
    return ModelProfile(**fields), fields["aliases"]


def _parse(data: Any, source: str) -> tuple[dict[str, ModelProfile], dict[str, str]]:
    fraction = DEFAULT_USABLE_FRACTION
    if isinstance(data, Mapping):
        fraction = float(data.get("default_usable_fraction", DEFAULT_USABLE_FRACTION))
        if not 0 < fraction <= 1:
            raise InputError(f"{source}: default_usable_fraction must be in (0, 1], got {fraction}", source=source)
        data = data.get("profiles")
    if not isinstance(data, list):
        raise InputError(f"{source}: expected a list of profiles or {{'profiles': [...]}}", source=source)
    profiles: dict[str, ModelProfile] = {}
    aliases: dict[str, str] = {}
    for raw in data:
        profile, names = _profile_from(raw, fraction, source)
        profiles[profile.name] = profile
        aliases.update((a, profile.name) for a in names)
    return profiles, aliases


def _read_file(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise InputError(f"cannot read model profiles file {str(path)!r}: {exc.strerror}; check CTXROUTE_MODEL_PROFILES", path=str(path)) from exc
    try:
        if path.suffix.lower() in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        return json.loads(text)
    except Exception as exc:  # json.JSONDecodeError, yaml.YAMLError
        raise InputError(f"model profiles file {str(path)!r} is not valid {path.suffix or 'JSON'}: {exc}", path=str(path)) from exc


@functools.lru_cache(maxsize=1)
def _builtin() -> tuple[dict[str, ModelProfile], dict[str, str]]:
    text = resources.files("ctxroute").joinpath("data/model_profiles.json").read_text(encoding="utf-8")
    return _parse(json.loads(text), "built-in model_profiles.json")


def _extras(extra: Path | Iterable[Path] | None) -> list[Path]:
    if extra is None:
        return []
    if isinstance(extra, (str, Path)):
        return [Path(extra)]
    return [Path(p) for p in extra]


def _load(extra: Path | Iterable[Path] | None) -> tuple[dict[str, ModelProfile], dict[str, str]]:
    base, base_aliases = _builtin()
    profiles, aliases = dict(base), dict(base_aliases)
    for path in _extras(extra):
        more, more_aliases = _parse(_read_file(path), str(path))
        profiles.update(more)
        aliases.update(more_aliases)
        for name in more:  # a user profile named like a built-in alias takes over that name
            aliases.pop(name, None)
    return profiles, aliases


def load_profiles(extra: Path | Iterable[Path] | None = None) -> dict[str, ModelProfile]:
    """Built-in profiles, then those of each ``extra`` file (later files override earlier)."""
    return _load(extra)[0]


def get_profile(name: str, extra: Path | Iterable[Path] | None = None, *, allow_generic: bool = False) -> ModelProfile:
    """The profile called ``name`` (case-insensitive; aliases, provider prefixes such as
    ``openai/`` and dated snapshots such as ``gpt-4o-2024-08-06`` resolve to their base model,
    see :func:`name_candidates`). ``generic`` gives :func:`generic_profile`.

    An unknown name raises :class:`InputError` listing the known names and how to describe the
    model, unless ``allow_generic`` asks for :func:`generic_profile` instead.
    """
    profiles, aliases = _load(extra)
    if normalize_name(name) == GENERIC_NAME and GENERIC_NAME not in profiles:
        return generic_profile(GENERIC_NAME)
    for cand in name_candidates(name):
        if cand in profiles:
            return profiles[cand]
        if cand in aliases:
            return profiles[aliases[cand]]
    if allow_generic:
        return generic_profile(name)
    raise InputError(unknown_profile_message(name, profiles, aliases), name=name)


def unknown_profile_message(name: str, profiles: Mapping[str, ModelProfile], aliases: Mapping[str, str]) -> str:
    """What to say about a model name no profile matches: close names, all known names, and how
    to pass a window."""
    key = name_candidates(name)[-1] if name.strip() else ""
    close = difflib.get_close_matches(normalize_name(name), list(profiles) + list(aliases), n=4, cutoff=0.75)
    close += difflib.get_close_matches(key, list(profiles), n=3, cutoff=0.75)
    close = list(dict.fromkeys(aliases.get(c, c) for c in close))
    hint = f" Similar names (NOT used automatically: a different model has a different window): {', '.join(close)}." if close else ""
    return (
        f"unknown model profile {name!r}.{hint} Known profiles: {', '.join(sorted(profiles))} "
        f"(`ctxroute llm profiles` lists them with windows and prices). If your model is one of these under another "
        f"name, set CTXROUTE_LLM_PROFILE to that profile; for a model without one set CTXROUTE_LLM_PROFILE=generic "
        f"(a conservative {GENERIC_WINDOW:,}-token window, half of it usable) or describe it in a JSON/YAML file named by "
        f"CTXROUTE_MODEL_PROFILES, e.g. "
        f'[{{"name": "my-model", "context_window": 131072, "usable_window": 32768, "price_in_per_1k": 0.0005}}]'
    )
