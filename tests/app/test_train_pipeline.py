"""`docrag train pipeline` on CPU: tiny preset, 12 real pages of a Debian manual, a few steps per stage.

One run serves every check (the pipeline is the expensive part): stopped after CPT (an interruption),
resumed to the end, then rerun (nothing to do); the final encoder indexes; bad input is one line.
"""

from __future__ import annotations

import json
import math

import pytest
from typer.testing import CliRunner

from app.cli import app

PDF = "auto-multiple-choice.en.pdf"
SMALL = ["--dpi", "36", "--min-pixels", str(16 * 28 * 28), "--max-pixels", str(32 * 28 * 28)]


@pytest.fixture(scope="module")
def docs(tmp_path_factory, debian_pdfs):
    """Pages 10-21 of the AMC manual (body pages, distinct text) as one PDF."""
    import pymupdf

    folder = tmp_path_factory.mktemp("pipeline-docs")
    with pymupdf.open(debian_pdfs[PDF]) as doc:
        doc.select(range(9, 21))
        doc.save(folder / PDF)
    return folder


def _cmd(docs, out, *extra):
    return ["train", "pipeline", str(docs), "--base", "tiny", "--out", str(out), "--preset", "tiny",
            "--steps-cpt", "3", "--steps-cl", "3", *SMALL, *extra]


def test_pipeline_stops_resumes_completes_and_reruns_as_a_no_op(tmp_path, docs):
    from moca_train.data import read_pairs
    from moca_train.trainer import read_train_log

    runner = CliRunner()
    out = tmp_path / "variant"
    res = runner.invoke(app, _cmd(docs, out, "--stop-after", "cpt"))
    assert res.exit_code == 0, res.output
    assert "stopped after cpt" in res.output
    state = json.loads((out / "pipeline.json").read_text())
    assert list(state["done"]) == ["eval-set", "cpt-data", "pairs", "eval-before", "cpt"]
    assert not (out / "eval.json").exists() and not (out / "work" / "cl").exists()

    # The held-out pages never reach training data: not in the CPT rows, not among the pairs' positives.
    split = json.loads((out / "work" / "eval" / "split.json").read_text())
    test_pages = {int(pid.rsplit("-p", 1)[1]) for pid in split["test"]}
    assert test_pages and len(split["train"]) == 12 - len(test_pages)
    cpt_pages = {r["page"] for r in json.loads((out / "work" / "cpt-data" / "pages.json").read_text())}
    assert cpt_pages == set(range(1, 13)) - test_pages
    pairs = read_pairs(out / "work" / "pairs.jsonl")
    assert len(pairs) >= 10 and {p.pos_page for p in pairs} <= cpt_pages
    assert all(p.pos_image and (out / "work" / p.pos_image).is_file() for p in pairs)

    cpt_log = read_train_log(out / "work" / "cpt")
    res = runner.invoke(app, _cmd(docs, out))
    assert res.exit_code == 0, res.output
    assert "wrote encoder to" in res.output
    state = json.loads((out / "pipeline.json").read_text())
    assert list(state["done"]) == ["eval-set", "cpt-data", "pairs", "eval-before", "cpt", "contrastive",
                                   "eval-after", "export"]
    assert read_train_log(out / "work" / "cpt") == cpt_log  # CPT was not run again
    assert [r["step"] for r in read_train_log(out / "work" / "cl")] == [1, 2, 3]

    report = json.loads((out / "eval.json").read_text())
    for key in ("before", "after", "bm25"):
        assert math.isfinite(report[key]["ndcg@5"]) and 0.0 <= report[key]["ndcg@5"] <= 1.0
        assert report[key]["n_queries"] == report["data"]["test_queries"] > 0
    assert report["bm25"]["ndcg@5"] > 0  # BM25 on the pages' own words finds something
    # The visual weight, calibrated on half the test queries and checked on the other half, goes with the encoder
    # (a 6-step tiny encoder: usually weight 0), and a search of an index built with it uses that weight.
    fusion = json.loads((out / "docrag_encoder.json").read_text())["fusion"]
    assert fusion["weight_visual"] == report["fusion"]["weight_visual"] >= 0
    assert "untrained" not in json.loads((out / "docrag_encoder.json").read_text())
    assert not (out / "work" / "cl" / "docrag_encoder.json").read_text().count("fusion")  # its own copy untouched

    # The final encoder is a plain checkpoint `docrag index --encoder` takes.
    from moca_train.modeling import MoCaEncoder

    assert MoCaEncoder.from_pretrained(out).dim == 64
    res = runner.invoke(app, ["index", str(docs), "--encoder", str(out), "--index-dir", str(tmp_path / "idx")])
    assert res.exit_code == 0, res.output
    from app.service import DocRag

    indexed = DocRag(index_dir=tmp_path / "idx", text_encoder="none")
    assert indexed.fusion_weights()["visual"] == fusion["weight_visual"]

    # A rerun after completion does nothing: every phase is done, nothing is rewritten.
    before = {p: p.stat().st_mtime_ns for p in (out / "eval.json", out / "model.safetensors")}
    res = runner.invoke(app, _cmd(docs, out))
    assert res.exit_code == 0, res.output
    assert res.output.count("done already") == 8
    assert {p: p.stat().st_mtime_ns for p in before} == before

    # Other settings in the same folder are refused, in one line.
    res = runner.invoke(app, _cmd(docs, out, "--seed", "1"))
    assert res.exit_code == 1 and "made with other settings (seed" in res.output
    assert "Traceback" not in res.output


def test_bad_input_is_one_line(tmp_path, docs):
    runner = CliRunner()
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a PDF")
    for path, reason in ((tmp_path / "missing", "No such file or directory"), (empty, "no PDF files in")):
        res = runner.invoke(app, ["train", "pipeline", str(path), "--base", "tiny", "--out", str(tmp_path / "o")])
        assert res.exit_code == 1, res.output
        assert reason in res.output and "Traceback" not in res.output
        assert len(res.output.strip().splitlines()) == 1
    busy = tmp_path / "busy"
    busy.mkdir()
    (busy / "something").write_text("x")
    res = runner.invoke(app, ["train", "pipeline", str(docs), "--base", "tiny", "--out", str(busy)])
    assert res.exit_code == 1 and "not empty" in res.output
    res = runner.invoke(app, ["train", "pipeline", str(docs), "--base", "tiny", "--out", str(tmp_path / "o"),
                              "--preset", "huge"])
    assert res.exit_code == 1 and "unknown preset 'huge'" in res.output


def test_phase_lines_do_not_wrap_at_the_terminal_width(monkeypatch, capsys):
    # A narrow (or unset, 80-column) terminal must not split one phase's line: scripts and tests read it whole.
    monkeypatch.setenv("COLUMNS", "20")
    from app.cli_pipeline import RichPipelineEvents

    RichPipelineEvents().phase(1, 8, "eval-set", "evaluation set and held-out split", skipped=True)
    assert capsys.readouterr().err == "[1/8] eval-set: evaluation set and held-out split done already\n"
