"""`ctxroute ingest`, `ctxroute search`, `ctxroute collections ...` and `ctxroute docs ...`."""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, List, Optional

import typer

from ctxroute.cli.common import cli_errors, collection_store, console, data_dir, err_console

_STAGES = {"chunk": "chunking", "embed": "embedding", "sparse": "BM25 index", "dense": "FAISS index",
           "graph": "graph index", "save": "saving", "load": "loading", "ray embed": "embedding (ray)"}


def _embedder(collection: str, spec: str | None, bf16: bool = False, threads: int | None = None,
              long_text: str | None = None) -> Any:
    """--embedder, else $CTXROUTE_EMBEDDER, else the collection's own (None: let the store
    rebuild it) or MiniLM for a new one. --threads / $CTXROUTE_TORCH_THREADS set torch threads;
    ``long_text`` (--long-text) defaults to the collection's own policy."""
    from ctxroute.retrievers.embedders import make_embedder

    spec = spec or os.environ.get("CTXROUTE_EMBEDDER") or None
    env_threads = os.environ.get("CTXROUTE_TORCH_THREADS", "")
    threads = threads or (int(env_threads) if env_threads.isdigit() else None)
    if spec or bf16 or threads or long_text:
        store = collection_store()
        if store.exists(collection):
            cfg = store.config(collection)  # the config only: no documents or chunks read
            spec = spec or cfg.embedder_spec or cfg.embedder_name
            long_text = long_text or cfg.long_text
        # bf16: forced by --bf16, else where the CPU has bf16 units (not fp32 for want of the flag)
        return make_embedder(spec, bf16=True if bf16 else None, threads=threads, long_text=long_text or "truncate")
    return None


def _open(name: str, embedder_spec: str | None = None) -> Any:
    return collection_store().open(name, _embedder(name, embedder_spec))


