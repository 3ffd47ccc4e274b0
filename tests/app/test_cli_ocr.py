"""`docrag index --ocr ...` from the command line: the summary names pages left without text."""

from __future__ import annotations

import json
import shutil

import pymupdf
from test_cli_index_search import docrag


def test_ocr_flags_and_the_pages_without_text_line(tmp_path, debian_pdfs):
    scan = tmp_path / "scan.pdf"
    with pymupdf.open(debian_pdfs["sample-plain.pdf"]) as src, pymupdf.open() as out:
        for page in list(src)[:2]:  # image-only copies of two real pages
            new = out.new_page(width=page.rect.width, height=page.rect.height)
            new.insert_image(new.rect, stream=page.get_pixmap(dpi=100).tobytes("png"))
        out.save(scan)
    idx = tmp_path / "idx"
    off = docrag("index", str(scan), "--index-dir", str(idx), "--encoder", "none", "--ocr", "never")
    assert off.returncode == 0, off.stderr
    assert "2 pages without text: OCR is off (--ocr never)" in off.stderr and "Traceback" not in off.stderr
    bad = docrag("index", str(scan), "--index-dir", str(tmp_path / "idx2"), "--encoder", "none", "--ocr", "maybe")
    assert bad.returncode != 0 and "unknown OCR mode 'maybe'" in bad.stderr and "Traceback" not in bad.stderr
    if shutil.which("tesseract") is None:
        return  # the OCR run itself needs tesseract-ocr (scripts/system-deps.sh installs it)
    summary = json.loads(docrag("index", str(scan), "--index-dir", str(tmp_path / "idx3"), "--encoder", "none",
                                "--ocr-lang", "eng", "--json").stdout)
    assert summary["pages_without_text"] == 0 and summary["ocr_pages"] == 2
