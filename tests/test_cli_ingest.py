from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from ctxroute.cli import app

LEASE = """# Residential Lease

## Rent
The tenant pays rent of 1,200 dollars on the first day of each month. Late payments incur a fee of 50 dollars.

## Termination
Either party may terminate this lease with sixty days written notice. The deposit is returned within thirty days.
"""
BIOLOGY = "Photosynthesis converts light energy into chemical energy. Chlorophyll absorbs red and blue light."


@pytest.fixture()
def runner(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> CliRunner:
    monkeypatch.setenv("CTXROUTE_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COLUMNS", "220")
    monkeypatch.delenv("CTXROUTE_EMBEDDER", raising=False)
    return CliRunner()


@pytest.fixture()
def files(tmp_path: Path) -> Path:
    d = tmp_path / "docs"
    d.mkdir()
    (d / "lease.md").write_text(LEASE)
    (d / "bio.txt").write_text(BIOLOGY)
    (d / "empty.txt").write_text("   \n")
    (d / "binary.txt").write_bytes(b"\x00\x01\x02binary")
    return d


def _ingest(runner: CliRunner, *args: str) -> object:
    return runner.invoke(app, ["ingest", *args, "--embedder", "hashing", "--passage-tokens", "32"])


def test_ingest_reports_bad_files_and_summarises(runner: CliRunner, files: Path) -> None:
    result = _ingest(runner, str(files), "--collection", "demo")
    assert result.exit_code == 0, result.output
    out = result.output
    failed = [line for line in out.splitlines() if line.startswith("failed ")]
    assert len(failed) == 2 and any("empty.txt" in f for f in failed) and any("binary.txt" in f for f in failed), out
    assert not any(line.startswith("skipped ") for line in out.splitlines())  # nothing was a duplicate
    assert _row(out)[-2:] == [0, 2]  # skipped, failed
    assert "ingested into 'demo'" in out and "seconds per stage" in out
    for column in ("documents", "sections", "passages", "sentences", "tokens", "embed"):
        assert column in out
    again = _ingest(runner, str(files / "lease.md"), "--collection", "demo")
    assert again.exit_code == 0 and "skipped" in again.output and "already in the collection" in again.output
    assert _row(again.output)[-2:] == [1, 0]


def _row(output: str) -> list[int]:
    """The numbers of the ingest summary row (documents ... skipped, failed)."""
    for line in output.splitlines():
        cells = [c.strip().replace(",", "") for c in line.strip("│ ").split("│")]
        if len(cells) == 7 and all(c.isdigit() for c in cells):
            return [int(c) for c in cells]
    raise AssertionError(f"no summary row in:\n{output}")


def test_ingest_names_ignored_files_duplicates_and_empty_folders(runner: CliRunner, files: Path, tmp_path: Path) -> None:
    (files / "notes.docx").write_bytes(b"PK\x03\x04 not read")
    (files / "copy.md").write_text(LEASE)  # the same text twice in one batch: a duplicate
    result = _ingest(runner, str(files), "--collection", "demo")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("ignored ") and "notes.docx" in line and ".docx" in line for line in lines), result.output
    assert any(line.startswith("skipped ") and "duplicate" in line for line in lines), result.output
    assert _row(result.output)[-2:] == [1, 2]  # one duplicate skipped, empty.txt and binary.txt failed
    empty = tmp_path / "nothing"
    empty.mkdir()
    (empty / "slides.pptx").write_bytes(b"x")
    result = _ingest(runner, str(empty), "--collection", "demo")
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "no file to ingest in" in out and ".md" in out and "slides.pptx" in out, out


def test_ingest_exit_code_1_when_everything_fails(runner: CliRunner, files: Path) -> None:
    result = _ingest(runner, str(files / "empty.txt"), str(files / "binary.txt"), "--collection", "bad")
    assert result.exit_code == 1
    out = " ".join(result.output.split())
    assert "none of the 2 file(s) could be loaded" in out and "Traceback" not in out
    assert "no collections" in runner.invoke(app, ["collections", "list"]).output