def _progress() -> Any:
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("{task.description:<14}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                    console=err_console, transient=True)


def _stage_progress(bar: Any) -> Any:
    """``progress(stage, done, total)`` drawing one bar per stage."""
    tasks: dict[str, Any] = {}

    def progress(stage: str, done: int, total: int) -> None:
        if stage not in tasks:
            tasks[stage] = bar.add_task(_STAGES.get(stage, stage), total=total)
        bar.update(tasks[stage], completed=done, total=total)

    return progress


def _ingest_on_ray(store: Any, name: str, col: Any, config: Any, emb: Any, paths: List[Path], address: str | None,
                   workers: int | None, threads: int | None) -> Any:
    """``--ray``: load, chunk and embed on Ray actors, commit in one version (nothing is
    created when no file loads). Returns the load report and the commit's stats (or None)."""
    from ctxroute.retrievers.distributed import ray_ingest, ray_session

    target = col if col is not None else (lambda: store.open_or_create(name, config, emb))
    extra = {} if col is not None else {"chunking": config.chunking, "embedder": emb}
    with ray_session(address, num_cpus=workers or os.cpu_count()), _progress() as bar:
        result = ray_ingest(target, paths, workers=workers, threads=threads or 1, progress=_stage_progress(bar), **extra)
    s = result.seconds
    err_console.print(f"ray: {result.workers} workers, {result.shards} shards, {result.vectors_computed:,} passage vectors "
                      f"from the actors, {result.vectors_missed:,} embedded by the driver; load {s.get('load', 0):.1f}s, "
                      f"chunk+embed {s.get('ray embed', 0):.1f}s, commit {s.get('commit', 0):.1f}s", highlight=False)
    return result.load, result.stats


def _warn(message: str, label: str = "skipped") -> None:
    """One line per file: ``failed`` (it could not be loaded or indexed), ``skipped`` (already
    there, or a duplicate), ``ignored`` (not a supported file type)."""
    from rich.markup import escape

    colour = {"failed": "red", "ignored": "dim"}.get(label, "yellow")
    err_console.print(f"[{colour}]{label}[/{colour}] {escape(message)}", highlight=False, soft_wrap=True)


def _unsupported(paths: List[Path]) -> list[Path]:
    """Files under the given folders that ingest does not read (hidden ones aside)."""
    from ctxroute.retrievers.documents import SUPPORTED_SUFFIXES

    out = []
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() not in SUPPORTED_SUFFIXES \
                        and not any(part.startswith(".") for part in f.relative_to(p).parts):
                    out.append(f)
    return out


def _is_duplicate(error: Any) -> bool:
    return str(error.reason).startswith("duplicate document id")


def _snippet(text: str, width: int = 160) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= width else flat[: width - 1] + "…"


def register(app: typer.Typer, bench: typer.Typer) -> None:
    collections_app = typer.Typer(help="List, show and delete collections.", no_args_is_help=True)
    docs_app = typer.Typer(help="List and remove documents of a collection.", no_args_is_help=True)
    app.add_typer(collections_app, name="collections")
    app.add_typer(docs_app, name="docs")

    @app.command()
    def ingest(
        paths: List[Path] = typer.Argument(..., help="files or directories (.txt .md .html .pdf .jsonl)"),
        collection: str = typer.Option(..., "--collection", "-c", help="collection name (created if missing)"),
        embedder: Optional[str] = typer.Option(
            None, help="'minilm' (default), 'hashing' (test double) or a local sentence-transformers folder; "
                       "default $CTXROUTE_EMBEDDER, else the collection's own"),
        passage_tokens: Optional[int] = typer.Option(None, min=16, help="passage size in tokens (new collections; default 256)"),
        bf16: bool = typer.Option(False, "--bf16", help="run the embedding model in bfloat16"),
        long_text: Optional[str] = typer.Option(
            None, "--long-text", help="a passage over the model's 256 wordpieces: 'truncate' (its start only, as "
                                      "LlamaIndex and LangChain do; default) or 'windows' (all of it, as overlapping "
                                      "windows averaged by length: 5-10% more embedding on 256-token passages, ~1.3x on "
                                      "long ones); new collections"),
        threads: Optional[int] = typer.Option(None, min=1, help="torch CPU threads (default $CTXROUTE_TORCH_THREADS, "
                                                          "else torch's own; 1 is fastest on a busy machine)"),
        ray: bool = typer.Option(False, "--ray", help="load, chunk and embed on Ray actors (a local cluster unless "
                                                      "--ray-address), then commit in one version; needs the ctxroute\\[scale] extra"),
        ray_address: Optional[str] = typer.Option(None, "--ray-address", help="'auto' or ray://HOST:PORT: use a running "
                                                                               "Ray cluster (implies --ray)"),
        ray_workers: Optional[int] = typer.Option(None, "--ray-workers", min=1, help="embedding actors, each holding the "
                                                                                     "model once (default: the cluster's CPUs)"),
    ) -> None:
        """Load documents, chunk them, index them (BM25, FAISS, graph) and save the collection."""
        from rich.table import Table

        from ctxroute.retrievers.chunking import ChunkingConfig
        from ctxroute.retrievers.collection import CollectionConfig
        from ctxroute.retrievers.documents import load_paths

        with cli_errors():
            store = collection_store()
            store.validate_name(collection)
            if long_text is not None and long_text not in ("windows", "truncate"):
                raise typer.BadParameter(f"--long-text must be 'windows' or 'truncate', got {long_text!r}")
            emb = _embedder(collection, embedder, bf16, threads, long_text)
            if store.exists(collection):
                col = store.open(collection, emb)
                kept = {"--passage-tokens": (passage_tokens, col.config.chunking.passage_tokens, "chunking"),
                        "--long-text": (long_text, col.config.long_text, "policy for long passages")}
                for flag, (asked, has, what) in kept.items():
                    if asked is not None and asked != has:
                        err_console.print(
                            f"[red]error:[/red] collection {collection!r} uses {flag} {has}; a collection keeps "
                            f"one {what}, ingest into a new collection to change it", highlight=False, soft_wrap=True)
                        raise typer.Exit(1)
            else:
                from ctxroute.retrievers.embedders import make_embedder

                emb = emb if emb is not None else make_embedder(None, threads=threads)  # long_text: via _embedder
                chunking = ChunkingConfig(passage_tokens=passage_tokens) if passage_tokens else ChunkingConfig()
                col = None
                config = CollectionConfig.for_embedder(emb, chunking=chunking,
                                                       **({"long_text": long_text} if long_text else {}))

            from ctxroute.retrievers.documents import SUPPORTED_SUFFIXES, iter_files

            for f in _unsupported(paths):
                _warn(f"{f}: unsupported file type {f.suffix or '(no suffix)'}; supported: "
                      f"{', '.join(SUPPORTED_SUFFIXES)}", "ignored")
            if not iter_files(paths):
                err_console.print(
                    f"[red]error:[/red] no file to ingest in {', '.join(str(p) for p in paths)}: ingest reads "
                    f"{', '.join(SUPPORTED_SUFFIXES)} files (folders are searched recursively, hidden files skipped)",
                    highlight=False, soft_wrap=True)
                raise typer.Exit(1)
            stats = None
            if ray or ray_address:
                report, stats = _ingest_on_ray(store, collection, col, config if col is None else None, emb, paths,
                                               ray_address, ray_workers, threads)
            else:
                with _progress() as bar:
                    task = bar.add_task("loading", total=None)
                    report = load_paths(paths, progress=lambda done, total: bar.update(task, completed=done, total=total))
            duplicates = [e for e in report.errors if _is_duplicate(e)]
            load_failures = [e for e in report.errors if not _is_duplicate(e)]
            for error in report.errors:
                _warn(f"{error.path}: {error.reason}", "skipped" if _is_duplicate(error) else "failed")
            if not report.documents:
                err_console.print(f"[red]error:[/red] none of the {len(report.errors)} file(s) could be loaded "
                                  "(reasons above); nothing ingested", highlight=False, soft_wrap=True)
                raise typer.Exit(1)
            if stats is None:
                if col is None:
                    col = store.open_or_create(collection, config, emb)
                with _progress() as bar:
                    stats = col.add_documents(report.documents, progress=_stage_progress(bar))

        for doc_id in stats.skipped:
            _warn(f"{doc_id}: already in the collection (same text)")
        for doc_id, reason in stats.failed:
            _warn(f"{doc_id}: {reason}", "failed")
        table = Table(title=f"ingested into {collection!r} (version {stats.version})")
        for column in ("documents", "sections", "passages", "sentences", "tokens", "skipped", "failed"):
            table.add_column(column, justify="right")
        table.add_row(*(f"{v:,}" for v in (stats.documents, stats.sections, stats.passages, stats.sentences,
                                             stats.tokens, len(stats.skipped) + len(duplicates),
                                             len(load_failures) + len(stats.failed))))
        console.print(table)
        if stats.seconds:
            timing = Table(title="seconds per stage")
            for stage in stats.seconds:
                timing.add_column(stage, justify="right")
            timing.add_row(*(f"{s:.2f}" for s in stats.seconds.values()))
            console.print(timing)
        if not stats.added and not stats.skipped:  # every document failed
            raise typer.Exit(1)

    @app.command()
    def search(
        query: str = typer.Argument(..., help="what to look for"),
        collection: str = typer.Option(..., "--collection", "-c"),
        k: int = typer.Option(10, "--k", "-k", min=1, help="number of passages"),
        retriever: str = typer.Option("hybrid", help="bm25 | dense | graph | hybrid"),
        embedder: Optional[str] = typer.Option(None, help="override the collection's embedder (must match it)"),
        as_json: bool = typer.Option(False, "--json", help="print the hits as JSON"),
    ) -> None:
        """Search a collection's passages (no LLM)."""
        with cli_errors():
            col = _open(collection, embedder)
            hits = col.search(query, k=k, retriever=retriever)
            rows = []
            for rank, hit in enumerate(hits, start=1):
                c = hit.chunk
                doc = col.document(c.doc_id)
                rows.append({
                    "rank": rank, "doc_id": c.doc_id, "title": doc.title, "section": c.heading,
                    "page": doc.page_at(c.start), "start": c.start, "end": c.end, "chunk_id": c.id,
                    "score": hit.score, "retriever": hit.retriever,
                    "ranks": dict(hit.ranks), "scores": dict(hit.scores), "text": c.text_of(doc),
                })
        if as_json:
            console.print_json(json.dumps({"collection": collection, "version": col.version, "hits": rows}))
            return
        if not rows:
            console.print(f"no passage of {collection!r} matches {query!r}")
            return
        from rich.markup import escape

        console.print(f"[bold]{retriever}[/bold] search in {collection!r} (version {col.version}): {len(rows)} hits")
        for r in rows:
            title = r["title"] or r["doc_id"]
            where = escape(title) + (f" › {escape(r['section'])}" if r["section"] and r["section"] != title else "")
            page = f"page {r['page']}, " if r["page"] else ""
            console.print(f"\n[bold]{r['rank']:>2}.[/bold] {where}  [dim]({page}chars {r['start']}-{r['end']}, "
                          f"{escape(r['chunk_id'])})[/dim]  score [bold]{r['score']:.4f}[/bold]", soft_wrap=True)
            per = " · ".join(f"{name} #{r['ranks'][name]} ({r['scores'].get(name, 0.0):.3f})" for name in r["ranks"])
            console.print(f"    [cyan]{per}[/cyan]", soft_wrap=True)
            console.print(f"    {escape(_snippet(r['text'], 240))}", highlight=False)

    @collections_app.command("list")
    def collections_list() -> None:
        """All collections under $CTXROUTE_HOME/collections."""
        from rich.table import Table

        with cli_errors():
            infos = collection_store().list()
        if not infos:
            console.print(f"no collections under {data_dir() / 'collections'}; create one with "
                          "`ctxroute ingest PATH --collection NAME`")
            return
        table = Table(title="collections")
        for column in ("name", "documents", "passages", "tokens", "embedder", "version", "updated"):
            table.add_column(column, justify="right" if column in ("documents", "passages", "tokens") else "left",
                             overflow="fold")
        for i in infos:
            table.add_row(i.name, f"{i.n_docs:,}", f"{i.n_passages:,}", f"{i.total_tokens:,}",
                          f"{i.embedder_name} ({i.embedder_dim})", i.version, i.updated_at)
        console.print(table)

    @collections_app.command("show")
    def collections_show(name: str = typer.Argument(...), as_json: bool = typer.Option(False, "--json")) -> None:
        """Configuration, counts and documents of one collection (reads the manifest only)."""
        with cli_errors():
            manifest = collection_store().manifest(name)
        if as_json:
            console.print_json(json.dumps(manifest))
            return
        counts, cfg = manifest["counts"], manifest["config"]
        console.print(f"[bold]{name}[/bold]  version {manifest['version']}  updated {manifest['updated_at']}")
        console.print(f"documents {counts['documents']:,}  passages {counts['passages']:,}  tokens {counts['tokens']:,}")
        console.print(f"embedder {cfg['embedder_name']} (dim {cfg['embedder_dim']})  chunking {cfg['chunking']}")
        console.print(f"bm25 {cfg['sparse']}  fusion weights {cfg['fusion_weights']}  hnsw above {cfg['hnsw_threshold']:,}")
        if "segments" in manifest:  # files backend: append-only segments
            tombstones = sum(len(s["dead"]) for s in manifest["segments"])
            console.print(f"segments {len(manifest['segments'])}  tombstones {tombstones} "
                          f"(`ctxroute collections compact {name}` folds them into one)")
        _docs_table(manifest)

    @collections_app.command("rm")
    def collections_rm(name: str = typer.Argument(...),
                       yes: bool = typer.Option(False, "--yes", "-y", help="do not ask for confirmation")) -> None:
        """Delete a collection and its indexes."""
        with cli_errors():
            store = collection_store()
            manifest = store.manifest(name)
            if not yes:
                typer.confirm(f"delete collection {name!r} ({manifest['counts']['documents']} documents)?", abort=True)
            store.delete(name)
        console.print(f"deleted collection {name!r}")

    @collections_app.command("compact")
    def collections_compact(name: str = typer.Argument(...)) -> None:
        """Fold a collection's segments into one (each write appends a segment; a write
        compacts the newest ones on its own when there are more than 8, or 20% of the rows
        are removed ones). The result is what a fresh ingest writes: same search results."""
        with cli_errors():
            summary = collection_store().compact(name)
        console.print(f"compacted {name!r}: {summary['segments_before']} segments -> {summary['segments_after']}, "
                      f"{summary['dead_rows_dropped']:,} removed passages dropped (version {summary['version']})")

    @docs_app.command("list")
    def docs_list(collection: str = typer.Option(..., "--collection", "-c")) -> None:
        """Documents of a collection."""
        with cli_errors():
            manifest = collection_store().manifest(collection)
        _docs_table(manifest)

    @docs_app.command("rm")
    def docs_rm(doc_id: str = typer.Argument(...), collection: str = typer.Option(..., "--collection", "-c"),
                embedder: Optional[str] = typer.Option(None, help="override the collection's embedder")) -> None:
        """Remove one document (the others are not re-embedded)."""
        with cli_errors():
            col = _open(collection, embedder)
            title = col.document(doc_id).title
            col.remove_document(doc_id)
        console.print(f"removed {doc_id} ({title!r}) from {collection!r}; version {col.version}")


def _docs_table(manifest: dict[str, Any]) -> None:
    from rich.table import Table

    docs = manifest["documents"]
    if not docs:
        console.print("no documents")
        return
    table = Table(title="documents")
    for column in ("id", "title", "source", "format", "tokens", "sections", "passages"):
        table.add_column(column, justify="right" if column in ("tokens", "sections", "passages") else "left",
                         overflow="fold")
    for doc_id, d in docs.items():
        table.add_row(doc_id, d["title"], d["source"], d["format"], f"{d['tokens']:,}", str(d["sections"]),
                      str(d["passages"]))
    console.print(table)
