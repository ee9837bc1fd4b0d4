"""Command line (edge layer). Each module below registers its own commands.

Environment variables are read here (and in ``ctxroute.api``) only, then passed down as
typed config objects. Heavy imports happen inside the commands so `--help` stays fast.
"""
from __future__ import annotations

import importlib
import os

import typer

app = typer.Typer(
    name="ctxroute",
    help="Answer questions over long documents: retrieval, long context or map-reduce, with verified citations.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
bench = typer.Typer(help="Benchmarks (ratios against a reference measured in the same run).", no_args_is_help=True)
app.add_typer(bench, name="bench")

# module name -> registers commands with register(app, bench)
_MODULES = ("ingest", "llm", "ask", "route", "bench_router", "evaluate", "replay", "serve", "bench_retrieval", "worker")


def _load() -> None:
    for name in _MODULES:
        try:
            mod = importlib.import_module(f"ctxroute.cli.{name}")
        except ModuleNotFoundError as exc:  # a command group not written yet
            if exc.name != f"ctxroute.cli.{name}":
                raise
            continue
        mod.register(app, bench)


def main() -> None:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    app()


_load()
