"""LLM clients behind one small async seam (``LLMClient``).

- ``OpenAICompatibleLLM``: any ``/v1/chat/completions`` server (OpenAI, vLLM, llama.cpp, Ollama...).
- ``LangChainChatLLM``: any LangChain ``BaseChatModel``.
- ``LocalLLM``: SmolLM2-135M-Instruct embedded on CPU (demo and smoke tests only).
- ``ScriptedLLM``: deterministic test double.
- ``CachedLLM``: completion cache (in-process LRU + optional Redis) around any of them.
- ``LLMConfig`` / ``build_llm``: typed settings (``LLMConfig.from_env(os.environ)`` at the edges) to a client.
Heavy libraries (torch, transformers, langchain, redis) load only when used.
"""
from ctxroute.pipelines.llm.base import (
    LLMClient,
    LLMRequest,
    LLMResponse,
    Message,
    StreamDelta,
    StreamEnd,
    StreamItem,
    prompt_text,
)
from ctxroute.pipelines.llm.cache import CachedLLM, CompletionCache, InProcessCache, RedisCache
from ctxroute.pipelines.llm.factory import LLMConfig, build_llm, resolve_profile
from ctxroute.pipelines.llm.langchain import LangChainChatLLM
from ctxroute.pipelines.llm.local import LocalLLM
from ctxroute.pipelines.llm.openai import OpenAICompatibleLLM
from ctxroute.pipelines.llm.scripted import ScriptedLLM

__all__ = [
    "CachedLLM",
    "CompletionCache",
    "InProcessCache",
    "LLMClient",
    "LLMConfig",
    "LLMRequest",
    "LLMResponse",
    "LangChainChatLLM",
    "LocalLLM",
    "Message",
    "OpenAICompatibleLLM",
    "RedisCache",
    "ScriptedLLM",
    "StreamDelta",
    "StreamEnd",
    "StreamItem",
    "build_llm",
    "prompt_text",
    "resolve_profile",
]
