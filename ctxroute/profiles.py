"""Model profiles: what each LLM's window, usable window, prices and tokenizer are (layer 0).

Built-in profiles ship in ``ctxroute/data/model_profiles.json``. Users add or override
profiles with their own JSON or YAML file (the edges read ``CTXROUTE_MODEL_PROFILES`` and
pass the path here). A file is either a list of profiles or ``{"profiles": [...]}``; each
profile needs ``name`` and ``context_window``; ``usable_window`` defaults to
``default_usable_fraction`` (0.5) of the window. Unknown names are an error unless the caller
explicitly asks for a generic fallback.
"""
from __future__ import annotations

import dataclasses
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
_EXTRA_KEYS = {"aliases", "note"}
# dated snapshots and tags that name the same model: gpt-4o-2024-08-06, claude-3-5-haiku-20241022
_SNAPSHOT = re.compile(r"(-\d{4}-\d{2}-\d{2}|-\d{8}|-latest|:latest)$")


def normalize_name(name: str) -> str:
    """Lower-case, strip whitespace: the form profile names are matched in."""
    return name.strip().lower()


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
    for key in ("price_in_per_1k", "price_out_per_1k"):
        price = fields.get(key, 0.0)
        if not isinstance(price, (int, float)) or price < 0:
            raise InputError(f"{source}: profile {fields['name']!r}: {key} must be a number >= 0, got {price!r}", source=source)
        fields[key] = float(price)
    aliases = tuple(normalize_name(str(a)) for a in raw.get("aliases", ()))
    return ModelProfile(**fields), aliases


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
    """The profile called ``name`` (case-insensitive; aliases, ``org/`` prefixes and dated
    snapshots such as ``gpt-4o-2024-08-06`` resolve to their base model).

    An unknown name raises :class:`InputError` listing the known names, unless
    ``allow_generic`` asks for :func:`generic_profile` instead.
    """
    profiles, aliases = _load(extra)
    wanted = normalize_name(name)
    candidates = [wanted, _SNAPSHOT.sub("", wanted)]
    candidates += [c.rsplit("/", 1)[-1] for c in candidates if "/" in c]
    for cand in candidates:
        if cand in profiles:
            return profiles[cand]
        if cand in aliases:
            return profiles[aliases[cand]]
    if allow_generic:
        return generic_profile(name)
    raise InputError(
        f"unknown model profile {name!r}; known profiles: {', '.join(sorted(profiles))}. "
        f"Pick one with CTXROUTE_LLM_PROFILE or describe your model in a JSON/YAML file named by CTXROUTE_MODEL_PROFILES",
        name=name,
    )
