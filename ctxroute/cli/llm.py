"""`ctxroute llm chat`, `ctxroute llm profiles` and `ctxroute bench llm`."""
from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any, Optional

import typer

from ctxroute.cli.common import console, err_console

llm_app = typer.Typer(help="Talk to the configured LLM directly; list model profiles.", no_args_is_help=True)


def _unwrap(client: Any) -> Any:
    while hasattr(client, "inner"):
        client = client.inner
    return client


def _fail(exc: Exception) -> None:
    from rich.markup import escape

    err_console.print(f"[red]error:[/red] {escape(str(exc))}")
    raise typer.Exit(1)


async def _chat(client: Any, request: Any) -> tuple[Any, float | None, float]:
    from ctxroute.pipelines.llm.base import StreamDelta, StreamEnd

    start = time.perf_counter()
    first: float | None = None
    end = None
    try:
        async for item in client.stream(request):
            if isinstance(item, StreamDelta):
                if first is None:
                    first = time.perf_counter() - start
                console.print(item.text, end="", markup=False, highlight=False, soft_wrap=True)
            elif isinstance(item, StreamEnd):
                end = item.response
    finally:
        await client.aclose()
    console.print()
    return end, first, time.perf_counter() - start


def register(app: typer.Typer, bench: typer.Typer) -> None:
    app.add_typer(llm_app, name="llm")

    @llm_app.command("chat")
    def chat(
        prompt: str = typer.Argument(..., help="What to ask."),
        backend: Optional[str] = typer.Option(None, help="local | openai | scripted (default: CTXROUTE_LLM_BACKEND, else openai when CTXROUTE_LLM_BASE_URL is set, else local)."),
        system: str = typer.Option("You are a helpful assistant. Answer concisely.", help="System message."),
        max_tokens: int = typer.Option(256, min=1, help="Most tokens to generate."),
        temperature: float = typer.Option(0.0, min=0.0, help="0 = greedy."),
    ) -> None:
        """Stream one answer, then print usage, latency, time to first token and tokens/s."""
        import asyncio

        from ctxroute.errors import CtxrouteError
        from ctxroute.pipelines.llm.base import LLMRequest
        from ctxroute.pipelines.llm.factory import LLMConfig, build_llm

        env = dict(os.environ)
        if backend:
            env["CTXROUTE_LLM_BACKEND"] = backend
        try:
            config = LLMConfig.from_env(env)
            client = build_llm(config)
            inner = _unwrap(client)
            if hasattr(inner, "load") and not getattr(inner, "loaded", True):
                with err_console.status("loading SmolLM2-135M (the first use converts it once, ~30-60 s)"):
                    info = inner.load()
                err_console.print(f"[dim]loaded {inner.model} in {info.seconds:.1f} s{' (converted)' if info.converted else ''}[/dim]")
            request = LLMRequest.of(system, prompt, max_tokens=max_tokens, temperature=temperature, stage="cli.chat")
            response, ttft, total = asyncio.run(_chat(client, request))
        except CtxrouteError as exc:
            _fail(exc)
            return
        if response is None:
            err_console.print("[red]error:[/red] the stream ended without usage")
            raise typer.Exit(1)
        decode_s = total - (ttft or 0.0)
        rate = (response.completion_tokens - 1) / decode_s if response.completion_tokens > 1 and decode_s > 0 else 0.0
        cost = client.profile.cost(response.prompt_tokens, response.completion_tokens)
        err_console.print(
            f"[dim]{response.model} · prompt {response.prompt_tokens} tok · completion {response.completion_tokens} tok "
            f"({response.finish_reason}) · latency {total * 1000:.0f} ms · first token "
            f"{'-' if ttft is None else f'{ttft * 1000:.0f} ms'} · {rate:.1f} tok/s"
            f"{' · cached' if response.cached else ''}{f' · ${cost:.5f}' if cost else ''}[/dim]"
        )

    @llm_app.command("profiles")
    def profiles(
        as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
    ) -> None:
        """List model profiles (built-in plus CTXROUTE_MODEL_PROFILES)."""
        import dataclasses
        import json

        from rich.table import Table

        from ctxroute.errors import CtxrouteError
        from ctxroute.profiles import load_profiles

        extra = os.environ.get("CTXROUTE_MODEL_PROFILES", "").strip()
        try:
            found = load_profiles(Path(extra).expanduser() if extra else None)
        except CtxrouteError as exc:
            _fail(exc)
            return
        if as_json:
            console.print_json(json.dumps([dataclasses.asdict(p) for p in found.values()]))
            return
        from rich import box

        table = Table(title="Model profiles (prices approximate, USD per 1k tokens; --json for all fields)", box=box.SIMPLE)
        table.add_column("name", no_wrap=True)
        for col in ("window", "usable", "in $/1k", "out $/1k"):
            table.add_column(col, justify="right", no_wrap=True)
        table.add_column("size", no_wrap=True)
        for p in sorted(found.values(), key=lambda p: p.name):
            table.add_row(p.name, f"{p.context_window:,}", f"{p.usable_window:,}", f"{p.price_in_per_1k:g}",
                          f"{p.price_out_per_1k:g}", p.size_class)
        console.print(table)

    @bench.command("llm")
    def bench_llm(
        prompt_tokens: int = typer.Option(2000, help="Prompt length for the prefill measurement."),
        decode_tokens: int = typer.Option(32, help="Tokens generated for the decode measurement."),
        repeats: int = typer.Option(1, help="Best of N timed generations."),
        skip_convert: bool = typer.Option(False, "--skip-convert", help="Do not time the first-load conversion (30-60 s)."),
        threads: Optional[int] = typer.Option(None, min=1, help="torch threads (default: torch's choice)."),
        out: Optional[Path] = typer.Option(None, help="Also write the result as JSON here."),
    ) -> None:
        """Embedded SmolLM2: first load (conversion), warm load, prefill and decode tokens/s."""
        from ctxroute.cli.bench_retrieval import _load

        cache = os.environ.get("CTXROUTE_CACHE_DIR", "").strip()
        mod = _load("bench_llm")
        with err_console.status("benchmarking the embedded LLM") as status:
            result = mod.run(
                prompt_tokens=prompt_tokens, decode_tokens=decode_tokens, repeats=repeats,
                cache_dir=Path(cache).expanduser() / "models" if cache else None, convert=not skip_convert, threads=threads,
                progress=lambda msg: status.update(msg),
            )
        console.print(mod.markdown(result), markup=False, highlight=False)
        if out is not None:
            out.write_text(mod.to_json(result))
            console.print(f"wrote {out}")
