"""`docrag train data cpt` and `docrag train cpt`: PDFs -> JSONL -> a trained encoder, errors as one line."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from app.cli import app


def test_data_then_cpt_then_the_encoder_loads(tmp_path, debian_pdfs):
    runner = CliRunner()
    data = tmp_path / "data" / "cpt.jsonl"
    res = runner.invoke(app, ["train", "data", "cpt", str(debian_pdfs["sample-plain.pdf"]), "--out", str(data),
                              "--dpi", "36", "--max-pages", "3"])
    assert res.exit_code == 0, res.output
    assert "wrote 3 pages of 1 documents" in res.output
    assert len(data.read_text().splitlines()) == 3 and (tmp_path / "data" / "pages").is_dir()

    cfg = tmp_path / "cpt.yaml"
    cfg.write_text("base: tiny\nmin_pixels: 12544\nmax_pixels: 25088\nmax_len: 96\ntoken_budget: 1024\n"
                   "train:\n  lr: 1.0e-3\n  precision: fp32\n  gradient_checkpointing: false\n  tensorboard: false\n")
    out = tmp_path / "run"
    res = runner.invoke(app, ["train", "cpt", "--config", str(cfg), "--data", str(data), "--out", str(out),
                              "--max-steps", "2"])
    assert res.exit_code == 0, res.output
    assert "wrote encoder to" in res.output
    assert [json.loads(r)["step"] for r in (out / "train_log.jsonl").read_text().splitlines()] == [1, 2]
    from moca_train.modeling import MoCaEncoder

    assert MoCaEncoder.from_pretrained(out).dim == 64


def test_cli_errors_are_one_line(tmp_path):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "data", "cpt", str(tmp_path / "nothing"), "--out", str(tmp_path / "d.jsonl")])
    assert res.exit_code == 1 and "no readable PDF pages" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["train", "cpt", "--config", "tiny"])
    assert res.exit_code == 1 and "no training data" in res.output
    res = runner.invoke(app, ["train", "cpt", "--config", "tiny", "--data", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 1 and "missing.jsonl: data file not found" in res.output
    res = runner.invoke(app, ["train", "cpt", "--config", str(tmp_path / "nope.yaml"), "--data", "x"])
    assert res.exit_code == 1 and "no such config file" in res.output and "Traceback" not in res.output
