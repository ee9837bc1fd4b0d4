"""Read-only view of ``ctxroute eval report`` outputs: the run folders (those holding a
``summary.md`` or ``summary.json``) under the directory named by ``CTXROUTE_RUNS_DIR``.

Only folders under that directory are served, only their own ``.md``, ``.json`` and ``.png``
files, and nothing when the variable is unset: a run id is a relative path of plain name
segments, and the resolved path (symlinks followed) must stay inside the directory."""
from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Annotated, Any, Callable

from fastapi import APIRouter, Depends, Path as PathParam
from fastapi.responses import FileResponse
from pydantic import BaseModel

from ctxroute.errors import NotFound

RUNS_ENV = "CTXROUTE_RUNS_DIR"
_SEGMENT = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
_FILE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\.(md|json|png)$")
_RUN_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}(/[A-Za-z0-9][A-Za-z0-9_.-]{0,127}){0,3}$"
RunId = Annotated[str, PathParam(pattern=_RUN_PATTERN, description="a report folder, relative to CTXROUTE_RUNS_DIR")]
FileName = Annotated[str, PathParam(pattern=_FILE.pattern, description="a .md, .json or .png file of the folder")]
_MEDIA = {"md": "text/markdown; charset=utf-8", "json": "application/json", "png": "image/png"}
_MAX_DEPTH = 4
_SUMMARIES = ("summary.md", "summary.json")


class RunOut(BaseModel):
    id: str
    files: list[str]


class RunList(BaseModel):
    configured: bool
    runs: list[RunOut]


class RunDetail(RunOut):
    summary_md: str | None = None
    summary_json: Any = None


def runs_root() -> Path | None:
    raw = os.environ.get(RUNS_ENV, "").strip()
    if not raw:
        return None
    root = Path(raw).expanduser().resolve()
    return root if root.is_dir() else None


def _files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.is_file() and not p.is_symlink() and _FILE.match(p.name))


def list_runs(root: Path) -> list[RunOut]:
    runs: list[RunOut] = []
    for dirpath, dirnames, filenames in os.walk(root):  # symlinked folders are not entered
        folder = Path(dirpath)
        rel = folder.relative_to(root)
        depth = len(rel.parts)
        dirnames[:] = sorted(d for d in dirnames if _SEGMENT.match(d)) if depth < _MAX_DEPTH else []
        if depth and any(s in filenames for s in _SUMMARIES):
            runs.append(RunOut(id=rel.as_posix(), files=_files(folder)))
    return runs


def run_folder(root: Path, run_id: str) -> Path:
    parts = run_id.split("/")
    missing = NotFound(f"run {run_id!r} is not a report folder under {RUNS_ENV}; list runs with GET /v1/runs", run=run_id)
    if not run_id or len(parts) > _MAX_DEPTH or not all(_SEGMENT.match(p) for p in parts):
        raise missing
    folder = root.joinpath(*parts).resolve()
    if not folder.is_relative_to(root) or not folder.is_dir() or not any((folder / s).is_file() for s in _SUMMARIES):
        raise missing
    return folder


def _root_or_404() -> Path:
    root = runs_root()
    if root is None:
        raise NotFound(f"no runs directory: start the server with {RUNS_ENV}=<folder of eval report outputs>")
    return root


def runs_router(principal: Callable[..., Any]) -> APIRouter:
    """Any valid key may read reports (they hold no tenant data); none in development mode."""
    router = APIRouter(tags=["evaluation"], dependencies=[Depends(principal)])

    @router.get("/v1/runs", response_model=RunList)
    async def runs() -> RunList:
        """Report folders under CTXROUTE_RUNS_DIR (``configured`` false when it is unset)."""
        root = runs_root()
        return RunList(configured=root is not None, runs=list_runs(root) if root else [])

    @router.get("/v1/runs/{run_id:path}/files/{file_name}", response_class=FileResponse)
    async def run_file(run_id: RunId, file_name: FileName) -> FileResponse:
        """One ``.md``, ``.json`` or ``.png`` file of a report folder."""
        root = _root_or_404()
        folder = run_folder(root, run_id)
        m = _FILE.match(file_name)
        path = (folder / file_name).resolve()
        if m is None or (folder / file_name).is_symlink() or not path.is_file() or path.parent != folder:
            raise NotFound(f"run {run_id!r} has no file {file_name!r}", run=run_id, file=file_name)
        return FileResponse(path, media_type=_MEDIA[m.group(1)], headers={"X-Content-Type-Options": "nosniff"})

    @router.get("/v1/runs/{run_id:path}", response_model=RunDetail)
    async def run(run_id: RunId) -> RunDetail:
        """A report folder: its files, summary.md and summary.json."""
        folder = run_folder(_root_or_404(), run_id)
        md = folder / "summary.md"
        js = folder / "summary.json"
        summary_json = None
        if js.is_file():
            try:
                summary_json = json.loads(js.read_text(encoding="utf-8"))
            except ValueError:
                summary_json = None
        return RunDetail(id=run_id, files=_files(folder), summary_md=md.read_text(encoding="utf-8") if md.is_file() else None,
                         summary_json=summary_json)

    return router


__all__ = ["RUNS_ENV", "RunDetail", "RunList", "RunOut", "list_runs", "run_folder", "runs_root", "runs_router"]
