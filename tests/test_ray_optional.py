"""Ray is optional: without --ray nothing imports it (checked in a fresh interpreter)."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

SCRIPT = r"""
import json, os, sys
from pathlib import Path
from typer.testing import CliRunner
import ctxroute.cli
from ctxroute.cli import app
import ctxroute.retrievers.distributed, ctxroute.eval.distributed  # importing the Ray modules does not import Ray
docs = Path(sys.argv[1])
res = CliRunner().invoke(app, ["ingest", str(docs), "--collection", "plain", "--embedder", "hashing"])
print(json.dumps({"exit": res.exit_code, "ray": sorted(m for m in sys.modules if m == "ray" or m.startswith("ray.")),
                  "output": res.output[-400:]}))
"""


def test_plain_ingest_and_cli_import_never_import_ray(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe lighthouse keeper was named Ada Byrne. She kept the lamp lit.\n")
    env = {"CTXROUTE_HOME": str(tmp_path / "home"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-c", SCRIPT, str(docs)], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["exit"] == 0, result["output"]
    assert result["ray"] == [], f"plain ingest imported {result['ray'][:5]}"


def test_ray_flag_without_ray_installed_says_how_to_get_it(tmp_path: Path, monkeypatch) -> None:
    """`--ray` where Ray is missing: one clear error naming the extra, nothing created."""
    from typer.testing import CliRunner

    from ctxroute.cli import app

    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now raises ImportError
    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "200")
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# A\n\nThe lighthouse keeper was named Ada Byrne.\n")
    res = CliRunner().invoke(app, ["ingest", str(docs), "-c", "x", "--embedder", "hashing", "--ray"])
    assert res.exit_code == 1 and "ctxroute[scale]" in res.output, res.output
    assert not (tmp_path / "home" / "collections" / "x").exists()
