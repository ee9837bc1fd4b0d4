"""`ctxroute bench retrieval` and `ctxroute bench quality`: the scripts in benchmarks/.

The benchmark code lives beside the package (``benchmarks/``, part of a source checkout,
not of the wheel); these commands load it from there.
"""
from __future__ import annotations

import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Optional

import typer

from ctxroute.cli.common import console, err_console

BENCH_DIR = Path(__file__).resolve().parents[2] / "benchmarks"


def _load(name: str) -> ModuleType:
    path = BENCH_DIR / f"{name}.py"
    if not path.is_file():
        err_console.print(
            f"[red]{path} not found[/red]: the benchmarks ship with the source checkout; "
            "run this command from a clone of the repository (pip install -e .)"
        )
        raise typer.Exit(2)
    if str(BENCH_DIR) not in sys.path:
        sys.path.insert(0, str(BENCH_DIR))
    from _siblings import sibling  # benchmarks/_siblings.py: one module per script and process, as the scripts share

    return sibling(name)


def _progress() -> Any:
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed}/{task.total}"),
                    TimeElapsedColumn(), console=err_console, transient=True)


def register(app: typer.Typer, bench: typer.Typer) -> None:
    @bench.command("retrieval")
    def bench_retrieval(
        tokens: int = typer.Option(1_000_000, help="Size of the synthetic corpus, in tokens."),
        queries: int = typer.Option(200, help="Queries timed per retriever."),
        embedder: str = typer.Option("minilm", help="minilm (real model) or hashing (test double)."),
        bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32",
                                            help="Embedder dtype (default: bf16 where the CPU has bf16 units)."),
        seed: int = typer.Option(7, help="Corpus and query seed."),
        out: Optional[Path] = typer.Option(None, help="Also write the result as JSON here."),
    ) -> None:
        """Ingestion throughput per stage and query latency, against same-run references."""
        if embedder not in ("minilm", "hashing"):
            err_console.print(f"[red]unknown embedder {embedder!r}[/red]: use minilm or hashing")
            raise typer.Exit(2)
        mod = _load("bench_retrieval")
        with _progress() as bar:
            tasks: dict[str, Any] = {}

            def progress(stage: str, done: int, total: int) -> None:
                if stage not in tasks:
                    tasks[stage] = bar.add_task(stage, total=total)
                bar.update(tasks[stage], completed=done, total=total)

            result = mod.run(tokens=tokens, queries=queries, embedder_kind=embedder, bf16=bf16, seed=seed,
                             progress=progress)
        console.print(mod.markdown(result), markup=False, highlight=False, soft_wrap=True)
        if out is not None:
            out.write_text(mod.to_json(result))
            console.print(f"wrote {out}")

    @bench.command("peers")
    def bench_peers(
        peerbench: Path = typer.Option(..., help="Writable copy of ../shared/tools/peerbench with its venv/ and data/."),
        n: Optional[int] = typer.Option(1000, help="First N passages (0: all)."),
        reps: int = typer.Option(1, help="Repetitions, interleaved."),
        windows: bool = typer.Option(False, "--windows", help="Also ctxroute with long passages embedded whole as windows."),
        agreement: int = typer.Option(1000, help="Queries for the ONNX / float16 agreement check (0: skip)."),
        out: Optional[Path] = typer.Option(None, help="Also write the result as JSON here."),
    ) -> None:
        """ctxroute against LlamaIndex, LangChain and the raw encode on the same passages, one table."""
        if not (peerbench / "venv" / "bin" / "python").exists() or not (peerbench / "data" / "passages.jsonl").exists():
            err_console.print(f"[red]{peerbench} has no venv/ or data/passages.jsonl[/red]: set it up as its README says")
            raise typer.Exit(2)
        mod = _load("peer_bench")
        err_console.print("running every system in its own process; this takes minutes per system")
        data = mod.run(peerbench, n or None, reps, windows, agreement, 3600)
        console.print(mod.table(data), markup=False, highlight=False, soft_wrap=True)
        if out is not None:
            import json

            out.write_text(json.dumps(data, indent=1, default=str))
            console.print(f"wrote {out}")

    @bench.command("compress")
    def bench_compress(
        data: Optional[Path] = typer.Option(None, help="Folder holding LooGLE/, L-Eval/, LaRA/ (default ../shared/data)."),
        datasets: str = typer.Option("loogle,leval_contracts,lara", help="Some of loogle, leval_contracts, lara, sec."),
        ratios: str = typer.Option("0.1,0.2,0.35,0.5", help="Compression ratios, comma-separated."),
        lara_docs: int = typer.Option(3, help="LaRA 32k documents per domain."),
        limit_docs: Optional[int] = typer.Option(None, min=1, help="At most this many documents per data set (LooGLE, L-Eval, SEC)."),
        embedder: str = typer.Option("hashing", help="hashing (cheap, with --retriever bm25) or minilm (the product's default)."),
        retriever: str = typer.Option("bm25", help="Passage scores and the RAG baseline's ranking: bm25 | hybrid | dense."),
        ablation: bool = typer.Option(False, "--ablation", help="Also the compressor without seed, lead prior and quote boost."),
        speed: bool = typer.Option(True, "--speed/--no-speed", help="Also time compressing a ~100k-token document."),
        out: Optional[Path] = typer.Option(None, help="Also write the result as JSON here."),
    ) -> None:
        """Evidence retention of compressed-lc against random sentence dropping and RAG's top passages at the same
        token budget (default: hashing embedder, BM25 passage scores), and the compressor's speed against one BM25 query."""
        import json
        from dataclasses import asdict

        mod = _load("compression_retention")
        folder = data or mod.DEFAULT_DATA
        try:
            rs = [float(x) for x in ratios.split(",") if x.strip()]
        except ValueError:
            err_console.print(f"[red]bad --ratios {ratios!r}[/red]: use numbers such as 0.1,0.35")
            raise typer.Exit(2) from None
        gdocs = mod.load_gold(folder, [d.strip() for d in datasets.split(",")], lara_docs, limit_docs)
        if not gdocs:
            err_console.print(f"[red]no QA data at {folder}[/red]: pass --data pointing at the shared data folder")
            raise typer.Exit(2)
        with _progress() as bar:
            task = bar.add_task("documents", total=len(gdocs))
            from ctxroute.pipelines.compress import CompressConfig

            extra = [mod.ablation_config(CompressConfig())] if ablation else []
            results = mod.evaluate(gdocs, rs, retriever=retriever, configs=extra, embedder=mod.make_embedder(embedder),
                                   progress=lambda done, total: bar.update(task, completed=done))
        labels = ["compressor without seed/lead/quote"] if ablation else []
        console.print(mod.markdown(results, rs, labels), markup=False, highlight=False, soft_wrap=True)
        sp = mod.speed(folder) if speed else None
        if sp:
            console.print(f"speed: {json.dumps(sp)}", markup=False, highlight=False)
        if out is not None:
            out.write_text(json.dumps({"results": [asdict(r) for r in results], "speed": sp}, indent=1))
            console.print(f"wrote {out}")

    @bench.command("quality")
    def bench_quality(
        data: Optional[Path] = typer.Option(None, help="Folder holding LooGLE/, L-Eval/, LaRA/, docugami-sec-10q/ (default ../shared/data)."),
        k: str = typer.Option("1,5,10,20", help="Cut-offs, comma-separated."),
        embedder: str = typer.Option("minilm", help="minilm (real model) or hashing (test double)."),
        datasets: str = typer.Option("loogle,leval_contracts,lara,sec", help="Some of loogle, leval_contracts, lara, sec."),
        limit_docs: Optional[int] = typer.Option(None, help="Use only the first N documents of each set."),
        lara_docs: int = typer.Option(4, help="LaRA 32k documents per domain (book, financial, paper)."),
        sec_files: str = typer.Option("*", help='Glob over the 10-Q file names, e.g. "2023 Q3*".'),
        bf16: Optional[bool] = typer.Option(None, "--bf16/--fp32",
                                            help="Embedder dtype (default: bf16 where the CPU has bf16 units)."),
        reader: bool = typer.Option(False, "--reader", help="Also score the extractive reader on the SEC questions."),
        cache: Optional[Path] = typer.Option(None, help="Keep built collections here and reuse them (delete after code changes)."),
        dump: Optional[Path] = typer.Option(None, help="Write each question's ranked lists (for benchmarks/fusion_tuning.py)."),
        out: Optional[Path] = typer.Option(None, help="Also write the result as JSON here."),
    ) -> None:
        """Recall@k of gold evidence for bm25, dense, graph and hybrid on LooGLE, L-Eval, LaRA and SEC 10-Q."""
        import json
        from dataclasses import asdict

        if embedder not in ("minilm", "hashing"):
            err_console.print(f"[red]unknown embedder {embedder!r}[/red]: use minilm or hashing")
            raise typer.Exit(2)
        mod = _load("retrieval_quality")
        folder = data or mod.DEFAULT_DATA
        names = mod.parse_datasets(datasets)
        if not folder.is_dir():
            err_console.print(f"[red]no QA data at {folder}[/red]: pass --data pointing at the shared data folder")
            raise typer.Exit(2)
        ks = mod.parse_ks(k)
        records: list[dict] | None = [] if dump is not None else None
        with _progress() as bar:
            task = bar.add_task("questions", total=None)
            try:
                results = mod.run(folder, ks, embedder, limit_docs=limit_docs, datasets=names, bf16=bf16,
                                  cache=cache, dump=records, lara_docs=lara_docs, reader=reader, sec_files=sec_files,
                                  progress=lambda done, total: bar.update(task, completed=done, total=total))
            except FileNotFoundError as exc:
                err_console.print(f"[red]{exc}[/red]")
                raise typer.Exit(2) from None
        console.print(mod.markdown_table(results, ks), markup=False, highlight=False, soft_wrap=True)
        if out is not None:
            out.write_text(json.dumps([asdict(r) for r in results], indent=2))
            console.print(f"wrote {out}")
        if dump is not None and records is not None:
            dump.write_text("\n".join(json.dumps(r) for r in records) + "\n")
            console.print(f"wrote {dump}")
