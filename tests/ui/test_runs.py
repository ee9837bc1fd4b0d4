"""The run-report endpoints serve report folders under CTXROUTE_RUNS_DIR and nothing else
(no browser needed)."""
from __future__ import annotations

from pathlib import Path

import pytest

from fastapi import FastAPI
from fastapi.testclient import TestClient

from ctxroute.api import errors as api_errors
from ctxroute.api.ui.runs import list_runs, run_folder, runs_root, runs_router
from ctxroute.errors import NotFound


def _report(folder: Path) -> Path:
    folder.mkdir(parents=True)
    (folder / "summary.md").write_text("# Evaluation report\n")
    (folder / "pareto.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return folder


def test_only_report_folders_inside_the_root(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    _report(root / "live" / "a")
    _report(root / "b")
    (root / "empty").mkdir()
    outside = _report(tmp_path / "outside")
    (root / "escape").symlink_to(outside, target_is_directory=True)
    (root / "live" / "a" / "leak.md").symlink_to(tmp_path / "secret.md")
    (tmp_path / "secret.md").write_text("secret")

    monkeypatch.setenv("CTXROUTE_RUNS_DIR", str(root))
    assert runs_root() == root.resolve()
    runs = {r.id: r.files for r in list_runs(root.resolve())}
    assert runs == {"b": ["pareto.png", "summary.md"], "live/a": ["pareto.png", "summary.md"]}
    assert run_folder(root.resolve(), "live/a") == (root / "live" / "a").resolve()
    for bad in ("escape", "../outside", "live/../../outside", "/etc", "", "empty", "live", "b/", "a\\b"):
        with pytest.raises(NotFound):
            run_folder(root.resolve(), bad)


def test_unset_or_missing_root(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.delenv("CTXROUTE_RUNS_DIR", raising=False)
    assert runs_root() is None
    monkeypatch.setenv("CTXROUTE_RUNS_DIR", str(tmp_path / "nope"))
    assert runs_root() is None


def test_http_serves_report_files_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root = tmp_path / "runs"
    _report(root / "r1")
    (tmp_path / "secret.md").write_text("secret")
    (root / "r1" / "leak.md").symlink_to(tmp_path / "secret.md")
    (root / "r1" / "notes.txt").write_text("not a report file")
    monkeypatch.setenv("CTXROUTE_RUNS_DIR", str(root))
    app = FastAPI()
    api_errors.install(app)
    app.include_router(runs_router(lambda: None))
    with TestClient(app) as c:
        assert c.get("/v1/runs/r1/files/pareto.png").headers["content-type"] == "image/png"
        assert c.get("/v1/runs/r1").json()["summary_md"] == "# Evaluation report\n"
        for bad in ("/v1/runs/r1/files/leak.md", "/v1/runs/r1/files/notes.txt", "/v1/runs/r1/files/..%2F..%2Fsecret.md",
                    "/v1/runs/r1/files/.hidden.md", "/v1/runs/..%2Fsecret.md", "/v1/runs/r2"):
            r = c.get(bad)  # 422: not a run id or file name at all; 404: a valid name that is not served
            assert r.status_code in (404, 422) and "secret" not in r.text.replace("secret.md", ""), (bad, r.text)
            assert r.json()["code"] in ("not_found", "invalid_request")
        assert c.get("/v1/runs/r1/files/leak.md").status_code == 404
        assert c.get("/v1/runs/..%2Fsecret.md").status_code == 422
