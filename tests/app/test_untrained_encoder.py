"""A randomly initialised encoder (`docrag train init`) is marked untrained; `auto` search never fuses its vectors
(they are noise), says so in one line, and a training run's export clears the mark."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app
from app.config import Config
from app.encoders import is_untrained
from app.service import DocRag

ROOT = Path(__file__).resolve().parents[2]
PIXELS = {"min_pixels": 16 * 28 * 28, "max_pixels": 64 * 28 * 28}


@pytest.fixture(scope="module")
def untrained(tmp_path_factory) -> Path:
    from moca_train.presets import init_checkpoint

    return init_checkpoint("tiny", tmp_path_factory.mktemp("enc") / "tiny", **PIXELS)


@pytest.fixture(scope="module")
def docs(tmp_path_factory, debian_pdfs) -> Path:
    d = tmp_path_factory.mktemp("docs")
    shutil.copytree(ROOT / "examples", d / "ex", ignore=shutil.ignore_patterns("*.py"))
    shutil.copy(debian_pdfs["sample-plain.pdf"], d)
    return d


def _svc(index: Path, encoder: Path | str) -> DocRag:
    return DocRag(Config(index_dir=index, dpi=36, encoder=str(encoder), text_encoder="none"))


def test_init_marks_the_checkpoint_and_saving_it_again_keeps_the_mark(untrained, tmp_path) -> None:
    from moca_train.modeling import MoCaEncoder

    assert json.loads((untrained / "docrag_encoder.json").read_text())["untrained"] is True
    assert is_untrained(str(untrained))
    MoCaEncoder.from_pretrained(untrained).save_pretrained(tmp_path / "copy")
    assert is_untrained(str(tmp_path / "copy"))


def test_auto_leaves_an_untrained_encoder_out_and_says_so(untrained, docs, tmp_path) -> None:
    index = tmp_path / "idx"
    indexer = _svc(index, untrained)
    indexer.index([docs])
    assert any("is untrained" in n for n in indexer.notes)  # indexing says so too
    rag = _svc(index, "auto")
    assert rag.status()["encoder_untrained"] is True and rag.status()["pages_with_visual"] > 0
    query = "quarterly revenue by region"
    auto = rag.search(query, top_k=8)
    assert rag.resolve_mode() == "text"
    assert any("is untrained" in n and "--mode visual or hybrid" in n for n in rag.notes)
    text = rag.search(query, top_k=8, mode="text")
    assert [(h.doc_path, h.page, h.score) for h in auto] == [(h.doc_path, h.page, h.score) for h in text]
    # Asked for, the vectors are used.
    hybrid = rag.search(query, top_k=8, mode="hybrid")
    visual = rag.search(query, top_k=8, mode="visual")
    assert [h.score for h in hybrid] != [h.score for h in text] and len(visual) == 8

    env = {**os.environ, "DOCRAG_TEXT_ENCODER": "none"}
    run = [sys.executable, "-m", "app.cli"]
    out = subprocess.run([*run, "search", query, "--index-dir", str(index)], capture_output=True, text=True,
                         env=env, cwd=ROOT, timeout=300)
    assert out.returncode == 0 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "is untrained" in out.stderr
    status = subprocess.run([*run, "status", "--index-dir", str(index)], capture_output=True, text=True,
                            env=env, cwd=ROOT, timeout=300)
    assert status.returncode == 0 and "is untrained" in status.stderr
    assert len(status.stderr.strip().splitlines()) == 1


def test_a_training_run_clears_the_mark_and_auto_fuses_it(untrained, docs, tmp_path) -> None:
    runner = CliRunner()
    data = tmp_path / "cpt.jsonl"
    res = runner.invoke(app, ["train", "data", "cpt", str(docs / "sample-plain.pdf"), "--out", str(data), "--dpi",
                              "36", "--max-pages", "2"])
    assert res.exit_code == 0, res.output
    cfg = tmp_path / "cpt.yaml"
    cfg.write_text(f"base: {untrained}\nmin_pixels: 12544\nmax_pixels: 50176\nmax_len: 96\ntoken_budget: 1024\n"
                   "train:\n  lr: 1.0e-3\n  precision: fp32\n  gradient_checkpointing: false\n  tensorboard: false\n")
    trained = tmp_path / "trained"
    res = runner.invoke(app, ["train", "cpt", "--config", str(cfg), "--data", str(data), "--out", str(trained),
                              "--max-steps", "1"])
    assert res.exit_code == 0, res.output
    assert not is_untrained(str(trained))
    index = tmp_path / "idx"
    _svc(index, trained).index([docs])
    rag = _svc(index, "auto")
    assert rag.resolve_mode() == "hybrid" and not rag.status()["encoder_untrained"]
    assert not any("untrained" in n for n in rag.notes)
