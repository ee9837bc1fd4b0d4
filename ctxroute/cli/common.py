"""Shared CLI helpers: settings from the environment, error printing."""
from __future__ import annotations

import os
from pathlib import Path

from rich.console import Console

console = Console()
err_console = Console(stderr=True)


def data_dir() -> Path:
    """Where collections live: $CTXROUTE_HOME or ./.ctxroute (collections under collections/)."""
    return Path(os.environ.get("CTXROUTE_HOME", ".ctxroute")).resolve()
