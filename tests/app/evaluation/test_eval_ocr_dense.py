"""`docrag eval` measures issue 10's parts: an image-only copy of a real manual scored with and without OCR
(real Tesseract), and the dense text vector and weighted fusion (a tiny real sentence-transformers model)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pymupdf
import pytest
from typer.testing import CliRunner

from app.cli import app

PAGES = range(9, 15)  # 0-based: six text-heavy pages of the English AMC manual


def docrag(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, list(args), env={"DOCRAG_DPI": "144"})
    assert "Traceback" not in result.stderr
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture(scope="module")
def sets(tmp_path_factory, debian_pdfs) -> tuple[Path, Path, Path]:
    """(born-digital set, the same set over an image-only copy of its PDF, index folder)."""
    base = tmp_path_factory.mktemp("ocr-eval")
    (base / "born").mkdir()
    (base / "scan").mkdir()
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as src, pymupdf.open() as born, \
            pymupdf.open() as scan:
        for i in PAGES:
            born.insert_pdf(src, from_page=i, to_page=i)
            pix = src[i].get_pixmap(dpi=150, colorspace=pymupdf.csGRAY)
            page = scan.new_page(width=src[i].rect.width, height=src[i].rect.height)
            page.insert_image(page.rect, stream=pix.tobytes("png"))
        born.save(base / "born" / "manual.pdf")
        scan.save(base / "scan" / "manual.pdf")
    code, out, err = docrag("eval", "build", str(base / "born"), "--out", str(base / "set"), "--split", "1")
    assert code == 0, err
    # The same queries and judgements, over the scanned copy: only the corpus rows' file changes.
    shutil.copytree(base / "set", base / "set-scan")
    corpus = base / "set-scan" / "corpus.jsonl"
    corpus.write_text(corpus.read_text().replace("../born/", "../scan/"))
    assert "../scan/manual.pdf" in corpus.read_text()
    return base / "set", base / "set-scan", base / "idx"


def _metrics(*args: str) -> dict:
    code, out, err = docrag("eval", *args, "--json")
    assert code == 0, err
    return json.loads(out)


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="tesseract-ocr not installed")
def test_ocr_brings_an_image_only_copy_close_to_the_text_layer(sets):
    born, scan, idx = sets
    layer = _metrics(str(born), "--encoder", "none", "--index-dir", str(idx))["text"]["ndcg@5"]
    without = _metrics(str(scan), "--encoder", "none", "--index-dir", str(idx), "--ocr", "never")["text"]["ndcg@5"]
    with_ocr = _metrics(str(scan), "--encoder", "none", "--index-dir", str(idx))["text"]["ndcg@5"]
    assert layer > 0.6 and without == 0.0
    assert with_ocr >= layer - 0.15
    # Each OCR setting has its own eval index: the no-OCR one was not reused for the OCR run.
    names = sorted(p.name for p in (idx / "evals").iterdir())
    assert any(n.endswith("-ocr-never") for n in names) and len(names) == 3


def test_dense_mode_and_fusion_settings(sets, debian_pdfs, tmp_path_factory):
    pytest.importorskip("sentence_transformers")
    from app.textenc import init_tiny_text_encoder

    born, _, _ = sets
    idx = tmp_path_factory.mktemp("dense-idx")
    with pymupdf.open(debian_pdfs["auto-multiple-choice.en.pdf"]) as doc:
        st = init_tiny_text_encoder(tmp_path_factory.mktemp("st") / "tiny-st", [p.get_text() for p in doc])
    base = ["--encoder", "none", "--text-encoder", str(st), "--index-dir", str(idx)]
    default = _metrics(str(born), *base)
    assert set(default) == {"text", "dense", "hybrid"}
    # Fusion settings are query-time only: the same index, another ranking (dense weighted down to nothing).
    tuned = _metrics(str(born), *base, "--mode", "hybrid", "--rrf-k", "1", "--weight-dense", "0.01")
    assert set(tuned) == {"hybrid"}
    assert tuned["hybrid"]["ndcg@5"] == pytest.approx(default["text"]["ndcg@5"], abs=0.05)
    assert len(list((idx / "evals").iterdir())) == 1
    code, _, err = docrag("eval", str(born), "--encoder", "none", "--index-dir", str(idx), "--mode", "dense")
    assert code == 1 and err.count("\n") == 1 and "--text-encoder" in err
