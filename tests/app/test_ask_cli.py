"""`docrag ask` end to end (a real process, real PDFs, Qdrant Edge). The LLM is `OpenAIDouble`, a local
test double for a remote endpoint."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from openai_double import OpenAIDouble

ROOT = Path(__file__).resolve().parents[2]


def docrag(*args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    full = {k: v for k, v in os.environ.items() if not k.startswith(("DOCRAG_LLM", "OPENAI_"))}
    return subprocess.run([sys.executable, "-m", "app.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**full, **(env or {})}, timeout=120)


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    docs = tmp_path_factory.mktemp("docs")
    shutil.copy(ROOT / "examples" / "solar-maintenance.pdf", docs)
    shutil.copy(ROOT / "examples" / "revenue-table.pdf", docs)
    idx = tmp_path_factory.mktemp("askcli") / "idx"
    result = docrag("index", str(docs), "--index-dir", str(idx), "--encoder", "none")
    assert result.returncode == 0, result.stderr
    return idx


def test_json_output_shape(index_dir):
    with OpenAIDouble(lambda body: ["Replace the connector [1]", " (see [9])."]) as srv:
        r = docrag("ask", "isolation fault after rain", "--index-dir", str(index_dir), "--top-k", "2", "--json",
                   env={"DOCRAG_LLM_BASE_URL": srv.base_url, "DOCRAG_LLM_MODEL": "m"})
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert list(out) == ["answer", "citations", "pages"]
    assert out["answer"].startswith("Replace the connector [1] (see [9]).") and "[9]" in out["answer"].split(").")[1]
    assert len(out["citations"]) == 1
    c = out["citations"][0]
    assert list(c) == ["n", "doc", "page", "image", "score", "quote", "boxes", "found"] and c["n"] == 1
    assert c["quote"] == "" and c["found"] is None  # the double gives no quote: citations work as before
    assert (c["doc"], c["page"]) == (out["pages"][0]["doc"], out["pages"][0]["page"])
    assert c["doc"].endswith("solar-maintenance.pdf") and Path(c["image"]).is_file()
    assert len(out["pages"]) == 2


def test_streams_text_then_lists_cited_pages(index_dir):
    with OpenAIDouble(lambda body: ["Check", " the fan", " filter [1]."]) as srv:
        r = docrag("ask", "fan filter", "--index-dir", str(index_dir),
                   env={"DOCRAG_LLM_BASE_URL": srv.base_url})
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("Check the fan filter [1].\n")
    assert "Cited pages:\n[1] " in r.stdout and "solar-maintenance.pdf, page" in r.stdout


def test_without_llm_prints_pages_and_how_to_configure(index_dir):
    r = docrag("ask", "inverter", "--index-dir", str(index_dir))
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("[1] ") and "solar-maintenance.pdf, page" in r.stdout
    assert r.stderr.count("\n") == 1 and "no LLM configured" in r.stderr and "DOCRAG_LLM_BASE_URL" in r.stderr


def test_unreachable_endpoint_is_one_line_exit_1(index_dir):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    r = docrag("ask", "inverter", "--index-dir", str(index_dir), "--llm-base-url", f"http://127.0.0.1:{port}/v1")
    assert r.returncode == 1
    assert "Traceback" not in r.stderr and r.stderr.count("\n") == 1
    assert r.stderr.startswith("error: cannot reach LLM endpoint")
