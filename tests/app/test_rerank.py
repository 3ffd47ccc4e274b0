"""The optional rerank stage: a tiny random cross-encoder built from config (real sentence-transformers
`CrossEncoder`), the listwise LLM reranker against the OpenAI-compatible test double (a remote service that cannot
run here), one-line errors, and `docrag eval --rerank`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pymupdf
import pytest
from openai_double import OpenAIDouble

from app.config import Config
from app.rerank import LLMReranker, RerankerUnavailable, parse_order
from app.service import DocRag

pytest.importorskip("sentence_transformers")

ROOT = Path(__file__).resolve().parents[2]
QUERIES = ["answer sheets", "compile the LaTeX subject", "scanning the copies", "mark the students"]


@pytest.fixture(scope="module")
def index(tmp_path_factory, debian_pdfs) -> Path:
    root = tmp_path_factory.mktemp("rr")
    DocRag(Config(index_dir=root / "idx", dpi=36, encoder="none", text_encoder="none")).index(
        [debian_pdfs["auto-multiple-choice.en.pdf"]])
    return root / "idx"


@pytest.fixture(scope="module")
def cross_encoder(tmp_path_factory, debian_pdfs) -> Path:
    from app.textenc import init_tiny_cross_encoder

    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as doc:
        texts = [p.get_text() for p in doc]
    return init_tiny_cross_encoder(tmp_path_factory.mktemp("ce") / "tiny-ce", texts)


def test_cross_encoder_orders_the_top_hits_by_its_scores(index, cross_encoder) -> None:
    from sentence_transformers import CrossEncoder

    plain = DocRag(Config(index_dir=index, encoder="none", text_encoder="none"))
    ranked = DocRag(Config(index_dir=index, encoder="none", text_encoder="none",
                           rerank=f"cross-encoder:{cross_encoder}", rerank_top_n=10))
    model = CrossEncoder(str(cross_encoder))
    moved = 0
    for q in QUERIES:
        before = plain.search(q, top_k=10, mode="text")
        after = ranked.search(q, top_k=10, mode="text")
        assert {(h.page, h.doc_hash) for h in after} == {(h.page, h.doc_hash) for h in before}  # same pages
        scores = model.predict([(q, h.text) for h in before])
        want = [before[i].page for i in sorted(range(len(before)), key=lambda i: -float(scores[i]))]
        assert [h.page for h in after] == want
        assert all(abs(h.score - float(s)) <= 1e-5 * max(1.0, abs(float(s)))
                   for h, s in zip(after, sorted(scores, reverse=True), strict=True))
        assert all(h.snippet for h in after)  # snippets follow the reranked hits
        moved += [h.page for h in after] != [h.page for h in before]
    assert moved >= 1  # the stage reorders
    # Fewer wanted than reranked: the best of the reranked top 10.
    assert [h.page for h in ranked.search(QUERIES[0], top_k=3, mode="text")] == \
        [h.page for h in ranked.search(QUERIES[0], top_k=10, mode="text")][:3]
    assert [h.page for h in ranked.search(QUERIES[0], top_k=10, mode="text", rerank=False)] == \
        [h.page for h in plain.search(QUERIES[0], top_k=10, mode="text")]


def test_llm_reranker_one_listwise_call_with_made_up_and_missing_numbers(index) -> None:
    replies = iter([["Best first: 3, 9, 1", " and 3 again"], ["I cannot tell."]])
    with OpenAIDouble(reply=lambda body: next(replies)) as srv:
        rag = DocRag(Config(index_dir=index, encoder="none", text_encoder="none", rerank="llm", rerank_top_n=4,
                            llm_base_url=srv.base_url, llm_model="test-vlm"))
        before = DocRag(Config(index_dir=index, encoder="none", text_encoder="none")).search(
            QUERIES[0], top_k=6, mode="text")
        after = rag.search(QUERIES[0], top_k=6, mode="text")
        # 3 then 1 as named; 9 is no candidate (ignored); 2 and 4 follow in retrieval order; 5 and 6 untouched.
        assert [h.page for h in after] == [before[i].page for i in (2, 0, 1, 3, 4, 5)]
        assert [round(h.score, 4) for h in after[:4]] == [1.0, 0.5, 0.3333, 0.25]
        assert len(srv.requests) == 1  # one call for the whole list
        user = srv.requests[0]["messages"][-1]["content"]
        assert sum(p["type"] == "image_url" for p in user) == 4 and "[4]" in json.dumps(user)
        same = rag.search(QUERIES[0], top_k=6, mode="text")  # no numbers at all: retrieval order kept
        assert [h.page for h in same] == [h.page for h in before]


def test_parse_order() -> None:
    assert parse_order("2, 2, 7, 1", 3) == [1, 0, 2]
    assert parse_order("", 2) == [0, 1]
    assert LLMReranker(object()).rerank("q", [], Path(".")) == []


def test_errors_are_one_line(index, tmp_path) -> None:
    from typer.testing import CliRunner

    from app.cli import app

    broken = tmp_path / "broken-ce"
    broken.mkdir()
    (broken / "config.json").write_text("{ not json")
    cases = ((f"cross-encoder:{tmp_path / 'nowhere'}", "cannot load reranker"),
             (f"cross-encoder:{broken}", "cannot load reranker"),
             ("cross-encoder:", "names no model"),
             ("bogus", "unknown rerank 'bogus'"),
             ("llm", "rerank = llm needs an LLM"))
    for rerank, expected in cases:
        res = CliRunner().invoke(app, ["search", "answer sheets", "--index-dir", str(index), "--rerank", rerank])
        assert res.exit_code == 1 and expected in res.output and "Traceback" not in res.output, res.output
        assert len(res.output.strip().splitlines()) == 1
    # A real process: the error is one line on stderr, nothing on stdout.
    env = {**os.environ, "DOCRAG_TEXT_ENCODER": "none"}
    out = subprocess.run([sys.executable, "-m", "app.cli", "search", "answer sheets", "--index-dir", str(index),
                          "--rerank", f"cross-encoder:{broken}"], capture_output=True, text=True, env=env, cwd=ROOT,
                         timeout=300)
    assert out.returncode == 1 and out.stderr.startswith("error: cannot load reranker") and not out.stdout
    assert len(out.stderr.strip().splitlines()) == 1
    with pytest.raises(RerankerUnavailable):
        DocRag(Config(index_dir=index, rerank=f"cross-encoder:{broken}")).reranker()


def test_eval_reports_with_and_without_reranking(index, cross_encoder, tmp_path, debian_pdfs) -> None:
    from typer.testing import CliRunner

    from app.cli import app
    from app.evaluation.build import build_eval_set

    (tmp_path / "docs").mkdir()
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as src, pymupdf.open() as out:
        out.insert_pdf(src, from_page=10, to_page=21)
        out.save(tmp_path / "docs" / "amc.pdf")
    build_eval_set([tmp_path / "docs"], tmp_path / "set", split=1.0, seed=0)
    res = CliRunner().invoke(app, ["eval", str(tmp_path / "set"), "--index-dir", str(tmp_path / "idx"),
                                   "--encoder", "none", "--text-encoder", "none", "--rerank",
                                   f"cross-encoder:{cross_encoder}", "--json"])
    assert res.exit_code == 0, res.output
    metrics = json.loads(res.output)
    assert set(metrics) == {"text", "text+rerank"}
    assert metrics["text"]["n_queries"] == metrics["text+rerank"]["n_queries"] > 0
