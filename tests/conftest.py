"""Shared fixtures. Real-server fixtures live in tests/redis_fixture.py (Redis) and tests/pg_fixture.py (PostgreSQL)."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

pytest_plugins = [f"tests.{m}" for m in ("redis_fixture", "pg_fixture") if (Path(__file__).parent / f"{m}.py").exists()]

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """../shared/data (third-party QA sets); tests that need it skip when it is absent."""
    if not SHARED_DATA.is_dir():
        pytest.skip(f"third-party QA sets not found at {SHARED_DATA} (see README, section 'Evaluation')")
    return SHARED_DATA
