"""The /ui page in headless Chromium against a real server: upload, ask, watch the route and
the streamed answer, open a citation in its source; keys (401), another tenant's collection
(404), a bad upload, the evaluation view, keyboard use and 200% zoom."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.api.conftest import DOCS, LiveServer
from tests.ui.conftest import KEY_A, KEY_B, Shots

ROUTES = {"rag", "lc", "mr", "hybrid", "extractive"}

# Records the order in which parts of the answer appear in the page (set before app.js runs).
OBSERVER = """
window.__seen = [];
document.addEventListener('DOMContentLoaded', () => {
  const note = (what) => { if (!window.__seen.includes(what)) window.__seen.push(what); };
  const within = (node, id) => node && (node.id === id || (node.parentElement && node.parentElement.closest('#' + id)));
  new MutationObserver((records) => {
    for (const r of records) {  // in the order the page made the changes
      if (r.type === 'attributes' && r.target.id === 'answer' && r.target.dataset.done === '1') note('done');
      if (r.type !== 'childList' || !r.addedNodes.length) continue;
      if (within(r.target, 'decision-route') && r.target.textContent !== '…') note('decision');
      if (r.target.id === 'answer' && window.__seen.includes('decision')) note('delta');
      if (r.target.id === 'citations') note('citation');
    }
  }).observe(document.body, {subtree: true, childList: true, attributes: true, attributeFilter: ['data-done']});
});
"""


def client(server: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=server.url, headers={"Authorization": f"Bearer {key}"}, timeout=30)


def use_key(page: Any, key: str) -> None:
    page.fill("#api-key", key)
    page.click("#key-form button[type=submit]")
    page.wait_for_selector("#key-state:text('key set for this tab')")


def wait_answer(page: Any, extra: str = "") -> None:
    """Wait for the final answer; an error shown instead fails at once with its text."""
    page.wait_for_selector(f"#answer[data-done='1']{extra}, #alert:not([hidden])")
    assert page.locator("#alert").is_hidden(), page.inner_text("#alert")
    page.wait_for_selector(f"#answer[data-done='1']{extra}")


def file_payload(name: str, data: bytes, mime: str = "text/markdown") -> dict[str, Any]:
    return {"name": name, "mimeType": mime, "buffer": data}


def test_upload_ask_stream_and_open_citation(page: Any, server: LiveServer, shots: Shots) -> None:
    page.add_init_script(OBSERVER)
    page.goto(server.url + "/ui")
    use_key(page, KEY_A)
    page.fill("#new-name", "handbook")
    page.click("#create-form button[type=submit]")
    page.wait_for_selector("#collection-list .pick[aria-pressed=true]:has-text('handbook')")

    page.set_input_files("#file-input", [file_payload(n, t.encode()) for n, t in DOCS.items()])
    page.wait_for_function("document.querySelectorAll('#upload-list li.ok').length === 3")
    for name in DOCS:
        row = page.locator(f"#upload-list li[data-file='{name}']")
        assert row.locator(".status").inner_text() == "succeeded: 1 document added"
        assert row.locator("progress").evaluate("p => p.value") == 1
    page.wait_for_selector("#collection-list .pick:has-text('3 documents')")
    assert page.locator("#doc-list input[type=checkbox]").count() == 3
    shots.save(page, "ui-1-upload.png")

    question = "Who is the harbour master of Port Ellis?"
    page.fill("#question", question)
    page.click("#ask-button")
    wait_answer(page)

    # the decision first, then streamed text, then citations, then the final answer
    seen = page.evaluate("window.__seen")
    assert seen == ["decision", "delta", "citation", "done"], seen
    route = page.inner_text("#decision-route")
    assert route in ROUTES
    assert page.locator("#decision-reasons li").count() >= 1
    est_rows = page.locator("#estimates tbody tr")
    assert est_rows.count() >= 2
    assert page.locator("#estimates tbody tr.chosen").count() == 1
    assert page.locator("#estimates .bar").count() == est_rows.count()
    answer = page.inner_text("#answer")
    assert "Ruth Okafor" in answer, answer
    assert "Route taken:" in page.inner_text("#usage")

    # the same question through the API (served from the answer cache): the page shows its citations
    api = client(server, KEY_A).post("/v1/collections/handbook/query", json={"question": question}).json()
    chips = page.locator("#citations .chip")
    assert chips.count() == len(api["citations"]) >= 1
    shots.save(page, "ui-2-answer.png")

    chip = chips.first
    doc_id, start, end = chip.get_attribute("data-doc"), int(chip.get_attribute("data-start")), int(chip.get_attribute("data-end"))
    cited = api["citations"][0]
    assert (doc_id, start, end) == (cited["doc_id"], cited["start"], cited["end"])
    chip.click()
    page.wait_for_selector("#source-text mark.active")
    highlighted = "".join(page.locator("#source-text mark.active").all_inner_texts())
    source = client(server, KEY_A).get(f"/v1/collections/handbook/documents/{doc_id}/text").json()
    assert highlighted == source["text"][start:end] == cited["quote"]
    assert page.inner_text("#source-text") == source["text"]  # the whole document, verbatim
    assert f"characters {start}–{end}" in page.inner_text("#source-meta")
    # the opened sentence is in view and has the focus
    assert page.evaluate("document.activeElement.matches('#source-text mark.active')")
    assert page.locator("#source-text mark.active").first.is_visible()
    shots.save(page, "ui-3-source.png")

    assert page.outside == [] and page.js_errors == []  # type: ignore[attr-defined]


def test_401_without_key_and_tenant_isolation(page: Any, server: LiveServer, shots: Shots) -> None:
    with client(server, KEY_A) as a:
        r = a.post("/v1/collections", json={"name": "team-a-secret"})
        assert r.status_code in (201, 409)
    page.goto(server.url + "/ui/")
    alert = page.locator("#alert")
    alert.wait_for(state="visible")
    expected = httpx.get(server.url + "/v1/collections").json()  # what the API says without a key
    text = alert.inner_text()
    assert f"401 unauthorized: {expected['message']}" in text
    assert page.evaluate("document.activeElement.id") == "api-key"
    assert page.inner_text("#key-state") == "this server needs a key"
    assert page.locator("#collections-empty").is_hidden()  # not "no collections": we could not list them
    shots.save(page, "ui-0-key-401.png")

    use_key(page, "ui-wrong-key-0123456789")
    page.wait_for_selector("#alert[data-status='401']")
    assert page.evaluate("sessionStorage.getItem('ctxroute.apiKey')") == "ui-wrong-key-0123456789"
    assert page.evaluate("localStorage.length") == 0  # the key is kept for this tab only

    use_key(page, KEY_B)
    page.fill("#new-name", "team-b-notes")
    page.click("#create-form button[type=submit]")
    page.wait_for_selector("#collection-list .pick:has-text('team-b-notes')")
    names = page.locator("#collection-list .pick .name").all_inner_texts()
    assert "team-a-secret" not in names and "team-b-notes" in names

    # a collection removed behind the page's back answers 404, shown like the API shows it
    assert client(server, KEY_B).delete("/v1/collections/team-b-notes").status_code == 204
    page.fill("#question", "What is in the notes?")
    page.click("#ask-button")
    page.wait_for_selector("#alert[data-status='404']")
    assert "404 collection_not_found:" in page.inner_text("#alert")
    assert page.js_errors == []  # type: ignore[attr-defined]


def test_bad_upload_shows_the_api_error(page: Any, server: LiveServer, shots: Shots) -> None:
    with client(server, KEY_A) as a:
        a.post("/v1/collections", json={"name": "uploads"})
    page.goto(server.url + "/ui/")
    use_key(page, KEY_A)
    page.click("#collection-list .pick:has-text('uploads')")
    page.wait_for_selector("#collection-list .pick[aria-pressed=true]:has-text('uploads')")
    # dropped together onto the drop zone, as a drag from the file manager delivers them
    page.evaluate(
        """(files) => {
            const dt = new DataTransfer();
            for (const [name, type, text] of files) dt.items.add(new File([text], name, {type}));
            const drop = document.getElementById('drop');
            for (const type of ['dragenter', 'dragover', 'drop']) {
                drop.dispatchEvent(new DragEvent(type, {dataTransfer: dt, bubbles: true, cancelable: true}));
            }
        }""",
        [["broken.pdf", "application/pdf", "this is not a pdf"], ["tool.exe", "application/octet-stream", "MZ"],
         ["orchard.md", "text/markdown", DOCS["orchard.md"]]],
    )
    page.wait_for_function("document.querySelectorAll('#upload-list li.ok, #upload-list li.failed').length === 3")
    jobs = {j["errors"][0]["file"]: j for j in client(server, KEY_A).get("/v1/jobs").json()["jobs"]
            if j["collection"] == "uploads" and j["errors"]}
    for name in ("broken.pdf", "tool.exe"):
        row = page.locator(f"#upload-list li[data-file='{name}']")
        assert "failed" in (row.get_attribute("class") or "")
        message = jobs[name]["errors"][0]["message"]
        assert row.locator(".file-errors li").inner_text() == f"{name}: {message}"
    assert "not a PDF" in page.inner_text("#upload-list li[data-file='broken.pdf']")
    ok = page.locator("#upload-list li[data-file='orchard.md']")
    assert "ok" in (ok.get_attribute("class") or "")
    shots.save(page, "ui-4-bad-upload.png")


def _records() -> list[dict[str, Any]]:
    recs = []
    for i, (rag_ok, lc_ok) in enumerate([(1, 1), (1, 0), (0, 1), (1, 1)]):
        for route, ok, tok in (("rag", rag_ok, 120), ("lc", lc_ok, 1500)):
            recs.append({
                "key": f"q{i}|{route}", "id": f"q{i}", "route_requested": route, "route_taken": route, "task": "lookup",
                "answerable": True, "correct": {"judge": float(ok)}, "prompt_tokens": tok, "completion_tokens": 10,
                "cost": tok / 1e6, "citation_precision": float(ok), "citation_recall": None, "fallbacks": [],
                "latency_ms": {"total": 10.0}, "error": None,
            })
    return recs


def test_evaluation_report_view(page: Any, server: LiveServer, shots: Shots, tmp_path: Path,
                                monkeypatch: pytest.MonkeyPatch) -> None:
    from ctxroute.eval.report import write_report

    runs = tmp_path / "runs"
    report = write_report(_records(), runs / "toy" / "report", title="Toy run", n_boot=50)
    (tmp_path / "secret.md").write_text("outside the runs directory")
    monkeypatch.setenv("CTXROUTE_RUNS_DIR", str(runs))
    page.goto(server.url + "/ui/")
    use_key(page, KEY_B)
    page.wait_for_selector("#run-select option[value='toy/report']", state="attached")
    page.select_option("#run-select", "toy/report")
    page.wait_for_selector("#run-summary table")
    assert page.inner_text("#run-summary h3") == "Toy run"
    header = page.locator("#run-summary table").first.locator("th").all_inner_texts()
    assert header[:2] == ["route / policy", "n"]
    pngs = sorted(p.name for p in report.files if p.suffix == ".png")
    page.wait_for_function(f"document.querySelectorAll('#run-plots img').length === {len(pngs)}")
    page.wait_for_function("Array.from(document.querySelectorAll('#run-plots img')).every(i => i.complete && i.naturalWidth > 0)")
    assert page.locator("#run-plots figcaption").first.inner_text() == "pareto"
    page.locator("#eval").scroll_into_view_if_needed()
    page.evaluate("document.getElementById('eval').scrollIntoView()")
    shots.save(page, "ui-6-eval.png")
    # the server serves nothing outside the runs directory
    with client(server, KEY_B) as b:
        for bad in ("/v1/runs/..%2Fsecret.md", "/v1/runs/toy/report/files/..%2F..%2F..%2Fsecret.md",
                    "/v1/runs/toy%2F..%2F..%2Fsecret/files/summary.md"):
            r = b.get(bad)
            assert r.status_code in (404, 422) and "outside" not in r.text, (bad, r.text)
        assert b.get("/v1/runs/toy/report/files/summary.json").json() == json.loads(
            (runs / "toy" / "report" / "summary.json").read_text())
    monkeypatch.delenv("CTXROUTE_RUNS_DIR")
    assert client(server, KEY_B).get("/v1/runs").json() == {"configured": False, "runs": []}
    assert httpx.get(server.url + "/v1/runs").status_code == 401


def test_keyboard_only_and_200_percent_zoom(browser: Any, server: LiveServer, shots: Shots) -> None:
    with client(server, KEY_A) as a:
        a.post("/v1/collections", json={"name": "keyboard"})
        files = [("files", (n, t.encode(), "text/markdown")) for n, t in DOCS.items()]
        assert a.post("/v1/collections/keyboard/files", files=files).status_code == 201
    # 200% zoom of a 1280x900 window: half the CSS pixels, twice the device pixels
    context = browser.new_context(viewport={"width": 640, "height": 450}, device_scale_factor=2, bypass_csp=True)
    try:
        page = context.new_page()
        page.goto(server.url + "/ui/")
        page.focus("#api-key")
        page.keyboard.type(KEY_A)
        page.keyboard.press("Enter")
        page.wait_for_selector("#collection-list .pick:has-text('keyboard')")
        # choose the collection with the keyboard
        page.focus("#collection-list li:has-text('keyboard') .pick")
        page.keyboard.press("Enter")
        page.wait_for_selector("#collection-list .pick[aria-pressed=true]:has-text('keyboard')")
        # the skip link leads to the question; Ctrl+Enter asks
        page.focus(".skip")
        page.keyboard.press("Enter")
        assert page.evaluate("location.hash") == "#question"
        page.focus("#question")
        page.keyboard.type("When was the Greenvale orchard planted?")
        page.keyboard.press("Control+Enter")
        wait_answer(page)
        assert "planted by the Moretti family in 1952" in page.inner_text("#answer")
        # Tab from the last control before the chips reaches a citation chip; Enter opens it
        page.focus("#answer")
        chip = page.locator("#citations .chip").first
        for _ in range(40):
            page.keyboard.press("Tab")
            if page.evaluate("document.activeElement.classList.contains('chip')"):
                break
        assert page.evaluate("document.activeElement.classList.contains('chip')")
        page.keyboard.press("Enter")
        page.wait_for_selector("#source-text mark.active")
        assert chip.get_attribute("aria-current") == "true"
        # nothing wider than the window at 200%: no horizontal scrolling
        assert page.evaluate("document.documentElement.scrollWidth <= document.documentElement.clientWidth + 1")
        assert page.evaluate("parseFloat(getComputedStyle(document.querySelector('#answer')).fontSize)") >= 14
        shots.save(page, "ui-5-zoom200.png")
    finally:
        context.close()


def _two_page_pdf() -> bytes:
    import io

    from reportlab.pdfgen import canvas

    buf = io.BytesIO()
    c = canvas.Canvas(buf)
    c.drawString(72, 720, "The Cape Morrow guide describes the northern coast.")
    c.drawString(72, 700, "The village has one bakery and a small school.")
    c.showPage()
    c.drawString(72, 720, "The lighthouse on Cape Morrow was built in 1871.")
    c.drawString(72, 700, "Its lamp can be seen from forty kilometres away.")
    c.showPage()
    c.save()
    return buf.getvalue()


def test_pdf_citation_shows_its_page(page: Any, server: LiveServer, shots: Shots) -> None:
    with client(server, KEY_A) as a:
        a.post("/v1/collections", json={"name": "guides"})
    page.goto(server.url + "/ui/")
    use_key(page, KEY_A)
    page.click("#collection-list .pick:has-text('guides')")
    page.wait_for_selector("#collection-list .pick[aria-pressed=true]:has-text('guides')")
    page.set_input_files("#file-input", [file_payload("cape.pdf", _two_page_pdf(), "application/pdf")])
    page.wait_for_selector("#upload-list li.ok[data-file='cape.pdf']")
    page.wait_for_selector("#doc-list label:has-text('2 pages')")
    page.fill("#question", "When was the lighthouse on Cape Morrow built?")
    page.click("#ask-button")
    wait_answer(page)
    chip = page.locator("#citations .chip").first
    assert "page 2" in chip.inner_text()
    chip.click()
    page.wait_for_selector("#source-text mark.active")
    doc_id, start, end = chip.get_attribute("data-doc"), int(chip.get_attribute("data-start")), int(chip.get_attribute("data-end"))
    source = client(server, KEY_A).get(f"/v1/collections/guides/documents/{doc_id}/text").json()
    assert len(source["page_starts"]) == 2 and start >= source["page_starts"][1]
    highlighted = "".join(page.locator("#source-text mark.active").all_inner_texts())
    assert highlighted == source["text"][start:end] and "1871" in highlighted
    assert ", page 2" in page.inner_text("#source-meta")
    # a page marker before the second page's text (CSS content: not part of the text itself)
    assert page.locator("#source-text .pagebreak[data-page='2']").count() == 1
    assert page.inner_text("#source-text").replace("\n", "") == source["text"].replace("\n", "")


def test_forced_route_scope_and_fallback_are_shown(page: Any, server: LiveServer, shots: Shots) -> None:
    with client(server, KEY_B) as b:
        b.post("/v1/collections", json={"name": "ports"})
        files = [("files", (n, t.encode(), "text/markdown")) for n, t in DOCS.items()]
        added = b.post("/v1/collections/ports/files", files=files).json()["documents"]
    harbour = next(d["id"] for d in added if d["title"] == "Port Ellis harbour rules")
    page.goto(server.url + "/ui/")
    use_key(page, KEY_B)
    page.click("#collection-list .pick:has-text('ports')")
    page.wait_for_selector(f"#doc-list input[value='{harbour}']")
    page.check(f"#doc-list input[value='{harbour}']")
    page.select_option("#route", "rag")
    page.fill("#max-tokens", "5000")
    page.fill("#question", "Who is the harbour master of Port Ellis?")
    page.click("#ask-button")
    wait_answer(page)
    assert page.inner_text("#decision-route") == "rag"
    docs = {c.get_attribute("data-doc") for c in page.locator("#citations .chip").all()}
    assert docs == {harbour}
    assert "Ruth Okafor" in page.inner_text("#answer")

    # an answer citing two sentences of one document: both are highlighted, the opened one is active
    page.select_option("#route", "extractive")
    page.click("#ask-button")
    wait_answer(page, "[data-route='extractive']")
    chips = page.locator("#citations .chip")
    spans = [(c.get_attribute("data-doc"), int(c.get_attribute("data-start")), int(c.get_attribute("data-end")))
             for c in chips.all()]
    assert len(spans) == 2 and {d for d, _, _ in spans} == {harbour}, spans
    chips.nth(1).click()
    page.wait_for_selector("#source-text mark.active")
    text = client(server, KEY_B).get(f"/v1/collections/ports/documents/{harbour}/text").json()["text"]
    marks = page.locator("#source-text mark")
    assert sorted(marks.all_inner_texts()) == sorted(text[s:e] for _, s, e in spans)
    assert page.locator("#source-text mark.active").all_inner_texts() == [text[spans[1][1]:spans[1][2]]]

    # compressed-lc at a fifth of the text: the request carries the budget, the estimate follows it
    page.select_option("#route", "compressed-lc")
    page.fill("#compress-ratio", "0.2")
    with page.expect_request(lambda r: r.url.endswith("/query") and r.method == "POST") as sent:
        page.click("#ask-button")
    assert sent.value.post_data_json["compress"] == {"ratio": 0.2}
    wait_answer(page, "[data-route='compressed-lc']")
    preview = client(server, KEY_B).post("/v1/collections/ports/route", json={
        "question": "Who is the harbour master of Port Ellis?", "route": "compressed-lc", "docs": [harbour],
        "compress": {"ratio": 0.2}}).json()["decision"]
    want = next(e["prompt_tokens"] for e in preview["estimates"] if e["route"] == "compressed-lc")
    row = page.locator("#estimates tr:has(th:has-text('compressed-lc'))").inner_text()
    assert f"{want:,}" in row or str(want) in row, (row, want)
    page.fill("#compress-ratio", "")

    # the LLM fails: the engine falls back to the extractive reader, and the page says so
    page.select_option("#route", "")
    page.uncheck(f"#doc-list input[value='{harbour}']")
    page.fill("#max-tokens", "")
    page.fill("#question", "Is there a storm warning for Port Ellis harbour?")
    page.click("#ask-button")
    wait_answer(page)
    out = client(server, KEY_B).post("/v1/collections/ports/query",
                                     json={"question": "Is there a storm warning for Port Ellis harbour?", "cache": False}).json()
    assert out["fallbacks_taken"], out
    notices = page.locator("#notices li").all_inner_texts()
    for f in out["fallbacks_taken"]:
        assert f"Fallback taken: {f}" in notices, notices
    for w in out["warnings"]:
        assert f"Warning: {w}" in notices, notices
    page.locator("#ask").scroll_into_view_if_needed()
    shots.save(page, "ui-7-fallback.png")

    # deleting asks for a second press, then the collection is gone
    delete = page.locator("#collection-list li:has-text('ports') button.danger")
    delete.click()
    assert "Really delete ports?" in delete.inner_text()
    assert client(server, KEY_B).get("/v1/collections/ports").status_code == 200
    delete.click()
    page.wait_for_function("!document.querySelector('#collection-list').textContent.includes('ports')")
    assert client(server, KEY_B).get("/v1/collections/ports").status_code == 404


def test_development_mode_needs_no_key(browser: Any, tmp_path: Path) -> None:
    from ctxroute.api.settings import ApiSettings
    from ctxroute.retrievers.embedders import HashingEmbedder

    settings = ApiSettings(home=tmp_path / "home", embedder="hashing", reader="extractive", rate_limit_per_min=0)
    server = LiveServer(settings, embedder=HashingEmbedder()).start()
    context = browser.new_context(bypass_csp=True)
    try:
        page = context.new_page()
        errors: list[str] = []
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.goto(server.url + "/ui/")
        page.wait_for_selector("#collections-empty", state="visible")
        page.fill("#new-name", "notes")
        page.click("#create-form button[type=submit]")
        page.wait_for_selector("#collection-list .pick[aria-pressed=true]:has-text('notes')")
        assert page.locator("#alert").is_hidden() and page.inner_text("#key-state") == "no key"
        assert errors == []
        headers = httpx.get(server.url + "/ui/").headers
        assert "default-src 'self'" in headers["content-security-policy"]  # the browser loads nothing from elsewhere
    finally:
        context.close()
        server.stop()
