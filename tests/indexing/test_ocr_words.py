"""OCR word boxes: a real Debian manual page rendered as a scan, read by the real engines; each word's box must
hold that word's ink, sit where the PDF drew it, follow the text's order, and survive the OCR cache."""

from __future__ import annotations

import importlib.util
import io
import re
import shutil
import sqlite3
import string
import threading
from collections import Counter
from pathlib import Path

import numpy as np
import pymupdf
import pytest
from PIL import Image

from indexing.ocr import OcrCache, PageOcr, RapidOcrEngine, TesseractEngine, image_digest
from indexing.ocr_engines import _line_words, tsv_words
from indexing.words import RawWord, align

MANUAL = "auto-multiple-choice.en.pdf"
PAGE = 9  # 0-based: a text-heavy page of the English AMC manual (licence and prerequisites)
DPI = 150

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="tesseract-ocr not installed (scripts/system-deps.sh installs it)")
needs_rapidocr = pytest.mark.skipif(importlib.util.find_spec("rapidocr_onnxruntime") is None,
                                    reason="RapidOCR not installed (pip install 'docrag[ocr]')")

Box = tuple[float, float, float, float]


class Scan:
    """A page rendered to an image with no text layer, and where the PDF itself drew some of its words."""

    def __init__(self, page: pymupdf.Page, clip_height: float = 1.0) -> None:
        pix = page.get_pixmap(dpi=DPI, clip=pymupdf.Rect(0, 0, page.rect.width, page.rect.height * clip_height))
        self.image = Image.open(io.BytesIO(pix.tobytes("png"))).convert("RGB")
        self.gray = np.asarray(self.image.convert("L"))
        w, h = page.rect.width, page.rect.height * clip_height
        # Distinctive words: once on the page, and search_for finds them nowhere else (not inside a longer word).
        counts = Counter(wd[4] for wd in page.get_text("words"))
        self.distinctive: dict[str, Box] = {}
        for word, n in counts.items():
            if n == 1 and re.fullmatch(r"[A-Za-z]{8,}", word):
                hits = page.search_for(word)
                if len(hits) == 1 and hits[0].y1 <= h:
                    r = hits[0]
                    self.distinctive[word] = (r.x0 / w, r.y0 / h, r.x1 / w, r.y1 / h)

    def crop(self, box: Box, margin: int = 2) -> np.ndarray:
        """The grey pixels of a normalised box, `margin` pixels wider on every side."""
        height, width = self.gray.shape
        x0, y0, x1, y1 = box
        return self.gray[max(0, int(y0 * height) - margin) : min(height, int(np.ceil(y1 * height)) + margin),
                         max(0, int(x0 * width) - margin) : min(width, int(np.ceil(x1 * width)) + margin)]


def iou(a: Box, b: Box) -> float:
    ix = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = ix * iy
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


@pytest.fixture(scope="module")
def page(debian_pdfs: dict[str, Path]):
    with pymupdf.open(debian_pdfs[MANUAL]) as doc:
        yield doc[PAGE]


@pytest.fixture(scope="module")
def scan(page) -> Scan:
    s = Scan(page)
    assert len(s.distinctive) >= 10
    return s


@pytest.fixture(scope="module")
def tesseract() -> TesseractEngine:
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract-ocr not installed")
    return TesseractEngine("eng")


@pytest.fixture(scope="module")
def read(tesseract: TesseractEngine, scan: Scan) -> tuple[str, list[RawWord]]:
    return tesseract.recognize_words(scan.image)


def check_boxes_hold_their_words(scan: Scan, text: str, words: list[RawWord], min_ink: float, min_iou: float) -> None:
    """The checks every engine's words pass (with its own tolerances): see the module docstring."""
    assert len(words) >= 100
    placed = align(text, words)
    assert len(placed) >= 0.9 * len(words)
    for x0, y0, x1, y1, word in words:
        assert 0 <= x0 < x1 <= 1 and 0 <= y0 < y1 <= 1, word
        crop = scan.crop((x0, y0, x1, y1))
        assert crop.size and crop.min() < 128, f"no ink in the box of {word!r}"
        assert (crop < 128).mean() >= min_ink, f"the box of {word!r} is mostly blank"
    assert scan.crop((0.0, 0.0, 0.05, 1.0)).min() >= 128  # the check sees a blank: the page's left margin
    assert len(scan.distinctive) >= 3
    matched = 0
    for word, layer_box in scan.distinctive.items():
        ocr = [w for w in words if w[4].strip(string.punctuation) == word]
        if len(ocr) == 1:  # OCR may have misread one; those it read are where the PDF drew them
            matched += 1
            assert iou(ocr[0][:4], layer_box) > min_iou, (word, ocr[0], layer_box)
    assert matched >= 0.8 * len(scan.distinctive)


