"""OCR fallback: a real Debian manual rasterised to an image-only PDF, OCR'd by the real Tesseract CLI."""

from __future__ import annotations

import re
import shutil
from collections import Counter
from pathlib import Path

import pymupdf
import pytest
from PIL import Image

from indexing.ocr import (
    OcrCache,
    PageOcr,
    TesseractEngine,
    build_page_ocr,
    image_digest,
    text_layer_usable,
)
from indexing.pipeline import Events, Indexer, IndexOptions
from indexing.store import open_store

MANUAL = "auto-multiple-choice.en.pdf"
PAGES = range(9, 13)  # 0-based: four text-heavy pages of the English AMC manual

needs_tesseract = pytest.mark.skipif(shutil.which("tesseract") is None,
                                     reason="tesseract-ocr not installed (scripts/system-deps.sh installs it)")


def test_text_layer_check() -> None:
    assert not text_layer_usable("")
    assert not text_layer_usable("  \n 12 \n")  # a scan's stray page number
    assert not text_layer_usable("\ue000\ue001\ue002 \ue003\ue004 \ue005\ue006\ue007 abc")  # private-use glyphs
    assert not text_layer_usable("#$% &*@ !!~ ^^| <>{} ][ ++ == ,,, ;;; ::")  # symbol soup
    assert not text_layer_usable("\ufffd\ufffd\ufffd \ufffd\ufffd words here and there")  # replacement chars
    assert text_layer_usable("The scanner reads the answer sheets and marks them.")
    assert text_layer_usable("Contents")  # a one-word title page is real text
    assert text_layer_usable("試験問題を作成します。")  # CJK: no spaces, still words


@pytest.mark.parametrize("name", [MANUAL, "auto-multiple-choice.ja.pdf", "automultiplechoice.pdf"])
def test_no_page_of_a_born_digital_manual_is_sent_to_ocr(debian_pdfs: dict[str, Path], name: str) -> None:
    """Tables of contents (dot leaders), code listings, index pages and Japanese text all pass the check."""
    with pymupdf.open(debian_pdfs[name]) as doc:
        unusable = [i + 1 for i, page in enumerate(doc) if not text_layer_usable(page.get_text())]
    assert unusable == []


@pytest.fixture(scope="module")
def scanned(debian_pdfs: dict[str, Path], tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str]]:
    """An image-only copy of four manual pages (no text layer at all), and their original text layers."""
    out_path = tmp_path_factory.mktemp("scan") / "scanned manual.pdf"
    with pymupdf.open(debian_pdfs[MANUAL]) as doc, pymupdf.open() as out:
        texts = []
        for i in PAGES:
            page = doc[i]
            texts.append(page.get_text())
            pix = page.get_pixmap(dpi=150)
            new = out.new_page(width=page.rect.width, height=page.rect.height)
            new.insert_image(new.rect, stream=pix.tobytes("png"))
        out.save(out_path)
    with pymupdf.open(out_path) as check:
        assert all(not p.get_text().strip() for p in check)
    return out_path, texts


def distinctive_query(texts: list[str], k: int) -> str:
    """Three words of page k that no other page of the set has (long words: OCR reads them reliably)."""
    words = [Counter(re.findall(r"[a-z]{7,}", t.lower())) for t in texts]
    others = set().union(*(w for j, w in enumerate(words) if j != k))
    unique = [w for w, _ in words[k].most_common() if w not in others]
    assert len(unique) >= 3
    return " ".join(unique[:3])


class OcrProgress(Events):
    """Counts what the progress bar is told."""

    def __init__(self) -> None:
        self.queued = self.done = 0

    def ocr_pages(self, queued: int = 0, done: int = 0) -> None:
        self.queued += queued
        self.done += done


def _payloads(index: Path) -> list[dict]:
    with open_store(index, None) as store:
        return store._scroll(None, 100, ["page", "text", "text_source", "ocr_engine"])


@needs_tesseract
def test_ocr_makes_a_scanned_manual_searchable_and_caches_pages(scanned, tmp_path: Path) -> None:
    pdf, texts = scanned
    index = tmp_path / "idx"
    progress = OcrProgress()
    report = Indexer(index, options=IndexOptions(ocr="auto", ocr_lang="eng"), events=progress).sync([pdf])
    assert (report.pages, report.ocr_pages, report.ocr_cached, report.pages_without_text) == (4, 4, 0, 0)
    assert (progress.queued, progress.done) == (4, 4)
    payloads = _payloads(index)
    assert {p["text_source"] for p in payloads} == {"ocr"}
    assert all(re.fullmatch(r"tesseract \d+\.\d+\.\d+ \(eng\)", p["ocr_engine"]) for p in payloads)
    with open_store(index, None) as store:
        for k in range(len(texts)):
            hits = store.query(text=distinctive_query(texts, k), mode="text", top_k=1)
            assert [h.page for h in hits] == [k + 1]
            assert hits[0].text_source == "ocr"
    # Re-index after the document was dropped (a re-index from scratch): every page comes from the cache.
    Indexer(index).delete(pdf)
    again = Indexer(index, options=IndexOptions(ocr="auto")).sync([pdf])
    assert (again.pages, again.ocr_pages, again.ocr_cached) == (4, 0, 4)
    assert sorted(p["text"] for p in _payloads(index)) == sorted(p["text"] for p in payloads)


