"""The OpenAI-compatible backend and `DocRag.ask`, against `OpenAIDouble`: a local test double for a remote
LLM endpoint (none can run here). Real parts otherwise: real PDFs, Qdrant Edge, the page store."""

from __future__ import annotations

import base64
import io
import shutil
import socket
import threading
from pathlib import Path

import pytest
from openai_double import OpenAIDouble
from PIL import Image

from app import DocRag, LLMError
from app.answer import NO_PAGES, cited_numbers

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def index_dir(tmp_path_factory) -> Path:
    docs = tmp_path_factory.mktemp("docs")
    for name in ("solar-maintenance.pdf", "revenue-table.pdf"):
        shutil.copy(ROOT / "examples" / name, docs / name)
    idx = tmp_path_factory.mktemp("ask") / "idx"
    DocRag(index_dir=idx, encoder="none", dpi=48).index([docs])
    return idx


def _rag(index_dir: Path, url: str, **kw) -> DocRag:
    return DocRag(index_dir=index_dir, encoder="none", llm_base_url=url, llm_model="test-vlm", **kw)


def test_request_format_and_streaming(index_dir):
    release = threading.Event()

    def reply(body):
        yield "Inverters log their faults"
        release.wait(10)  # the rest waits until the test has seen the first chunk: proves streaming
        yield " [1]."

    with OpenAIDouble(reply) as srv:
        stream = _rag(index_dir, srv.base_url, llm_image_max_side=200).ask("inverter faults", top_k=2)
        chunks = iter(stream)
        assert next(chunks) == "Inverters log their faults"
        assert stream.text == "Inverters log their faults"  # nothing more arrived yet
        release.set()
        rest = list(chunks)
    assert rest == [" [1]."] and not srv.errors
    body = srv.requests[0]
    assert body["stream"] is True and body["model"] == "test-vlm"
    system, user = body["messages"]
    assert system["role"] == "system" and "[1]" in system["content"]
    images = [p["image_url"]["url"] for p in user["content"] if p["type"] == "image_url"]
    texts = "".join(p["text"] for p in user["content"] if p["type"] == "text")
    assert len(images) == 2 and "[1] solar-maintenance.pdf, page" in texts and "inverter faults" in texts
    assert "Inverters log their faults" in texts  # the page's text layer goes beside its image
    for url in images:
        assert url.startswith("data:image/jpeg;base64,")
        image = Image.open(io.BytesIO(base64.b64decode(url.split(",", 1)[1])))
        assert max(image.size) <= 200  # the configured size cap
    answer = stream.result()
    assert [c.n for c in answer.citations] == [1] and answer.citations[0].doc.endswith("solar-maintenance.pdf")
    assert answer.citations[0].image == answer.pages[0]["image"] and Path(answer.citations[0].image).is_file()


def test_made_up_citation_is_dropped_and_said(index_dir):
    with OpenAIDouble(lambda body: ["Faults are logged [2][1]", ", see also [7] and [0]."]) as srv:
        answer = _rag(index_dir, srv.base_url).ask("inverter faults", top_k=2).result()
    assert [c.n for c in answer.citations] == [2, 1]
    pages = {(p["doc"], p["page"]) for p in answer.pages}
    assert all((c.doc, c.page) in pages for c in answer.citations)
    assert answer.invalid == [7, 0]
    assert "[7], [0]" in answer.answer and "not among the 2 retrieved pages" in answer.answer
    assert set(answer.as_dict()) == {"answer", "citations", "pages"}


def test_cited_numbers_parses_lists_once_each():
    assert cited_numbers("a [3] b [1, 2] c [3][4] d [x] e [12.5] f") == [3, 1, 2, 4]


def test_api_key_sent_and_http_error_is_one_line(index_dir, monkeypatch):
    with OpenAIDouble(api_key="sekrit") as srv:
        monkeypatch.setenv("DOCRAG_LLM_API_KEY", "wrong")
        with pytest.raises(LLMError, match="HTTP 401") as e:
            _rag(index_dir, srv.base_url).ask("inverter").result()
        assert "\n" not in str(e.value)
        monkeypatch.setenv("DOCRAG_LLM_API_KEY", "sekrit")
        assert _rag(index_dir, srv.base_url).ask("inverter").result().citations


def test_unreachable_endpoint_and_timeout(index_dir):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(LLMError, match="cannot reach LLM endpoint"):
        _rag(index_dir, f"http://127.0.0.1:{port}/v1").ask("inverter").result()
    with OpenAIDouble(chunk_delay_s=3) as srv, pytest.raises(LLMError, match="timed out"):
        _rag(index_dir, srv.base_url, llm_timeout_s=0.5).ask("inverter").result()


def test_no_matching_page_does_not_call_the_llm(index_dir):
    with OpenAIDouble() as srv:
        answer = _rag(index_dir, srv.base_url).ask("zyxwvut qqqq").result()
    assert answer.answer == NO_PAGES and not srv.requests and answer.citations == []
