"""``LLMConfig`` (typed settings, read from the environment only at the edges) and
``build_llm`` (config -> a cached ``LLMClient``)."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Mapping

from ctxroute.errors import InputError
from ctxroute.pipelines.llm.base import LLMClient
from ctxroute.profiles import generic_profile, get_profile
from ctxroute.types import ModelProfile

BACKENDS = ("local", "openai", "scripted")
LOCAL_PROFILE = "smollm2-135m-instruct"


@dataclass(frozen=True)
class LLMConfig:
    """Which LLM to use and how. ``profile`` names a model profile (default: ``model``);
    ``profile="generic"`` explicitly accepts a conservative 8k profile for an unknown model."""

    backend: str = "local"
    base_url: str | None = None
    model: str | None = None
    api_key: str | None = field(default=None, repr=False)
    timeout_s: float = 120.0
    max_retries: int = 4
    profile: str | None = None
    redis_url: str | None = field(default=None, repr=False)
    cache_size: int = 1024
    cache_ttl_s: int = 7 * 24 * 3600
    cache_dir: Path | None = None  # ctxroute cache root (CTXROUTE_CACHE_DIR, default ~/.cache/ctxroute); models/ below it
    profiles_file: Path | None = None  # user model profiles (JSON/YAML)
    local_threads: int | None = None  # torch threads for LocalLLM (None: torch's default)

    def __post_init__(self) -> None:
        if self.backend not in BACKENDS:
            raise InputError(f"unknown LLM backend {self.backend!r}; use one of {', '.join(BACKENDS)} (CTXROUTE_LLM_BACKEND)")
        if self.backend == "openai" and not self.base_url:
            raise InputError("the openai backend needs a base URL, e.g. CTXROUTE_LLM_BASE_URL=http://localhost:8000/v1")
        if self.backend == "openai" and not self.model:
            raise InputError("the openai backend needs a model name: set CTXROUTE_LLM_MODEL (e.g. gpt-4o-mini, or the name your server serves)")
        if self.timeout_s <= 0 or self.max_retries < 0 or self.cache_size < 0:
            raise InputError(
                f"timeout_s must be > 0, max_retries >= 0 and cache_size >= 0; got {self.timeout_s}, {self.max_retries}, {self.cache_size}"
            )

    def __repr__(self) -> str:
        from ctxroute.pipelines.llm.openai import redact_url

        key = "'***'" if self.api_key else "None"
        redis = repr(redact_url(self.redis_url)) if self.redis_url else "None"
        base = repr(redact_url(self.base_url)) if self.base_url else "None"
        return (
            f"LLMConfig(backend={self.backend!r}, base_url={base}, model={self.model!r}, api_key={key}, "
            f"timeout_s={self.timeout_s}, max_retries={self.max_retries}, profile={self.profile!r}, redis_url={redis}, "
            f"cache_size={self.cache_size})"
        )

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> "LLMConfig":
        """Settings from CTXROUTE_LLM_{BACKEND,BASE_URL,MODEL,API_KEY,PROFILE,TIMEOUT,MAX_RETRIES},
        CTXROUTE_REDIS_URL, CTXROUTE_LLM_CACHE_SIZE, CTXROUTE_LLM_THREADS, CTXROUTE_CACHE_DIR and
        CTXROUTE_MODEL_PROFILES.
        The backend defaults to ``openai`` when a base URL is set, else ``local``."""

        def get(name: str) -> str | None:
            value = env.get(name, "").strip()
            return value or None

        def number(name: str, default: float, kind: type) -> float:
            raw = get(name)
            if raw is None:
                return default
            try:
                return kind(raw)
            except ValueError:
                raise InputError(f"{name}={raw!r} is not a valid {kind.__name__}; unset it or give a number", name=name) from None

        base_url = get("CTXROUTE_LLM_BASE_URL")
        cache_dir = get("CTXROUTE_CACHE_DIR")
        profiles = get("CTXROUTE_MODEL_PROFILES")
        return cls(
            backend=(get("CTXROUTE_LLM_BACKEND") or ("openai" if base_url else "local")).lower(),
            base_url=base_url,
            model=get("CTXROUTE_LLM_MODEL"),
            api_key=get("CTXROUTE_LLM_API_KEY"),
            timeout_s=float(number("CTXROUTE_LLM_TIMEOUT", 120.0, float)),
            max_retries=int(number("CTXROUTE_LLM_MAX_RETRIES", 4, int)),
            profile=get("CTXROUTE_LLM_PROFILE"),
            redis_url=get("CTXROUTE_REDIS_URL"),
            cache_size=int(number("CTXROUTE_LLM_CACHE_SIZE", 1024, int)),
            cache_dir=Path(cache_dir).expanduser() if cache_dir else None,
            profiles_file=Path(profiles).expanduser() if profiles else None,
            local_threads=int(number("CTXROUTE_LLM_THREADS", 0, int)) or None,
        )


def resolve_profile(config: LLMConfig) -> ModelProfile:
    """The model profile for ``config``: ``profile`` if set, else the model's (or SmolLM2's for local)."""
    if config.profile and config.profile.lower() == "generic":
        return generic_profile(config.model or config.backend)
    if config.profile:
        return get_profile(config.profile, config.profiles_file)
    if config.backend == "local":
        return get_profile(LOCAL_PROFILE, config.profiles_file)
    if config.backend == "scripted":
        from ctxroute.pipelines.llm.scripted import SCRIPTED_PROFILE

        return SCRIPTED_PROFILE
    try:
        return get_profile(config.model or "", config.profiles_file)
    except InputError as exc:
        raise InputError(
            f"{exc.message}. For a model without a profile set CTXROUTE_LLM_PROFILE to a known profile, "
            f"or to 'generic' to accept a conservative 8,192-token window",
            name=config.model,
        ) from None


def build_uncached(config: LLMConfig) -> LLMClient:
    """The LLM client ``config`` describes, without the completion cache."""
    profile = resolve_profile(config)
    if config.backend == "openai":
        from ctxroute.pipelines.llm.openai import OpenAICompatibleLLM

        assert config.base_url is not None and config.model is not None  # checked above
        return OpenAICompatibleLLM(
            config.base_url, config.model, config.api_key, profile=profile, timeout_s=config.timeout_s, max_retries=config.max_retries
        )
    if config.backend == "local":
        from ctxroute.pipelines.llm.local import LocalLLM

        return LocalLLM(
            cache_dir=config.cache_dir / "models" if config.cache_dir else None, profile=profile, threads=config.local_threads
        )
    from ctxroute.pipelines.llm.scripted import ScriptedLLM

    return ScriptedLLM(profile=profile)


def build_llm(config: LLMConfig) -> LLMClient:
    """The LLM client ``config`` describes, behind the completion cache (in-process LRU plus
    Redis when ``redis_url`` is set). ``cache_size=0`` without Redis means no cache."""
    from ctxroute.pipelines.llm.cache import CachedLLM, CompletionCache, InProcessCache, RedisCache

    inner = build_uncached(config)
    if config.cache_size == 0 and not config.redis_url:
        return inner
    redis = RedisCache(config.redis_url, ttl_s=config.cache_ttl_s) if config.redis_url else None
    return CachedLLM(inner, CompletionCache(InProcessCache(config.cache_size), redis))