@needs_tesseract
def test_tesseract_words_come_with_the_very_text_recognize_gives(tesseract, scan, read) -> None:
    text, words = read
    assert text == tesseract.recognize(scan.image)  # indexed text unchanged, byte for byte
    assert len(text) > 1500
    # In the order of the text: each word is found at or after the previous one's place.
    placed = align(text, words)
    assert len(placed) >= 0.9 * len(words)
    assert all(placed.start[1:] >= placed.end[:-1])


@needs_tesseract
def test_tesseract_boxes_hold_their_words_where_the_pdf_drew_them(scan, read) -> None:
    text, words = read
    check_boxes_hold_their_words(scan, text, words, min_ink=0.05, min_iou=0.5)


def test_tsv_rows_that_are_not_words_are_left_out() -> None:
    header = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext"
    rows = [
        "1\t1\t0\t0\t0\t0\t0\t0\t200\t100\t-1\t",
        "4\t1\t1\t1\t1\t0\t10\t10\t180\t20\t-1\t",
        "5\t1\t1\t1\t1\t1\t10\t10\t50\t20\t96.5\tHello",
        "5\t1\t1\t1\t1\t2\t70\t10\t120\t20\t95.0\t ",  # a rule read as a blank
        "5\t1\t1\t1\t1\t3\t70\t10\t120\t20\t-1\tghost",
        "5\t1\t1\t1\t1\t4\t100\t50\t100\t50\t91.2\twörld\u2028x",  # not split at U+2028
        "5\t1\t1\t1\t1\t5\t1\t2\tbad\t4\t90\tbroken",
    ]
    words = tsv_words("\n".join([header, *rows]) + "\n", 200, 100)
    assert words == [(0.05, 0.1, 0.3, 0.3, "Hello"), (0.5, 0.5, 1.0, 1.0, "wörld\u2028x")]
    assert tsv_words("", 200, 100) == []


@needs_tesseract
def test_page_ocr_gives_words_and_the_cache_keeps_them(tesseract, scan, read, tmp_path: Path) -> None:
    path = tmp_path / "ocr_cache.sqlite"
    ocr = PageOcr("always", tesseract, OcrCache(path), workers=1)
    (first,) = ocr.texts([(scan.image, "")])
    assert (first.source, first.text, first.words) == ("ocr", read[0], read[1])
    (again,) = ocr.texts([(scan.image, "")])
    assert (ocr.stats.recognized, ocr.stats.cached) == (1, 1)
    assert (again.text, again.words) == (first.text, first.words)
    ocr.close()
    reopened = OcrCache(path)  # another run: the words are read back from the file
    assert reopened.get(tesseract.name, image_digest(scan.image)) == (read[0], read[1])
    reopened.close()


@needs_tesseract
def test_a_cache_from_before_word_boxes_opens_and_its_rows_are_read_once_more(tesseract, page, tmp_path) -> None:
    top = Scan(page, clip_height=0.2)  # a strip of the page: a short engine run
    path = tmp_path / "ocr_cache.sqlite"
    old = sqlite3.connect(path)  # the table as the cache created it before words
    old.execute("CREATE TABLE IF NOT EXISTS ocr (engine TEXT, image TEXT, text TEXT, PRIMARY KEY (engine, image))")
    old.execute("INSERT INTO ocr VALUES (?, ?, ?)", (tesseract.name, image_digest(top.image), "old text"))
    old.execute("INSERT INTO ocr VALUES (?, ?, ?)", ("other 1.0 (eng)", "ab" * 32, "another page"))
    old.commit()
    old.close()
    cache = OcrCache(path)
    assert len(cache) == 2 and cache.get(tesseract.name, image_digest(top.image)) is None
    ocr = PageOcr("always", tesseract, cache, workers=1)
    (page_text,) = ocr.texts([(top.image, "")])
    assert ocr.stats.recognized == 1  # no words in the old row: the engine ran once more
    assert page_text.text == tesseract.recognize(top.image) and page_text.words
    assert len(align(page_text.text, page_text.words)) >= 0.9 * len(page_text.words)
    (cached,) = ocr.texts([(top.image, "")])
    assert (ocr.stats.recognized, ocr.stats.cached, len(cache)) == (1, 1, 2)
    assert cached.words == page_text.words
    ocr.close()
    OcrCache(path).close()  # opening the upgraded file again changes nothing


