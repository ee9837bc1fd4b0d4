"""Schema-driven testing with schemathesis's own runner (all checks; examples, coverage,
fuzzing and stateful phases) against a real server: with a tenant key, on an empty collection, and with
the admin key. Every operation is run to its example count (no deadline): a failure of any
check (a 5xx, a schema-valid request rejected, an invalid one accepted, a response off its
schema, a 405 without Allow, ...) fails the test with schemathesis's report."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from ctxroute.api.settings import ApiSettings
from ctxroute.retrievers.embedders import HashingEmbedder
from tests.api.conftest import ADMIN_KEY, DOCS, LiveServer, upload

TENANT_KEY = "fuzz-tenant-key-0123456789abcdef"
CONFIG = Path(__file__).resolve().parents[2] / "schemathesis.toml"
MAX_EXAMPLES = int(os.environ.get("CTXROUTE_FUZZ_EXAMPLES", "20"))
ST = [sys.executable, "-m", "schemathesis.cli"]


@pytest.fixture(scope="module")
def fuzz_server(tmp_path_factory):
    home = tmp_path_factory.mktemp("fuzz")
    server = LiveServer(
        ApiSettings(home=home, embedder="hashing", reader="extractive", rate_limit_per_min=0, auth_failures_per_min=0,
                    admin_key=ADMIN_KEY, api_keys={TENANT_KEY: "team-fuzz"},
                    max_upload_bytes=256 * 1024, background_upload_bytes=64 * 1024),
        embedder=HashingEmbedder(),
    ).start()
    with httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {TENANT_KEY}"}, timeout=30) as c:
        assert c.post("/v1/collections", json={"name": "empty"}).status_code == 201
        assert c.post("/v1/collections", json={"name": "full"}).status_code == 201
        assert upload(c, "full", DOCS).status_code == 201
    yield server
    server.stop()


def run_schemathesis(url: str, key: str, report: Path, *extra: str, config: str = "") -> subprocess.CompletedProcess[str]:
    """The command the README gives, with a fixed seed (reproducible in CI); ``config``: a
    schemathesis.toml for this run."""
    path = report.with_suffix(".toml")
    path.write_text(CONFIG.read_text() + "\n" + config)
    pre = ["--config-file", str(path)]
    cmd = [*ST, *pre, "run", f"{url}/openapi.json", "-H", f"Authorization: Bearer {key}", "--checks", "all",
           "--phases", "examples,coverage,fuzzing,stateful", "--max-examples", str(MAX_EXAMPLES), "--seed", "1",
           "--workers", "1", "--no-shrink", "--request-timeout", "60", "--report", "junit",
           "--report-junit-path", str(report), "--generation-database", "none", *extra]
    env = dict(os.environ, NO_COLOR="1", COLUMNS="200")
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=900, cwd=report.parent)


def _check(result: subprocess.CompletedProcess[str]) -> None:
    out = result.stdout + result.stderr
    assert result.returncode == 0, out[-8000:]
    assert "Test cases:" in out and "Tested: " in out, out[-3000:]


def test_tenant_key(fuzz_server, tmp_path):
    """Every tenant operation, names generated or chained by links (collections created,
    documents added, queried and deleted in the stateful phase)."""
    _check(run_schemathesis(fuzz_server.url, TENANT_KEY, tmp_path / "tenant.xml",
                            "--exclude-path-regex", "^/v1/admin"))


def test_empty_collection(fuzz_server, tmp_path):
    """Reads, routes and queries on a collection with no documents (nothing may add to it)."""
    with httpx.Client(base_url=fuzz_server.url, headers={"Authorization": f"Bearer {TENANT_KEY}"}) as c:
        assert c.get("/v1/collections/empty").json()["documents"] == 0
    result = run_schemathesis(
        fuzz_server.url, TENANT_KEY, tmp_path / "empty.xml", "--exclude-path-regex", "^/v1/admin|/files$",
        "--exclude-method", "DELETE", "--exclude-name", "POST /v1/collections/{name}/documents",
        "--exclude-name", "POST /v1/collections", config='[parameters]\n"path.name" = "empty"\n',
    )
    _check(result)
    with httpx.Client(base_url=fuzz_server.url, headers={"Authorization": f"Bearer {TENANT_KEY}"}) as c:
        assert c.get("/v1/collections/empty").json()["documents"] == 0


def test_admin_key(fuzz_server, tmp_path):
    """Tenants and keys with the admin key (tenant routes answer 403 to it)."""
    _check(run_schemathesis(fuzz_server.url, ADMIN_KEY, tmp_path / "admin.xml"))
