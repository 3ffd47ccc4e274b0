"""The UI's named API endpoints (`search`, `ask`, `status`) driven by `gradio_client`, as a user would."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from gradio_client import Client


def test_named_endpoints(served):
    client = Client(served.url, verbose=False)
    named = client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    assert {"/search", "/ask", "/status"} <= set(named)

    rows = client.predict("inverter", 3, "text", "", api_name="/search")
    assert rows[0]["doc"].endswith("solar-maintenance.pdf") and {"page", "score", "image", "text"} <= set(rows[0])
    assert "**inverter**" in rows[0]["snippet"].lower() and rows[0]["matched_terms"] == ["inverter", "inverters"]
    assert Path(rows[0]["image"]).is_relative_to(served.index_dir / "cache")  # rendered on demand
    assert Path(rows[0]["image"]).is_file()
    only = client.predict("revenue", 5, "text", "revenue-table", api_name="/search")
    assert only and all(r["doc"].endswith("revenue-table.pdf") for r in only)

    answer = client.predict("inverter faults", 2, "text", "", api_name="/ask")
    assert list(answer) == ["answer", "citations", "pages"]
    assert [c["n"] for c in answer["citations"]] == [2, 1]  # the double cites [2] first, then [1]
    cited = [(c["doc"], c["page"]) for c in answer["citations"]]
    assert cited == [(p["doc"], p["page"]) for p in answer["pages"][::-1]]

    with pytest.raises(Exception, match="no visual vectors"):  # a caller's mistake comes back as one line
        client.predict("inverter", 3, "visual", "", api_name="/search")

    status = client.predict(api_name="/status")
    assert status["documents"] >= 2 and status["pages"] >= 3 and "test-vlm" in status["llm"]
    assert status["encoder"] is None  # a text-only index


def test_cli_index_writes_while_the_ui_keeps_the_store_open(served, tmp_path):
    client = Client(served.url, verbose=False)
    before = client.predict(api_name="/status")["documents"]
    assert client.predict("inverter", 1, "text", "", api_name="/search")  # the UI holds the store open now
    docs = tmp_path / "more"
    docs.mkdir()
    shutil.copy(Path(__file__).resolve().parents[2] / "examples" / "visitors-chart.pdf", docs)
    env = {**os.environ, "DOCRAG_LOCK_TIMEOUT_S": "5", "DOCRAG_DPI": "48"}
    r = subprocess.run([sys.executable, "-m", "app.cli", "index", str(docs), "--index-dir", str(served.index_dir),
                        "--encoder", "none"], capture_output=True, text=True, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    rows = client.predict("visitors", 3, "text", "", api_name="/search")
    assert rows and rows[0]["doc"].endswith("visitors-chart.pdf")  # the UI sees what the CLI wrote
    assert client.predict(api_name="/status")["documents"] == before + 1


def test_the_text_model_is_loaded_at_launch(tmp_path):
    """`docrag serve` loads the index's dense text model before it takes requests, so the first query does not
    pay for it (the log says so before the server answers)."""
    from served_app import ROOT, Server

    from app import DocRag

    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "examples" / "solar-maintenance.pdf", docs)
    DocRag(index_dir=tmp_path / "idx", encoder="none", text_encoder="builtin", dpi=48).index([docs])
    server = Server(tmp_path / "idx", tmp_path / "serve.log", env={"DOCRAG_TEXT_ENCODER": "auto"})
    try:
        server.wait_ready()
        log = (tmp_path / "serve.log").read_text()
        assert "text model all-MiniLM-L6-v2-int8 loaded" in log
        rows = Client(server.url, verbose=False).predict("how do I clean the panels", 3, "auto", "",
                                                         api_name="/search")
        assert rows and rows[0]["doc"].endswith("solar-maintenance.pdf")
        status = Client(server.url, verbose=False).predict(api_name="/status")
        assert status["text_encoder"] == "all-MiniLM-L6-v2-int8" and status["pages_with_text_dense"] >= 1
    finally:
        server.stop()
