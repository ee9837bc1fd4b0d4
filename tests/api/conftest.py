"""Real uvicorn servers on 127.0.0.1 (free port, in a thread) for the API tests."""
from __future__ import annotations

import socket
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import httpx
import pytest
import uvicorn

from ctxroute.api.app import create_app
from ctxroute.api.settings import ApiSettings
from ctxroute.retrievers.embedders import HashingEmbedder

ADMIN_KEY = "test-admin-key-0123456789abcdef"

# Three short documents with distinct facts (the extractive reader answers from them).
STATION = (
    "# Field Station Orion\n\n"
    "The Orion field station lies on the northern shore of Lake Varna. It was founded in 1987 by the "
    "glaciologist Dr. Helena Brandt. The station has twelve permanent researchers.\n\n"
    "## Power\n\n"
    "Electricity comes from a wind turbine rated at 45 kilowatts. A diesel generator serves as backup "
    "during the polar night. Fuel deliveries arrive by barge every August.\n\n"
    "## Research\n\n"
    "The main research topic is the retreat of the Varna glacier. Ice cores are stored in a freezer "
    "kept at minus thirty degrees Celsius. Weather balloons are launched twice a day at six o'clock.\n"
)
HARBOUR = (
    "# Port Ellis harbour rules\n\n"
    "Port Ellis harbour opens at five in the morning and closes at ten in the evening. Every vessel longer "
    "than twenty metres needs a pilot. The harbour master is Captain Ruth Okafor.\n\n"
    "## Fees\n\n"
    "Mooring costs eighteen euros per night for small boats. Fishing boats registered in Ellis pay no "
    "mooring fee. Fuel is sold at the eastern pier only.\n"
)
ORCHARD = (
    "# Greenvale orchard\n\n"
    "Greenvale orchard grows forty varieties of apples and six varieties of pears. The orchard was planted "
    "by the Moretti family in 1952. Harvest starts in the second week of September.\n\n"
    "Cider from Greenvale won a regional prize in 2019. The orchard shop sells honey from its own hives.\n"
)
DOCS = {"station.md": STATION, "harbour.md": HARBOUR, "orchard.md": ORCHARD}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class LiveServer:
    """A uvicorn server running ``create_app(settings, **kw)`` in a background thread."""

    def __init__(self, settings: ApiSettings, **app_kw: Any) -> None:
        self.settings = settings
        self.app_kw = app_kw
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.app = create_app(settings, **app_kw)
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> "LiveServer":
        config = uvicorn.Config(self.app, host="127.0.0.1", port=self.port, log_level="warning",
                                lifespan="on", timeout_graceful_shutdown=5, limit_concurrency=1000)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 60
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"uvicorn did not start on {self.url}")
            time.sleep(0.02)
        return self

    def stop(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
            self._server = None

    @property
    def svc(self) -> Any:
        return self.app.state.svc


@pytest.fixture()
def settings_factory(tmp_path: Path) -> Callable[..., ApiSettings]:
    def make(**kw: Any) -> ApiSettings:
        base: dict[str, Any] = dict(home=tmp_path / "home", embedder="hashing", reader="extractive",
                                    rate_limit_per_min=0, background_upload_bytes=64 * 1024)
        base.update(kw)
        return ApiSettings(**base)

    return make


@pytest.fixture()
def live_server() -> Iterator[Callable[..., LiveServer]]:
    """Factory: ``live_server(settings, llm=..., embedder=...)`` -> a started server (stopped at teardown)."""
    started: list[LiveServer] = []

    def start(settings: ApiSettings, **app_kw: Any) -> LiveServer:
        app_kw.setdefault("embedder", HashingEmbedder())
        server = LiveServer(settings, **app_kw).start()
        started.append(server)
        return server

    yield start
    for s in started:
        s.stop()


def upload(client: httpx.Client, collection: str, docs: dict[str, str], **params: Any) -> httpx.Response:
    files = [("files", (name, text.encode(), "text/markdown")) for name, text in docs.items()]
    return client.post(f"/v1/collections/{collection}/files", files=files, params=params)


def wait_job(client: httpx.Client, job_id: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/jobs/{job_id}").json()
        if job["status"] in ("succeeded", "partial", "failed", "interrupted"):
            return job
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not finish in {timeout} s")
