"""docs/API.md's Python SSE example, run against a live server whose model is silent for
longer than httpx's default 5 s read timeout after the decision event (before: ReadTimeout)."""
from __future__ import annotations

import re
from pathlib import Path

import httpx

from ctxroute.pipelines.llm.scripted import ScriptedLLM
from tests.api.conftest import DOCS, upload

API_MD = Path(__file__).resolve().parents[2] / "docs" / "API.md"
MARKER = "<!-- example: sse -->"


def test_sse_example_survives_a_slow_first_token(settings_factory, live_server, capsys):
    m = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", API_MD.read_text(), re.S)
    assert m, f"docs/API.md lost its {MARKER} block"
    llm = ScriptedLLM(default="The harbour master is Captain Ruth Okafor [S3].", latency_s=5.5)
    server = live_server(settings_factory(reader="llm"), llm=llm)
    with httpx.Client(base_url=server.url, timeout=30) as c:
        c.post("/v1/collections", json={"name": "demo"})
        assert upload(c, "demo", DOCS).status_code == 201
    code = m.group(1).replace("http://127.0.0.1:8000", server.url)
    code = code.replace("Who is the CFO?", "Who is the harbour master?")
    exec(compile(code, "docs/API.md", "exec"), {})
    events = [line.split(" ", 1)[0] for line in capsys.readouterr().out.splitlines()]
    assert events[0] == "decision" and events[-1] == "done" and "delta" in events, events
    assert "error" not in events
