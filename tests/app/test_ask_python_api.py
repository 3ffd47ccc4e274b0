"""The Python API: `from app import DocRag` with keywords, index/search/status/ask, the kept-open store shared
with CLI processes, and package-level exports that stay lazy (no torch or Gradio on `import`)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from openai_double import OpenAIDouble

ROOT = Path(__file__).resolve().parents[2]


def test_package_exports_are_lazy():
    code = ("import sys, app, moca_train, ui, ui.cli; "
            "print(sorted(m for m in ('torch', 'gradio', 'langchain_core', 'qdrant_edge') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["[]"]
    # ...and resolve to the real objects on first use.
    from app import Answer, DocRag, DocRagRetriever
    from app.answer import Answer as A
    from app.langchain import DocRagRetriever as R
    from app.service import DocRag as D
    from moca_train import MoCaEncoder
    from moca_train.modeling import MoCaEncoder as M

    assert (Answer, DocRag, DocRagRetriever, MoCaEncoder) == (A, D, R, M)


def test_docrag_keywords_index_search_status_ask(tmp_path):
    from app import DocRag, load_config

    docs = tmp_path / "docs"
    shutil.copytree(ROOT / "examples", docs, ignore=shutil.ignore_patterns("*.py"))
    rag = DocRag(index_dir=tmp_path / "idx", encoder="none", dpi=48)
    assert rag.config.index_dir == tmp_path / "idx" and rag.config.dpi == 48 and rag.config.encoder == "none"
    report = rag.index([docs])
    assert report.new == 3 and rag.status()["pages"] == 4
    hits = rag.search("inverter", top_k=2, mode="text", doc="solar")
    assert [h.doc_path.endswith("solar-maintenance.pdf") for h in hits] == [True, True]
    other = DocRag(load_config({"index_dir": tmp_path / "nowhere"}), index_dir=tmp_path / "idx", encoder="none")
    assert other.config.index_dir == tmp_path / "idx" and other.status()["documents"] == 3
    with OpenAIDouble() as srv:
        answer = DocRag(index_dir=tmp_path / "idx", encoder="none", llm_base_url=srv.base_url).ask("inverter")
        assert answer.result().citations[0].n == 1
    from app import LLMNotConfigured

    with pytest.raises(LLMNotConfigured, match="no LLM configured"):
        DocRag(index_dir=tmp_path / "idx", encoder="none", llm="none").ask("inverter")


def test_kept_open_store_lets_a_cli_process_in(tmp_path):
    from app import DocRag

    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "examples" / "solar-maintenance.pdf", docs)
    with DocRag(index_dir=tmp_path / "idx", encoder="none", keep_open=True) as rag:
        rag.index([docs])
        for _ in range(3):
            assert rag.search("inverter", mode="text")
        assert rag._shared.opens == 1 and rag._shared.is_open
        # Another process: `docrag search` waits for the lock, the kept-open store lets go, the CLI gets in.
        env = {**os.environ, "DOCRAG_LOCK_TIMEOUT_S": "5"}
        cli = subprocess.run([sys.executable, "-m", "app.cli", "search", "inverter", "--index-dir",
                              str(tmp_path / "idx"), "--mode", "text", "--json"], cwd=ROOT, capture_output=True,
                             text=True, env=env, timeout=120)
        assert cli.returncode == 0, cli.stderr
        assert "solar-maintenance.pdf" in cli.stdout
        assert rag.search("inverter", mode="text") and rag._shared.opens == 2
