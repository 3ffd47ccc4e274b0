"""Highlights: a search's matched terms as boxes on the page, from the word boxes the indexer keeps; checked against
the pixels of real Debian manual pages rendered at the index's dpi."""

from __future__ import annotations

import shutil
import unicodedata
from pathlib import Path

import numpy as np
import pytest
from openai_double import OpenAIDouble
from PIL import Image

from app import DocRag
from app.highlights import NO_BOXES, NO_TERMS, annotate_hits
from indexing.bm25 import Bm25Encoder
from indexing.manifest import Manifest
from indexing.page_images import page_images
from indexing.sidecars import WORDS_META
from indexing.snippets import TermMatcher
from indexing.store import Hit
from indexing.words import WORDS_NAME, WordStore


@pytest.fixture(scope="module")
def en_index(tmp_path_factory, debian_pdfs) -> tuple[DocRag, Path]:
    idx = tmp_path_factory.mktemp("hl") / "index"
    rag = DocRag(index_dir=idx, encoder="none", text_encoder="none")
    rag.index([debian_pdfs["auto-multiple-choice.en.pdf"]])
    return rag, idx


def dark(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("L")) < 128


def pixel_box(box: list[float], size: tuple[int, int]) -> tuple[int, int, int, int]:
    w, h = size
    return round(box[0] * w), round(box[1] * h), round(box[2] * w), round(box[3] * h)


def test_each_highlight_box_encloses_its_words_glyphs(en_index) -> None:
    rag, idx = en_index
    hits = rag.search("scanner configuration", top_k=3, mode="text")
    matcher = TermMatcher(Bm25Encoder())
    checked = whole = 0
    for hit in hits:
        assert hit.highlights and hit.highlights_note == ""
        with Image.open(page_images(idx).full(hit.doc_hash, hit.page)) as im:
            ink = dark(im)
        for hl in hit.highlights:
            assert hl["term"] in hit.matched_terms
            x0, y0, x1, y1 = pixel_box(hl["box"], ink.shape[::-1])
            assert 0 <= x0 < x1 <= ink.shape[1] and 0 <= y0 < y1 <= ink.shape[0]
            assert ink[y0:y1, x0:x1].mean() > 0.05, f"box {hl} holds almost no ink"
            checked += 1
        # a term that is a whole word ("scanner", not the end of "copier/scanner"): its box holds the word whole,
        # so the strips just beyond its ends are the blank between words
        text = unicodedata.normalize("NFKC", hit.text)
        with WordStore(idx) as store:
            words = store.words(hit.doc_hash, hit.page)
        for span in matcher.match_terms(text, "scanner configuration"):
            if not (span.start == 0 or text[span.start - 1].isspace()) or not (
                    span.end == len(text) or text[span.end].isspace()):
                continue
            for box in words.boxes(span.start, span.end, text):
                x0, y0, x1, y1 = pixel_box(list(box), ink.shape[::-1])
                pad, strip = 2, 3
                left = ink[y0 + 1 : y1 - 1, max(0, x0 - pad - strip) : max(0, x0 - pad)]
                right = ink[y0 + 1 : y1 - 1, x1 + pad : x1 + pad + strip]
                assert left.size == 0 or left.mean() < 0.05, f"ink left of {span}: the box cuts a word"
                assert right.size == 0 or right.mean() < 0.05, f"ink right of {span}: the box cuts a word"
                whole += 1
    assert checked >= 5 and whole >= 3


def test_json_hits_carry_highlights_and_visual_only_hits_say_why(en_index, tmp_path) -> None:
    rag, idx = en_index
    from app import hit_to_dict

    hit = rag.search("scanner", top_k=1, mode="text")[0]
    d = hit_to_dict(hit, idx)
    assert d["highlights"] and set(d["highlights"][0]) == {"box", "term"} and "highlights_note" not in d
    # a hit whose text has none of the query's terms (what the visual or dense vector alone finds)
    other = Hit(doc_path=hit.doc_path, page=hit.page, score=0.5, image_path="", text="Nothing matches here.",
                title="", doc_hash=hit.doc_hash)
    annotate_hits([other], "scanner", TermMatcher(Bm25Encoder()), idx)
    assert other.highlights == [] and other.highlights_note == NO_TERMS
    assert "highlights_note" in hit_to_dict(other, idx)


def test_japanese_bigrams_are_highlighted_inside_runs(tmp_path, debian_pdfs) -> None:
    idx = tmp_path / "ja"
    rag = DocRag(index_dir=idx, encoder="none", text_encoder="none", bm25_language="japanese")
    rag.index([debian_pdfs["auto-multiple-choice.ja.pdf"]])
    hits = rag.search("答案用紙", top_k=2, mode="text")
    assert hits and hits[0].highlights
    with Image.open(page_images(idx).full(hits[0].doc_hash, hits[0].page)) as im:
        ink = dark(im)
    for hl in hits[0].highlights:
        assert "答案" in hl["term"] or "用紙" in hl["term"]
        x0, y0, x1, y1 = pixel_box(hl["box"], ink.shape[::-1])
        assert ink[y0:y1, x0:x1].mean() > 0.05