def test_ocr_never_reports_pages_without_text(scanned, tmp_path: Path) -> None:
    pdf, texts = scanned
    report = Indexer(tmp_path / "idx", options=IndexOptions(ocr="never")).sync([pdf])
    assert (report.pages, report.ocr_pages, report.pages_without_text) == (4, 0, 4)
    assert "--ocr never" in report.without_text_hint
    with open_store(tmp_path / "idx", None) as store:
        assert store.query(text=distinctive_query(texts, 0), mode="text") == []


def test_without_an_engine_scans_are_indexed_and_counted_never_an_error(scanned, tmp_path, monkeypatch) -> None:
    pdf, _ = scanned
    monkeypatch.setenv("PATH", str(tmp_path / "empty-bin"))  # no tesseract binary to be found
    report = Indexer(tmp_path / "idx", options=IndexOptions(ocr="auto")).sync([pdf])
    assert (report.new, report.failed, report.pages, report.pages_without_text) == (1, 0, 4, 4)
    assert report.without_text_hint.startswith("install tesseract-ocr for OCR")


@needs_tesseract
def test_a_page_that_makes_the_engine_fail_is_reported_and_the_rest_goes_on(scanned, tmp_path: Path) -> None:
    # A 1 pt x 20000 pt strip renders to 2 x 40000 px, more than Tesseract accepts ("Image too large").
    pdf = tmp_path / "with strip.pdf"
    with pymupdf.open(scanned[0]) as src, pymupdf.open() as out:
        out.insert_pdf(src, from_page=0, to_page=0)
        out.new_page(width=1, height=20000)
        out.insert_pdf(src, from_page=1, to_page=1)
        out.save(pdf)
    # Default WebP page images: the strip is stored downscaled to WebP's 16383 px (indexing.pages.MAX_SIDE).
    report = Indexer(tmp_path / "idx", options=IndexOptions(ocr="auto")).sync([pdf])
    assert (report.new, report.failed, report.pages, report.ocr_pages) == (1, 0, 3, 2)
    assert len(report.problems) == 1
    where, reason = report.problems[0]
    assert where == f"{pdf.absolute()} page 2" and reason.startswith("OCR failed: tesseract exited with")
    texts = {p["page"]: p["text"] for p in _payloads(tmp_path / "idx")}
    assert len(texts[1]) > 500 and len(texts[3]) > 500 and texts[2] == ""


@needs_tesseract
def test_page_ocr_cache_keys_on_pixels_and_engine(tmp_path: Path) -> None:
    engine = TesseractEngine("eng")
    img = Image.new("RGB", (400, 100), "white")
    assert image_digest(img) == image_digest(img.copy()) != image_digest(img.convert("L"))
    cache = OcrCache(tmp_path / "c.sqlite")
    ocr = PageOcr("always", engine, cache, workers=2)
    ocr.texts([(img, "a usable text layer with words"), (img.copy(), "")])
    assert (ocr.stats.recognized, ocr.stats.cached) == (1, 1)  # the same pixels twice: one engine run
    ocr.texts([(img, "")])
    assert (ocr.stats.recognized, ocr.stats.cached, len(cache)) == (1, 2, 1)
    ocr.close()


@needs_tesseract
def test_a_short_text_layer_is_kept_when_ocr_reads_nothing(tmp_path: Path) -> None:
    # One word on a page fails the garbage check (too few words), but if OCR finds no text the layer wins.
    blank = Image.new("RGB", (300, 400), "white")
    ocr = PageOcr("auto", TesseractEngine("eng"), None, workers=1)
    (page,) = ocr.texts([(blank, "three")])
    assert (page.text, page.source, page.engine) == ("three", "layer", "")
    assert ocr.stats.without_text == 0
    (always,) = PageOcr("always", TesseractEngine("eng"), None, workers=1).texts([(blank, "Appendix B")])
    assert (always.text, always.source) == ("Appendix B", "layer")
    ocr.close()


def test_build_page_ocr_rejects_an_unknown_mode(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="OCR mode"):
        build_page_ocr("sometimes", "tesseract", "eng", 1, tmp_path)


def test_missing_language_pack_is_named(tmp_path: Path) -> None:
    if shutil.which("tesseract") is None:
        pytest.skip("tesseract-ocr not installed")
    _, hint = build_page_ocr("auto", "tesseract", "eng+xyz", 1, tmp_path)
    assert hint == "tesseract has no language data for xyz: apt-get install tesseract-ocr-xyz"


def test_a_run_with_no_page_to_index_never_starts_the_engine(debian_pdfs, tmp_path: Path, monkeypatch) -> None:
    # Starting Tesseract (--version, --list-langs) and opening the OCR cache cost ~40 ms: a no-op skips them.
    import indexing.ocr

    docs = tmp_path / "docs"
    docs.mkdir()
    with pymupdf.open(debian_pdfs[MANUAL]) as src, pymupdf.open() as out:
        out.insert_pdf(src, from_page=9, to_page=10)
        out.save(docs / "two pages.pdf")
    started = []
    real = indexing.ocr.make_engine
    monkeypatch.setattr(indexing.ocr, "make_engine", lambda *a, **k: started.append(a) or real(*a, **k))
    first = Indexer(tmp_path / "idx", options=IndexOptions(ocr="auto", dpi=48)).sync([docs])
    assert first.pages == 2 and len(started) == 1
    again = Indexer(tmp_path / "idx", options=IndexOptions(ocr="auto", dpi=48)).sync([docs])
    assert again.unchanged == 1 and len(started) == 1
    with pytest.raises(ValueError, match="OCR mode"):  # a bad mode is still refused before any file is read
        Indexer(tmp_path / "idx", options=IndexOptions(ocr="sometimes")).sync([docs])
