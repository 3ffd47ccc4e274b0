"""A real `docrag serve` process over a real index; the LLM is `OpenAIDouble` (a local test double for a
remote endpoint), started in this test process."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from openai_double import OpenAIDouble
from served_app import Server

ROOT = Path(__file__).resolve().parents[2]


def browser_reply(body: dict):
    return ["The answer sheet", " layout is shown on page [2]", ", and the cover on [1]."]


@pytest.fixture(scope="session")
def llm_double():
    with OpenAIDouble(browser_reply, chunk_delay_s=0.6) as srv:
        yield srv


@pytest.fixture(scope="session")
def ui_root(tmp_path_factory) -> Path:
    """The folder around the index: nothing may be written here outside the index folder."""
    return tmp_path_factory.mktemp("ui")


@pytest.fixture(scope="session")
def served(ui_root, llm_double, tmp_path_factory):
    """`docrag serve` over an index that already holds the example PDFs (text layer only)."""
    from app import DocRag

    docs = ui_root / "docs"
    docs.mkdir()
    for name in ("solar-maintenance.pdf", "revenue-table.pdf"):
        shutil.copy(ROOT / "examples" / name, docs / name)
    idx = ui_root / "index"
    DocRag(index_dir=idx, encoder="none", dpi=48).index([docs])
    log = tmp_path_factory.mktemp("logs") / "serve.log"
    server = Server(idx, log, "--llm-base-url", llm_double.base_url, "--llm-model", "test-vlm")
    try:
        yield server.wait_ready()
    finally:
        server.stop()
