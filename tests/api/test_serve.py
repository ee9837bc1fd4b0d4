"""`ctxroute serve` as a real process, and docker-compose.yml against the code: every
CTXROUTE_* variable it sets is one the code reads, and the commands it starts exist."""
from __future__ import annotations

import inspect
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml
from typer.testing import CliRunner

from ctxroute.api.settings import ENV_VARS, ApiSettings
from ctxroute.cli import app as cli_app
from ctxroute.pipelines.llm import factory as llm_factory
from tests.api.conftest import free_port

ROOT = Path(__file__).resolve().parents[2]


def code_env_vars() -> set[str]:
    """CTXROUTE_* names read by ApiSettings.from_env and LLMConfig.from_env."""
    names = set(ENV_VARS)
    names |= set(re.findall(r'"(CTXROUTE_[A-Z0-9_]+)"', inspect.getsource(ApiSettings.from_env)))
    names |= set(re.findall(r'"(CTXROUTE_[A-Z0-9_]+)"', inspect.getsource(llm_factory.LLMConfig.from_env)))
    return names


def test_compose_sets_only_variables_the_code_reads():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    services = compose["services"]
    assert {"api", "redis", "llm"} <= set(services)
    assert services["llm"]["image"].startswith("ghcr.io/ggml-org/llama.cpp:server")
    known = code_env_vars()
    set_vars = {k for svc in services.values() for k in (svc.get("environment") or {}) if k.startswith("CTXROUTE_")}
    assert set_vars, "the api service sets no CTXROUTE_* variables"
    assert set_vars <= known, f"compose sets variables no code reads: {sorted(set_vars - known)}"
    for required in ("CTXROUTE_LLM_BASE_URL", "CTXROUTE_LLM_MODEL", "CTXROUTE_LLM_API_KEY", "CTXROUTE_REDIS_URL",
                     "CTXROUTE_HOME", "CTXROUTE_ADMIN_KEY"):
        assert required in set_vars, required
    env = services["api"]["environment"]
    assert env["CTXROUTE_REDIS_URL"].startswith("redis://redis:")
    assert "//llm:" in env["CTXROUTE_LLM_BASE_URL"]


def test_compose_commands_exist():
    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
    command = compose["services"]["api"]["command"]
    assert command[:2] == ["ctxroute", "serve"]
    result = CliRunner().invoke(cli_app, [*command[1:], "--help"])
    assert result.exit_code == 0, result.output
    options = set(re.findall(r"--[a-z-]+", result.output))
    assert {o for o in command if o.startswith("--")} <= options
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert 'CMD ["ctxroute", "serve"]' in dockerfile
    docker_vars = set(re.findall(r"\b(CTXROUTE_[A-Z0-9_]+)=", dockerfile))
    assert docker_vars and docker_vars <= code_env_vars(), sorted(docker_vars - code_env_vars())


def test_serve_refuses_public_bind_without_keys(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env["CTXROUTE_HOME"] = str(tmp_path)
    result = CliRunner().invoke(cli_app, ["serve", "--host", "0.0.0.0"], env=env)
    assert result.exit_code == 2
    assert "refusing to listen on '0.0.0.0' without API keys" in " ".join(result.output.split())


def test_serve_demo_process(tmp_path):
    """`ctxroute serve --demo` in a subprocess: the demo collection is built and answers."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=str(tmp_path), CTXROUTE_EMBEDDER="hashing", CTXROUTE_READER="extractive",
               HF_HUB_OFFLINE="1")
    proc = subprocess.Popen(
        [sys.executable, "-m", "ctxroute", "serve", "--demo", "--port", str(port), "--log-level", "warning"],
        env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
    )
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 120
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "server did not become ready"
            time.sleep(0.2)
        cols = httpx.get(f"{url}/v1/collections").json()["collections"]
        assert [c["name"] for c in cols] == ["demo"] and cols[0]["documents"] > 0
        r = httpx.post(f"{url}/v1/collections/demo/query",
                       json={"question": "What was the operating margin of the Harbor division in 2035?"}, timeout=60)
        assert r.status_code == 200 and r.json()["citations"], r.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    assert (tmp_path / "collections" / "demo" / "CURRENT").exists()


def _outside_address() -> str | None:
    """This machine's address on its outbound interface (not loopback), if it has one."""
    import socket

    from ctxroute.api.settings import is_loopback

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this only picks the interface
            addr = s.getsockname()[0]
        except OSError:
            return None
    return None if is_loopback(addr) else addr


def _start(args: list[str], env: dict[str, str], url: str) -> subprocess.Popen:
    proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 120
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(f"{url}/readyz", timeout=1).status_code == 200:
                return proc
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, "server did not become ready"
        time.sleep(0.2)


def test_factory_bound_to_all_interfaces_refuses_remote_clients_without_keys(tmp_path):
    """`uvicorn --factory ctxroute.api.app:app_from_env --host 0.0.0.0` never reads
    CTXROUTE_HOST: the guard looks at the connection itself. Before: a remote POST created a
    collection (201)."""
    outside = _outside_address()
    if outside is None:
        pytest.skip("this machine has no non-loopback IPv4 address to connect from")
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("CTXROUTE_")}
    env.update(CTXROUTE_HOME=str(tmp_path), CTXROUTE_EMBEDDER="hashing", CTXROUTE_READER="extractive",
               HF_HUB_OFFLINE="1")
    proc = _start([sys.executable, "-m", "uvicorn", "--factory", "ctxroute.api.app:app_from_env", "--host", "0.0.0.0",
                   "--port", str(port), "--log-level", "warning"], env, f"http://127.0.0.1:{port}")
    try:
        remote = httpx.post(f"http://{outside}:{port}/v1/collections", json={"name": "pwned"}, timeout=10)
        assert remote.status_code == 403, remote.text
        assert "loopback" in remote.json()["message"] and "CTXROUTE_ADMIN_KEY" in remote.json()["message"]
        assert httpx.get(f"http://{outside}:{port}/v1/collections", timeout=10).status_code == 403
        assert httpx.get(f"http://{outside}:{port}/healthz", timeout=10).status_code == 200  # probes stay open
        local = httpx.post(f"http://127.0.0.1:{port}/v1/collections", json={"name": "mine"}, timeout=10)
        assert local.status_code == 201, local.text
    finally:
        proc.terminate()
        proc.wait(timeout=30)
        if proc.stdout:
            proc.stdout.close()
    assert not (tmp_path / "collections" / "pwned").exists()
