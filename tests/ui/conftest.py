"""Browser tests of the /ui page: a real uvicorn server (hashing embedder, scripted LLM)
and the system Chromium driven by Playwright. Playwright never downloads a browser here: it
launches ``/usr/bin/chromium`` (or ``$CTXROUTE_CHROMIUM``); without one the tests skip.

Screenshots go to a temporary folder; ``CTXROUTE_UI_SCREENSHOTS=docs`` writes them to docs/
(that is how docs/ui-*.png were made)."""
from __future__ import annotations

import os
import re
import shutil
from pathlib import Path
from typing import Any, Iterator

import pytest

from ctxroute.api.settings import ApiSettings
from ctxroute.errors import LLMServerError
from ctxroute.pipelines.llm.base import LLMRequest, prompt_text
from ctxroute.pipelines.llm.scripted import ScriptedLLM
from ctxroute.retrievers.embedders import HashingEmbedder
from tests.api.conftest import LiveServer

os.environ.setdefault("PLAYWRIGHT_SKIP_BROWSER_DOWNLOAD", "1")

ROOT = Path(__file__).resolve().parents[2]
KEY_A = "ui-tenant-a-key-0123456789"
KEY_B = "ui-tenant-b-key-0123456789"
LAUNCH_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--disable-dev-shm-usage",
]


def chromium_path() -> str | None:
    configured = os.environ.get("CTXROUTE_CHROMIUM", "")
    for cand in (configured, "/usr/bin/chromium", shutil.which("chromium") or "", shutil.which("chromium-browser") or ""):
        if cand and Path(cand).is_file() and os.access(cand, os.X_OK):
            return cand
    return None


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    exe = chromium_path()
    if exe is None:
        pytest.skip("no Chromium (apt-get install -y chromium; .ci/run installs it)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("playwright is not installed (pip install -e '.[dev]')")
    with sync_playwright() as p:
        # Playwright starts every launch with a fresh temporary profile (--user-data-dir).
        b = p.chromium.launch(executable_path=exe, headless=True, args=LAUNCH_ARGS)
        try:
            yield b
        finally:
            b.close()


def quoting(word: str) -> Any:
    """A reply that states the prompt sentence containing ``word`` and cites its id, as a
    model reading the evidence would (the sentence ids differ between routes and prompts)."""

    def reply(request: LLMRequest) -> str:
        m = re.search(r"\[(S\d+)\] ([^\n]*" + re.escape(word) + r"[^\n]*)", prompt_text(request.messages))
        return f"{m.group(2).strip()} [{m.group(1)}]" if m else "The documents do not say."

    return reply


def scripted_llm() -> ScriptedLLM:
    """The LLM of the page tests: deterministic, streamed in pieces, so the router has a real
    model profile to estimate routes against (the extractive reader makes no estimates)."""
    return ScriptedLLM(
        rules=[
            # matched against the whole prompt: phrased as the questions are, not as the documents
            (r"storm warning", LLMServerError("the LLM server answered 500 (scripted outage)")),
            (r"Who is the harbour master", quoting("Okafor")), (r"When was the Greenvale orchard planted", quoting("1952")),
            (r"When was the lighthouse on Cape Morrow built", quoting("1871")),
        ],
        default="The documents do not say.", latency_s=0.05,
    )


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    """Keys on: tenant ``team-a`` (KEY_A) and ``team-b`` (KEY_B)."""
    settings = ApiSettings(
        home=tmp_path_factory.mktemp("ui-home"), embedder="hashing", reader="llm", rate_limit_per_min=0,
        api_keys={KEY_A: "team-a", KEY_B: "team-b"}, background_upload_bytes=64 * 1024,
    )
    s = LiveServer(settings, embedder=HashingEmbedder(), llm=scripted_llm()).start()
    try:
        yield s
    finally:
        s.stop()


class Shots:
    """Where screenshots go; ``save(page, name)`` writes a 256-colour PNG (small enough for docs/)."""

    def __init__(self, folder: Path) -> None:
        self.folder = folder

    def save(self, page: Any, name: str) -> Path:
        import io

        from PIL import Image

        path = self.folder / name
        image = Image.open(io.BytesIO(page.screenshot())).convert("RGB")
        image.quantize(colors=256, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
        return path


@pytest.fixture()
def shots(tmp_path: Path) -> Shots:
    target = ROOT / "docs" if os.environ.get("CTXROUTE_UI_SCREENSHOTS") == "docs" else tmp_path
    target.mkdir(parents=True, exist_ok=True)
    return Shots(target)


@pytest.fixture()
def page(browser: Any, server: LiveServer) -> Iterator[Any]:
    """A fresh browser context (empty sessionStorage) on the server's /ui page. Requests to
    anything but the server are blocked and recorded in ``page.outside`` (works offline)."""
    # bypass_csp: the page's CSP forbids eval, which Playwright's wait_for_function polling uses;
    # the route guard below still proves the page loads nothing from elsewhere.
    context = browser.new_context(viewport={"width": 1200, "height": 860}, bypass_csp=True)
    outside: list[str] = []

    def guard(route: Any) -> None:
        if route.request.url.startswith(server.url + "/"):
            route.continue_()
        else:
            outside.append(route.request.url)
            route.abort()

    context.route("**/*", guard)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.outside = outside  # type: ignore[attr-defined]
    pg.js_errors = errors  # type: ignore[attr-defined]
    try:
        yield pg
    finally:
        context.close()
    assert errors == [], f"JavaScript errors on the page: {errors}"
    assert outside == [], f"the page tried to load from elsewhere: {outside}"
