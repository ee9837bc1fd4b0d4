"""Load another script of ``benchmarks/`` as a module, once per process, whether the caller runs
as a script or was itself loaded from its file: one ``sys.modules`` key per script, so every
benchmark shares one copy of e.g. ``quality_data``. The tests and ``ctxroute bench`` load the
scripts through it too (``benchmarks/`` on ``sys.path``, ``from _siblings import sibling``)."""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path
from types import ModuleType

HERE = Path(__file__).resolve().parent


def sibling(name: str) -> ModuleType:
    key = f"ctxroute_benchmarks_{name}"
    if key not in sys.modules:
        spec = importlib.util.spec_from_file_location(key, HERE / f"{name}.py")
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[key] = module
        spec.loader.exec_module(module)
    return sys.modules[key]