@needs_tesseract
def test_a_kept_text_layer_has_no_ocr_words(tesseract) -> None:
    blank = Image.new("RGB", (300, 400), "white")
    ocr = PageOcr("always", tesseract, None, workers=1)
    (kept,) = ocr.texts([(blank, "Appendix B")])  # OCR read nothing: the layer is kept
    assert (kept.text, kept.source, kept.words) == ("Appendix B", "layer", None)
    ocr.close()
    (layer,) = PageOcr("never", tesseract, None).texts([(blank, "A text layer with enough words in it")])
    assert layer.words is None


def test_rapidocr_line_boxes_are_shared_out_by_characters() -> None:
    square = [[100, 50], [250, 50], [250, 70], [100, 70]]  # 150 px for 15 characters: 10 px each
    words = _line_words(square, "Hello big world", 1000, 100)
    assert [w[4] for w in words] == ["Hello", "big", "world"]
    assert [(w[0], w[2]) for w in words] == [(0.1, 0.15), (0.16, 0.19), (0.2, 0.25)]
    assert all((w[1], w[3]) == (0.5, 0.7) for w in words)
    cjk = _line_words([[0, 0], [365, 0], [365, 10], [0, 10]], "日本 ab", 365, 10)  # CJK 100 px, others 55
    assert [w[4] for w in cjk] == ["日", "本", "ab"]
    assert [(w[0], w[2]) for w in cjk] == [(0.0, round(100 / 365, 4)), (round(100 / 365, 4), round(200 / 365, 4)),
                                           (round(255 / 365, 4), 1.0)]
    slanted = _line_words([[0, 0], [100, 20], [100, 40], [0, 20]], "ab cd", 100, 100)
    assert slanted[0][:4] == (0.0, 0.0, 0.4, 0.28) and slanted[1][:4] == (0.6, 0.12, 1.0, 0.4)
    assert _line_words(square, "   ", 1000, 100) == [] and _line_words([], "x", 10, 10) == []


def test_rapidocr_text_is_its_lines_and_words_follow_it() -> None:
    class FakeRapid:  # RapidOCR's result: [polygon, text, score] per line, and timings
        def __call__(self, array):
            assert array.shape == (100, 200, 3)
            return [[[[10, 10], [110, 10], [110, 30], [10, 30]], "two words", 0.9],
                    [[[10, 50], [70, 50], [70, 70], [10, 70]], "日本語", 0.8]], [0.1, 0.1, 0.1]

    engine = RapidOcrEngine.__new__(RapidOcrEngine)  # no RapidOCR needed: its result is what is tested
    engine._local = threading.local()
    engine._local.engine = FakeRapid()
    image = Image.new("RGB", (200, 100), "white")
    text, words = engine.recognize_words(image)
    assert text == engine.recognize(image) == "two words\n日本語"
    assert [w[4] for w in words] == ["two", "words", "日", "本", "語"]
    assert len(align(text, words)) == 5


@needs_rapidocr
def test_rapidocr_boxes_hold_their_words(page) -> None:
    top = Scan(page, clip_height=0.4)  # RapidOCR takes 10-20 s of CPU for a whole page
    engine = RapidOcrEngine()
    text, words = engine.recognize_words(top.image)
    assert text == engine.recognize(top.image)
    # Approximate boxes (a line shared out by characters): less ink, a looser fit than Tesseract's.
    check_boxes_hold_their_words(top, text, words, min_ink=0.02, min_iou=0.4)
