"""The README's retrieval example, run as a test.

The README marks the block with ``<!-- example: collection -->``; until it does, the copy
below runs instead. Keep the two identical.
"""
from __future__ import annotations

import re
from pathlib import Path

import pytest

EXAMPLE = '''\
from pathlib import Path
from ctxroute.retrievers import CollectionConfig, CollectionStore, HashingEmbedder, document_from_text

store = CollectionStore(Path(".ctxroute/collections"))
embedder = HashingEmbedder()  # test double; SentenceTransformerEmbedder() is all-MiniLM-L6-v2
collection = store.open_or_create("contracts", CollectionConfig.for_embedder(embedder), embedder)  # reruns reuse it
stats = collection.add_documents([
    document_from_text(
        "# Lease\\n\\n## Rent\\nRent is 1,200 dollars a month.\\n\\n"
        "## Termination\\nEither party may terminate with sixty days written notice.\\n",
        source="lease.md", format="md",
    ),
])
print(stats.passages, "passages,", stats.tokens, "tokens, version", collection.version)

for hit in collection.search("how much notice to end the lease", k=3):  # hybrid: bm25 + dense + graph
    print(f"{hit.score:.3f}", hit.chunk.heading, dict(hit.ranks), collection.text(hit.chunk))

collection = store.open("contracts", embedder)  # later, or in another process
'''

README = Path(__file__).resolve().parents[1] / "README.md"
MARKER = "<!-- example: collection -->"


def _example() -> str:
    text = README.read_text(encoding="utf-8") if README.exists() else ""
    if MARKER in text:
        m = re.search(re.escape(MARKER) + r"\s*```python\n(.*?)```", text, re.S)
        assert m, f"README has {MARKER} but no ```python block right after it"
        return m.group(1)
    return EXAMPLE


def test_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_example(), "README.md", "exec"), namespace)
    out = capsys.readouterr().out
    collection = namespace["collection"]
    hits = collection.search("how much notice to end the lease", k=3)  # type: ignore[attr-defined]
    assert hits[0].chunk.heading == "Termination"
    assert "sixty days written notice" in out
    assert (tmp_path / ".ctxroute" / "collections" / "contracts" / "CURRENT").exists()


ENGINE_MARKER = "<!-- example: engine -->"


def test_readme_engine_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """The README's engine example, continuing the collection example in the same namespace."""
    text = README.read_text(encoding="utf-8")
    m = re.search(re.escape(ENGINE_MARKER) + r"\s*```python\n(.*?)```", text, re.S)
    assert m, f"README lost its {ENGINE_MARKER} block"
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    exec(compile(_example(), "README.md", "exec"), namespace)
    exec(compile(m.group(1), "README.md", "exec"), namespace)
    answer = namespace["answer"]
    assert answer.route_taken.value == "extractive"  # type: ignore[attr-defined]
    assert answer.citations, "the extractive reader cites the sentence it answers with"  # type: ignore[attr-defined]
    assert any("sixty days" in c.quote for c in answer.citations)  # type: ignore[attr-defined]
    assert "sixty days" in capsys.readouterr().out


def test_readme_example_runs_twice(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    """A new user runs the example again in the same folder: no `Conflict: collection 'contracts'
    already exists`, and the same document is not added twice."""
    monkeypatch.chdir(tmp_path)
    for _ in range(2):
        namespace: dict[str, object] = {}
        exec(compile(_example(), "README.md", "exec"), namespace)
    collection = namespace["collection"]
    assert collection.stats().n_docs == 1  # type: ignore[attr-defined]
    assert "sixty days written notice" in capsys.readouterr().out


def test_messages_name_readme_sections_that_exist() -> None:
    """Skip reasons and messages that point at a README section point at one that exists."""
    headings = {m.group(1).strip() for m in re.finditer(r"^#+ (.+)$", README.read_text(encoding="utf-8"), re.M)}
    root = README.parent
    cited = []
    for path in [*(root / "tests").rglob("*.py"), *(root / "ctxroute").rglob("*.py")]:
        for m in re.finditer(r"README, section '([A-Z][\w ]+)'|README: ([A-Z][\w ]+)\)", path.read_text(encoding="utf-8")):
            cited.append((path.name, m.group(1) or m.group(2)))
    assert cited, "no README section references found"
    assert [c for c in cited if c[1] not in headings] == []