def index_without_words(tmp_path: Path, pdf: Path) -> tuple[DocRag, Path, Path, int]:
    """(service, source folder, index, word rows it had): an index as made before word boxes (no words file, no
    back-fill mark)."""
    src = tmp_path / "docs"
    src.mkdir()
    shutil.copy(pdf, src / "a.pdf")
    idx = tmp_path / "index"
    rag = DocRag(index_dir=idx, encoder="none", text_encoder="none")
    rag.index([src])
    with WordStore(idx) as words:
        full = words.count()
    (idx / WORDS_NAME).unlink()
    with Manifest(idx) as m:
        m.set_meta(WORDS_META, "")
    return rag, src, idx, full


def test_an_index_from_before_word_boxes_gets_them_without_rendering(tmp_path, debian_pdfs) -> None:
    rag, src, idx, full = index_without_words(tmp_path, debian_pdfs["sample-plain.pdf"])
    assert full > 0
    assert rag.search("marking", top_k=1, mode="text")[0].highlights_note == NO_BOXES
    report = rag.index([src])
    assert report.pages_rendered == 0 and report.words_added == full
    with WordStore(idx) as words:
        assert words.count() == full
    assert rag.search("marking", top_k=1, mode="text")[0].highlights


def test_a_changed_source_gets_no_boxes_from_its_new_content(tmp_path, debian_pdfs) -> None:
    rag, src, idx, _ = index_without_words(tmp_path, debian_pdfs["sample-plain.pdf"])
    shutil.copy(debian_pdfs["sample-amc.pdf"], src / "a.pdf")  # other content under the indexed name
    other = tmp_path / "other"
    other.mkdir()
    messages: list[str] = []
    from indexing.run import Events

    class Told(Events):
        def message(self, text: str) -> None:
            messages.append(text)

    rag.index([other], events=Told())  # a run over another folder: a.pdf itself is not re-indexed
    assert any("a.pdf" in m and "source changed or is missing" in m for m in messages)
    with WordStore(idx) as words:
        assert words.count() == 0


def test_quoted_citations_come_back_with_boxes_and_an_invented_quote_is_not_found(en_index) -> None:
    """The OpenAI-compatible double answers with a quote from page [1] (split by a line break on the page) and
    an invented one for [2]: the first gets boxes on its page, the second is found: false and said in one line."""
    rag, idx = en_index
    hits = rag.search("scanner configuration", top_k=2, mode="text")
    lines = [ln for ln in hits[0].text.splitlines() if len(ln.split()) >= 6]
    quote = " ".join((lines[0] + " " + lines[1]).split()[2:12])  # across a line break, as the model reads it

    def reply(body: dict) -> list[str]:
        return [f'The scanner is set up there [1] "{quote}", ', 'and elsewhere [2] "purple elephants dance on '
                'the moon every Tuesday night".']

    with OpenAIDouble(reply=reply) as srv:
        asker = DocRag(index_dir=idx, encoder="none", text_encoder="none", llm_base_url=srv.base_url)
        answer = asker.ask("scanner configuration", top_k=2, mode="text").result()
    first, second = answer.citations
    assert first.quote == quote and first.found is True and first.boxes
    with Image.open(page_images(idx).full(hits[0].doc_hash, hits[0].page)) as im:
        ink = dark(im)
    for box in first.boxes:
        x0, y0, x1, y1 = pixel_box(box, ink.shape[::-1])
        assert ink[y0:y1, x0:x1].mean() > 0.05
    assert second.found is False and second.boxes == []
    assert answer.answer.count("is not on") == 1 and "[2]" in answer.answer.splitlines()[-1]
    assert answer.as_dict()["citations"][0]["found"] is True


@pytest.mark.skipif(shutil.which("tesseract") is None, reason="needs tesseract-ocr (scripts/system-deps.sh)")
def test_an_ocr_scan_gets_its_highlights_from_the_ocr_engines_boxes(tmp_path, debian_pdfs) -> None:
    import pymupdf

    scans = tmp_path / "scans"
    scans.mkdir()
    with pymupdf.open(debian_pdfs["sample-plain.pdf"]) as doc:
        doc[0].get_pixmap(dpi=150).save(scans / "scan.png")  # an image: no text layer, OCR reads it
    idx = tmp_path / "index"
    rag = DocRag(index_dir=idx, encoder="none", text_encoder="none", ocr="auto")
    rag.index([scans])
    hit = rag.search("automultiplechoice options", top_k=1, mode="text")[0]
    assert hit.text_source == "ocr" and hit.highlights
    with Image.open(page_images(idx).full(hit.doc_hash, hit.page)) as im:
        ink = dark(im)
    for hl in hit.highlights:
        x0, y0, x1, y1 = pixel_box(hl["box"], ink.shape[::-1])
        assert ink[y0:y1, x0:x1].mean() > 0.05
