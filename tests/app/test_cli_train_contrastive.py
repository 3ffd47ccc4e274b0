"""`docrag train contrastive` and `docrag train mine` end to end: real PDF pages -> pairs -> hard negatives
mined from a real index (BM25) -> a trained encoder; errors are one line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from app.cli import app

PDF = "auto-multiple-choice.en.pdf"


@pytest.fixture(scope="module")
def pairs_and_index(tmp_path_factory, debian_pdfs):
    """Pairs from pages 11-20 of the AMC manual's first 25 pages, and an index of those 25 pages (tiny
    encoder: visual vectors, and BM25)."""
    import pymupdf

    from app.config import load_config
    from app.service import DocRag
    from moca_train.data import build_cpt_data
    from moca_train.data.pairs import write_pairs
    from moca_train.presets import init_checkpoint

    root = tmp_path_factory.mktemp("cl-cli")
    docs = root / "docs"
    docs.mkdir()
    with pymupdf.open(debian_pdfs[PDF]) as doc:
        doc.select(range(25))
        doc.save(docs / PDF)
    build_cpt_data([docs / PDF], root / "pages.jsonl", max_pages=20, dpi=36)
    rows = [json.loads(line) for line in (root / "pages.jsonl").read_text().splitlines()]
    pairs = []
    for i, r in enumerate(rows[10:], start=11):  # body pages: distinct text
        words = r["text"].replace("<image>", "").split()
        pairs.append({"query": " ".join(words[3:15]), "pos_image": r["images"][0], "pos_doc": PDF, "pos_page": i})
    write_pairs(pairs, root / "pairs.jsonl")
    encoder = init_checkpoint("tiny", root / "encoder", min_pixels=16 * 28 * 28, max_pixels=32 * 28 * 28)
    DocRag(load_config({"index_dir": root / "idx", "encoder": str(encoder), "dpi": 36})).index([docs])
    return root


@pytest.mark.parametrize("retriever", ["--bm25", "--encoder"])
def test_mine_adds_hard_negatives_that_skip_the_positive_and_its_neighbours(pairs_and_index, retriever):
    root = pairs_and_index
    out = root / ("mined.jsonl" if retriever == "--bm25" else "mined-visual.jsonl")
    how = ["--bm25"] if retriever == "--bm25" else ["--encoder", str(root / "encoder")]
    res = CliRunner().invoke(app, ["train", "mine", str(root / "pairs.jsonl"), "--out", str(out), "--index-dir",
                                   str(root / "idx"), *how, "--negatives", "3", "--window", "2"])
    assert res.exit_code == 0, res.output
    assert "wrote 10 rows with" in res.output
    mined = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(mined) == 10
    total = 0
    for row in mined:
        assert len(row["neg_images"]) <= 3 and len(set(row["neg_images"])) == len(row["neg_images"])
        for img in row["neg_images"]:
            total += 1
            assert (root / "idx").as_posix() in img  # a page image of the index (named by page number)
            assert abs(int(Path(img).stem) - row["pos_page"]) > 2, (row["pos_page"], img)
    assert total >= 20  # 25 pages, minus at most 5 around the positive: plenty


def test_contrastive_trains_on_mined_pairs(pairs_and_index, tmp_path):
    from moca_train.modeling import MoCaEncoder

    root = pairs_and_index
    mined = root / "mined.jsonl"
    if not mined.exists():
        pytest.skip("needs the mining test's output")
    cfg = tmp_path / "cl.yaml"
    cfg.write_text("base: tiny\nmin_pixels: 12544\nmax_pixels: 25088\nmax_text_tokens: 48\nbatch_size: 3\n"
                   "hard_negatives: 1\nchunk_size: 4\ntrain:\n  lr: 1.0e-3\n  precision: fp32\n"
                   "  gradient_checkpointing: false\n  tensorboard: false\n")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "contrastive", "--config", str(cfg), "--data", str(mined),
                                   "--out", str(out), "--max-steps", "1"])
    assert res.exit_code == 0, res.output
    assert "wrote encoder to" in res.output
    assert [json.loads(r)["step"] for r in (out / "train_log.jsonl").read_text().splitlines()] == [1]
    assert MoCaEncoder.from_pretrained(out).dim == 64


def test_errors_are_one_line(tmp_path, pairs_and_index):
    runner = CliRunner()
    res = runner.invoke(app, ["train", "contrastive", "--config", "tiny"])
    assert res.exit_code == 1 and "no training data" in res.output
    res = runner.invoke(app, ["train", "contrastive", "--data", str(tmp_path / "missing.jsonl")])
    assert res.exit_code == 1 and "missing.jsonl: data file not found" in res.output
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"query": "only a query"}\n')
    res = runner.invoke(app, ["train", "contrastive", "--data", str(bad), "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "no usable pair rows" in res.output and "Traceback" not in res.output
    res = runner.invoke(app, ["train", "mine", str(bad), "--out", str(tmp_path / "o.jsonl"),
                              "--index-dir", str(pairs_and_index / "idx")])
    assert res.exit_code == 1 and "choose one retriever" in res.output


def test_cocoa_reconstruction_from_page_rows_and_flash_is_refused(pairs_and_index, tmp_path):
    root = pairs_and_index
    cfg = tmp_path / "cocoa.yaml"
    cfg.write_text("base: tiny\nmin_pixels: 12544\nmax_pixels: 25088\nmax_len: 96\ntarget_len: 24\n"
                   "token_budget: 1024\npool_rows: 8\ntrain:\n  lr: 1.0e-3\n  precision: fp32\n"
                   "  gradient_checkpointing: false\n  tensorboard: false\n")
    out = tmp_path / "run"
    res = CliRunner().invoke(app, ["train", "cocoa", "--config", str(cfg), "--data", str(root / "pages.jsonl"),
                                   "--out", str(out), "--max-steps", "1"])
    assert res.exit_code == 0, res.output
    assert json.loads((out / "docrag_encoder.json").read_text())["pooling"] == "eos"
    cfg.write_text(cfg.read_text() + "attn_implementation: flash_attention_2\n")
    res = CliRunner().invoke(app, ["train", "cocoa", "--config", str(cfg), "--data", str(root / "pages.jsonl"),
                                   "--out", str(tmp_path / "flash"), "--max-steps", "1"])
    assert res.exit_code == 1 and "cannot apply CoCoA's block attention mask" in res.output
    assert "Traceback" not in res.output
