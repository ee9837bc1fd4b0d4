"""A REAL PostgreSQL 16 server with pgvector for tests, from the ``pgserver`` package (the
server binaries and the vector extension ship inside its wheel; it starts in a few seconds).

Run as root, pgserver creates a system user (``pgserver``) for the server process, since
PostgreSQL refuses to run as root. Fixtures: ``pg_server`` (session: the server, with
``get_uri()``) and ``pg_url`` (function: a fresh, empty database's URL, so tests never see
each other's collections).
"""
from __future__ import annotations

import itertools
import tempfile
import warnings
from typing import Any, Iterator

import pytest

_counter = itertools.count()


def pg_missing() -> str | None:
    """Why the PostgreSQL tests cannot run here, or None."""
    for module, what in (("pgserver", "the embedded PostgreSQL server"), ("psycopg", "the PostgreSQL driver"),
                         ("psycopg_pool", "psycopg's connection pool"), ("pgvector", "pgvector's Python types")):
        try:
            with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset (CI, containers)
                warnings.simplefilter("ignore")
                __import__(module)
        except ImportError:
            return f"{module} ({what}) is not installed: pip install 'ctxroute[scale]'"
    return None


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    reason = pg_missing()
    if reason:
        pytest.skip(reason)
    import pgserver  # imported once by pg_missing(), with its warning silenced

    from ctxroute.retrievers.pg_schema import close_pools

    tmp = tempfile.mkdtemp(prefix="ctxroute-pg-")
    server = pgserver.get_server(tmp, cleanup_mode="stop")
    try:
        yield server
    finally:
        close_pools()
        server.cleanup()


@pytest.fixture
def pg_url(pg_server: Any) -> str:
    """A new empty database on the session's server; its postgresql:// URL."""
    import psycopg

    base = pg_server.get_uri()
    name = f"ctxroute_test_{next(_counter)}"
    with psycopg.connect(base, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name}")
        conn.execute(f"CREATE DATABASE {name}")
    return base.replace("/postgres?", f"/{name}?", 1)
