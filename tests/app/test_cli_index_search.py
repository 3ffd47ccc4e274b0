"""`docrag index/search/status/delete` end to end: real PDFs, real encoder (tiny), real Qdrant Edge."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import badfiles
import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCRAG = [sys.executable, "-m", "app.cli"]


def docrag(*args: str, env: dict | None = None, timeout: float = 300) -> subprocess.CompletedProcess:
    full_env = {**os.environ, "DOCRAG_DPI": "48", **(env or {})}
    return subprocess.run([*DOCRAG, *args], capture_output=True, text=True, env=full_env, cwd=ROOT, timeout=timeout)


@pytest.fixture(scope="module")
def tiny_encoder(tmp_path_factory) -> Path:
    from moca_train.presets import init_checkpoint

    return init_checkpoint("tiny", tmp_path_factory.mktemp("enc") / "tiny", min_pixels=16 * 28 * 28,
                           max_pixels=64 * 28 * 28)


@pytest.fixture(scope="module")
def indexed(tmp_path_factory, debian_pdfs, tiny_encoder):
    """Examples + a real Debian PDF indexed with the tiny encoder."""
    base = tmp_path_factory.mktemp("cli")
    docs = base / "docs with space"
    shutil.copytree(ROOT / "examples", docs, ignore=shutil.ignore_patterns("*.py"))
    shutil.copy(debian_pdfs["sample-plain.pdf"], docs / "sample-plain.pdf")
    idx = base / "idx"
    result = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", str(tiny_encoder))
    assert result.returncode == 0, result.stderr
    return docs, idx, result


def test_index_summary_and_status(indexed, tiny_encoder):
    docs, idx, result = indexed
    assert "4 new, 0 changed, 0 unchanged, 0 failed" in result.stdout
    assert "Traceback" not in result.stderr
    status = json.loads(docrag("status", "--index-dir", str(idx), "--json").stdout)
    assert status["documents"] == 4 and status["pages"] == 2 + 1 + 1 + 30
    assert status["pages_with_visual"] == status["pages"]
    assert status["store_bytes"] > 0 and status["encoder"] == str(tiny_encoder)
    assert 0 < status["page_image_bytes_per_page"] == round(status["page_image_bytes"] / status["pages"])


def test_reindex_is_a_no_op(indexed):
    docs, idx, _ = indexed
    again = docrag("index", str(docs), "--index-dir", str(idx), "--json")
    summary = json.loads(again.stdout)
    assert summary["unchanged"] == 4 and summary["pages_rendered"] == 0 and summary["new"] == 0


def test_hybrid_search_finds_a_page_by_a_distinctive_phrase(indexed):
    _, idx, _ = indexed
    out = docrag("search", "deionised water at dawn", "--index-dir", str(idx), "--json", "-k", "3")
    assert out.returncode == 0, out.stderr
    hits = json.loads(out.stdout)
    assert hits[0]["doc"].endswith("solar-maintenance.pdf") and hits[0]["page"] == 1
    assert set(hits[0]) >= {"doc", "page", "score", "image", "text"}
    assert len(hits[0]["text"]) <= 300 and Path(hits[0]["image"]).is_file()
    table = docrag("search", "East grew fastest", "--index-dir", str(idx))
    header, first = table.stdout.splitlines()[:2]
    assert header.split() == ["rank", "score", "document", "page", "snippet"]
    # rank, score, the document, its page, then the snippet around the matched words
    assert re.match(r"\s*1\s+\S+\s+.*revenue-table\.pdf\s+1\s+.*\bEast\b.*\bgrew\b", first), first


def test_modes_and_filter(indexed):
    _, idx, _ = indexed
    for mode in ("text", "visual", "hybrid"):
        out = docrag("search", "revenue solar visitors", "--index-dir", str(idx), "--mode", mode, "--json", "-k", "2")
        assert out.returncode == 0 and len(json.loads(out.stdout)) == 2, (mode, out.stderr)
    only = json.loads(docrag("search", "page", "--index-dir", str(idx), "--filter", "doc=sample-plain",
                             "--json", "-k", "10").stdout)
    assert only and all(h["doc"].endswith("sample-plain.pdf") for h in only)
    bad = docrag("search", "x", "--index-dir", str(idx), "--mode", "fuzzy")
    assert bad.returncode == 1 and bad.stderr.startswith("error: unknown mode") and "Traceback" not in bad.stderr


def test_text_only_index_and_errors(tmp_path):
    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "examples", docs, ignore=shutil.ignore_patterns("*.py"))
    (docs / "notes.pdf").write_text("this is not a pdf")
    idx = tmp_path / "idx"
    result = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", "none")
    assert result.returncode == 0  # something was indexed
    assert "3 new, 0 changed, 0 unchanged, 1 failed" in result.stdout
    # one line per problem, never wrapped (stderr is a pipe here; paths can be long)
    assert any(line.startswith(f"failed {docs / 'notes.pdf'}: not a PDF (") for line in result.stderr.splitlines())
    strict = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", "none", "--strict")
    assert strict.returncode == 1
    visual = docrag("search", "revenue", "--index-dir", str(idx), "--mode", "visual")
    assert visual.returncode == 1 and "no visual vectors" in visual.stderr
    auto = json.loads(docrag("search", "visitors peak in July", "--index-dir", str(idx), "--json").stdout)
    assert auto[0]["doc"].endswith("visitors-chart.pdf")
    removed = docrag("delete", str(docs / "visitors-chart.pdf"), "--index-dir", str(idx))
    assert removed.returncode == 0 and "(1 pages)" in removed.stdout
    assert json.loads(docrag("status", "--index-dir", str(idx), "--json").stdout)["documents"] == 2
    missing = docrag("delete", str(docs / "visitors-chart.pdf"), "--index-dir", str(idx))
    assert missing.returncode == 1 and "not in the index" in missing.stderr
    nothing = docrag("index", str(tmp_path / "nowhere"), "--index-dir", str(idx))
    assert nothing.returncode == 1 and "Traceback" not in nothing.stderr


HOLD_LOCK = """
import sys, time
sys.path.insert(0, sys.argv[1])
from indexing.lock import IndexLock
lock = IndexLock(sys.argv[2], command="docrag index").acquire()
print("held", flush=True)
time.sleep(float(sys.argv[3]))
"""


def test_search_while_the_index_is_held_says_busy_in_one_line(indexed):
    _, idx, _ = indexed
    holder = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(ROOT), str(idx), "60"],
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        out = docrag("search", "revenue", "--index-dir", str(idx), "--mode", "text",
                     env={"DOCRAG_LOCK_TIMEOUT_S": "1"})
        assert out.returncode == 1
        lines = out.stderr.strip().splitlines()
        assert len(lines) == 1 and "is busy" in lines[0] and "docrag index" in lines[0], out.stderr
    finally:
        holder.kill()
        holder.wait()
    assert docrag("search", "revenue", "--index-dir", str(idx), "--mode", "text").returncode == 0


def test_search_during_a_running_index_waits_briefly_and_succeeds(tmp_path, debian_pdfs):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("sample-plain.pdf", "sample-amc.pdf", "auto-multiple-choice.en.pdf"):
        shutil.copy(debian_pdfs[name], docs / name)
    idx = tmp_path / "idx"
    first = docrag("index", str(docs / "sample-plain.pdf"), "--index-dir", str(idx), "--encoder", "none")
    assert first.returncode == 0
    indexer = subprocess.Popen([*DOCRAG, "index", str(docs), "--index-dir", str(idx), "--encoder", "none",
                                "--batch-pages", "4"], cwd=ROOT,
                               # PNG, one encoding thread: slow enough that the run is still going when the search
                               # comes, on a fast machine too
                               env={**os.environ, "DOCRAG_DPI": "72", "DOCRAG_PAGE_FORMAT": "png",
                                    "DOCRAG_PAGE_STORE": "full", "DOCRAG_INDEX_WORKERS": "0"},
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(1.0)
        assert indexer.poll() is None, "indexing finished too soon for the test"
        started = time.monotonic()
        out = docrag("search", "multiple choice", "--index-dir", str(idx), "--mode", "text", "--json",
                     env={"DOCRAG_LOCK_TIMEOUT_S": "30"})
        waited = time.monotonic() - started
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout), "no hits"
        assert indexer.poll() is None, "the search only ran after indexing ended"
        assert waited < 20
    finally:
        stdout, stderr = indexer.communicate(timeout=300)
    assert indexer.returncode == 0, stderr
    assert "2 new, 0 changed, 1 unchanged, 0 failed" in stdout


def test_bad_files_in_cli_summary(tmp_path, debian_pdfs):
    docs = tmp_path / "docs"
    docs.mkdir()
    badfiles.encrypted_pdf(docs)
    badfiles.text_pdf(docs / "ok.pdf", ["fine"])
    out = docrag("index", str(docs), "--index-dir", str(tmp_path / "idx"), "--encoder", "none")
    assert out.returncode == 0 and "1 new, 0 changed, 0 unchanged, 1 failed" in out.stdout
    assert "encrypted PDF (password required)" in out.stderr and "Traceback" not in out.stderr