def test_search_shows_rank_title_section_span_and_retriever_ranks(runner: CliRunner, files: Path) -> None:
    assert _ingest(runner, str(files), "--collection", "demo").exit_code == 0
    result = runner.invoke(app, ["search", "how many days notice to terminate", "--collection", "demo",
                                 "--retriever", "hybrid", "--k", "3"])
    assert result.exit_code == 0, result.output
    assert "Residential Lease" in result.output and "Termination" in result.output and "bm25 #1" in result.output
    as_json = runner.invoke(app, ["search", "chlorophyll", "-c", "demo", "--retriever", "bm25", "--json"])
    hits = json.loads(as_json.output)["hits"]
    assert hits[0]["title"] == "bio" and "Chlorophyll" in hits[0]["text"]
    assert hits[0]["text"] == BIOLOGY[hits[0]["start"]:hits[0]["end"]]
    bad = runner.invoke(app, ["search", "x", "-c", "demo", "--retriever", "magic"])
    assert bad.exit_code == 1 and "unknown retriever 'magic'" in bad.output


def test_collections_and_docs_commands(runner: CliRunner, files: Path) -> None:
    assert _ingest(runner, str(files), "--collection", "demo").exit_code == 0
    listed = runner.invoke(app, ["collections", "list"])
    assert listed.exit_code == 0 and "demo" in listed.output and "hashing-256" in listed.output
    shown = runner.invoke(app, ["collections", "show", "demo", "--json"])
    manifest = json.loads(shown.output)
    assert manifest["counts"]["documents"] == 2 and manifest["config"]["chunking"]["passage_tokens"] == 32
    docs = runner.invoke(app, ["docs", "list", "--collection", "demo"])
    assert "Residential Lease" in docs.output
    lease_id = next(i for i, d in manifest["documents"].items() if d["title"] == "Residential Lease")
    removed = runner.invoke(app, ["docs", "rm", lease_id, "--collection", "demo"])
    assert removed.exit_code == 0, removed.output
    assert "Residential Lease" not in runner.invoke(app, ["docs", "list", "-c", "demo"]).output
    missing = runner.invoke(app, ["docs", "rm", lease_id, "--collection", "demo"])
    assert missing.exit_code == 1 and "is not in collection 'demo'" in missing.output
    assert runner.invoke(app, ["collections", "rm", "demo"], input="n\n").exit_code == 1  # aborted
    assert runner.invoke(app, ["collections", "rm", "demo", "--yes"]).exit_code == 0
    gone = runner.invoke(app, ["collections", "show", "demo"])
    assert gone.exit_code == 1 and "does not exist" in gone.output and "Traceback" not in gone.output


def test_clear_errors_for_bad_names_and_mismatches(runner: CliRunner, files: Path) -> None:
    bad = _ingest(runner, str(files), "--collection", "../etc")
    assert bad.exit_code == 1 and "invalid collection name" in bad.output
    assert _ingest(runner, str(files / "bio.txt"), "--collection", "demo").exit_code == 0
    other = runner.invoke(app, ["ingest", str(files / "lease.md"), "-c", "demo", "--embedder", "hashing-64"])
    assert other.exit_code == 1 and "'hashing-256'" in other.output and "'hashing-64'" in other.output
    chunk = runner.invoke(app, ["ingest", str(files / "lease.md"), "-c", "demo", "--passage-tokens", "64"])
    assert chunk.exit_code == 1 and "keeps one chunking" in chunk.output
    assert runner.invoke(app, ["search", "x", "-c", "nope"]).exit_code == 1


def test_long_text_policy_is_kept_by_the_collection(runner: CliRunner, files: Path) -> None:
    made = _ingest(runner, str(files / "lease.md"), "-c", "cut", "--long-text", "truncate")
    assert made.exit_code == 0, made.output
    shown = json.loads(runner.invoke(app, ["collections", "show", "cut", "--json"]).output)
    assert shown["config"]["long_text"] == "truncate"
    again = _ingest(runner, str(files / "bio.txt"), "-c", "cut", "--long-text", "windows")
    assert again.exit_code == 1 and "keeps one policy" in again.output
    same = _ingest(runner, str(files / "bio.txt"), "-c", "cut")  # no flag: the collection's own policy
    assert same.exit_code == 0, same.output
    bad = _ingest(runner, str(files / "bio.txt"), "-c", "other", "--long-text", "squeeze")
    assert bad.exit_code != 0 and "--long-text" in bad.output
