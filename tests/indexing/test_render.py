"""Both renderers on real Debian PDFs and on real bad files: pages, text layer, size caps, error reasons."""

from __future__ import annotations

import gzip
import inspect
import itertools
import pickle
from collections.abc import Callable
from pathlib import Path

import badfiles
import pymupdf
import pytest
from PIL import Image, ImageChops, ImageStat

from indexing.render import (
    DocumentError,
    PageProblem,
    Pdf2ImageRenderer,
    PyMuPDFRenderer,
    Renderer,
    document_title,
    make_renderer,
    normalize_text,
)

RENDERERS = ["pymupdf", "pdf2image"]


@pytest.fixture(scope="module", params=RENDERERS)
def renderer(request) -> Renderer:
    return make_renderer(request.param)


@pytest.fixture(scope="module")
def bad_documents(tmp_path_factory, debian_pdfs) -> dict[str, tuple[Path, str]]:
    return badfiles.write_bad_documents(tmp_path_factory.mktemp("bad"), debian_pdfs["sample-plain.pdf"])


def _problems() -> tuple[list[PageProblem], Callable[[PageProblem], None]]:
    seen: list[PageProblem] = []
    return seen, seen.append


def _ink(image: Image.Image) -> float:
    """Mean darkness 0..255: a blank page is ~0."""
    return 255 - ImageStat.Stat(image.convert("L")).mean[0]


# -- real documents -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "name, pages", [("sample-plain.pdf", 30), ("reference.pdf.gz", 95), ("auto-multiple-choice.en.pdf", 101)]
)
def test_page_count_of_real_pdfs(renderer: Renderer, debian_pdfs, name, pages):
    assert renderer.page_count(debian_pdfs[name]) == pages


def test_text_layer_and_page_order(renderer: Renderer, debian_pdfs):
    """Page 1 of sample-plain asks about 1971, page 2 about 1901: each page gets its own text."""
    pages = list(renderer.render(debian_pdfs["sample-plain.pdf"], pages=[2, 1]))
    assert [p.number for p in pages] == [2, 1]
    p2, p1 = pages
    assert "package automultiplechoice is used" in p1.text
    assert "taking place during the year 1971?" in p1.text and "1901" not in p1.text
    assert "taking place during the year 1901?" in p2.text
    assert "\x88" not in p1.text and "  " not in p1.text  # TeX's bullet glyph code and double spaces are cleaned


def test_pages_are_rgb_letter_size_at_144_dpi(renderer: Renderer, debian_pdfs):
    (page,) = renderer.render(debian_pdfs["sample-plain.pdf"], pages=[1])
    assert page.image.mode == "RGB"
    assert (page.width, page.height) == page.image.size == (1224, 1584)  # 8.5 x 11 in at 144 dpi
    assert 2 < _ink(page.image) < 40  # text on white, neither blank nor black


def test_dpi_changes_size(debian_pdfs):
    for name in RENDERERS:
        (low,) = make_renderer(name, dpi=72).render(debian_pdfs["sample-plain.pdf"], pages=[3])
        (high,) = make_renderer(name, dpi=200, max_pixels=10**7).render(debian_pdfs["sample-plain.pdf"], pages=[3])
        (capped,) = make_renderer(name, dpi=200).render(debian_pdfs["sample-plain.pdf"], pages=[3])
        assert low.image.size == (612, 792)
        assert abs(high.width - 1700) <= 1 and abs(high.height - 2200) <= 1
        # 1700 x 2200 = 3.7 Mpx: the default 2.5 Mpx cap lowers the scale, keeping the aspect ratio
        assert capped.width * capped.height <= 2_500_000 and capped.width > 1300
        assert abs(capped.width / capped.height - 8.5 / 11) < 0.01


def test_gzipped_pdf_renders_with_text(renderer: Renderer, debian_pdfs):
    (page,) = renderer.render(debian_pdfs["reference.pdf.gz"], pages=[1])
    assert "DocBook XSL Stylesheets" in page.text
    assert (page.width, page.height) == (1191, 1684)  # A4 at 144 dpi
    assert _ink(page.image) > 2


def test_gzip_copy_renders_like_the_original(renderer: Renderer, debian_pdfs, tmp_path):
    original = debian_pdfs["sample-plain.pdf"]
    gz = badfiles.gzipped(original, tmp_path)
    (a,) = renderer.render(original, pages=[4])
    (b,) = renderer.render(gz, pages=[4])
    assert renderer.page_count(gz) == 30
    assert a.text == b.text and a.image.size == b.image.size
    assert ImageChops.difference(a.image, b.image).getbbox() is None  # identical pixels


def test_renderers_draw_the_same_pages(debian_pdfs):
    """pdf2image's page N looks like PyMuPDF's page N (closer than PyMuPDF's page N+1 does)."""

    def thumb(image: Image.Image) -> Image.Image:
        return image.convert("L").resize((60, 80), Image.Resampling.BOX)

    def distance(a: Image.Image, b: Image.Image) -> float:
        return ImageStat.Stat(ImageChops.difference(thumb(a), thumb(b))).mean[0]

    mu, pop = make_renderer("pymupdf", dpi=72), make_renderer("pdf2image", dpi=72)
    for name, number in [("auto-multiple-choice.en.pdf", 5), ("reference.pdf.gz", 3)]:
        a, next_page = mu.render(debian_pdfs[name], pages=[number, number + 1])
        (b,) = pop.render(debian_pdfs[name], pages=[number])
        assert a.image.size == b.image.size
        assert a.text == b.text  # the text layer comes from the same place
        assert distance(a.image, b.image) < 2.5 < distance(a.image, next_page.image)


def test_render_streams_pages(renderer: Renderer, debian_pdfs):
    pages = renderer.render(debian_pdfs["auto-multiple-choice.en.pdf"])
    assert inspect.isgenerator(pages)
    first_two = list(itertools.islice(pages, 2))
    pages.close()  # stop early: the document is closed, nothing else is rendered
    assert [p.number for p in first_two] == [1, 2]


def test_text_can_be_turned_off(debian_pdfs):
    for name in RENDERERS:
        (page,) = make_renderer(name, dpi=36, text=False).render(debian_pdfs["sample-plain.pdf"], pages=[1])
        assert page.text == ""


def test_out_of_range_pages_are_problems(renderer: Renderer, debian_pdfs):
    seen, report = _problems()
    pages = list(renderer.render(debian_pdfs["sample-plain.pdf"], pages=[0, 30, 31], on_problem=report))
    assert [p.number for p in pages] == [30]
    assert [(p.page, p.reason) for p in seen] == [
        (0, "no page 0 (the document has 30 pages)"),
        (31, "no page 31 (the document has 30 pages)"),
    ]


# -- size caps --------------------------------------------------------------------------------------------------


def test_max_pixels_caps_a_poster_page(renderer: Renderer, tmp_path):
    poster = badfiles.poster_pdf(tmp_path)
    (page,) = renderer.render(poster)
    assert page.width * page.height <= 2_500_000
    assert abs(page.width - page.height) <= 1  # aspect ratio kept
    assert page.width >= 1500  # capped, not collapsed (sqrt(2.5e6) = 1581)
    assert _ink(page.image) > 1


def test_custom_max_pixels(tmp_path):
    path = badfiles.text_pdf(tmp_path / "a4.pdf", ["A4 page"])
    for name in RENDERERS:
        (page,) = make_renderer(name, dpi=144, max_pixels=500_000).render(path)
        assert page.width * page.height <= 500_000
        assert abs(page.width / page.height - 595 / 842) < 0.01


def test_images_are_capped_flattened_and_text_free(renderer: Renderer, tmp_path):
    big = tmp_path / "scan.JPG"
    Image.new("RGB", (4000, 3000), (200, 210, 220)).save(big, quality=80)
    (page,) = renderer.render(big)
    assert page.width * page.height <= 2_500_000 and abs(page.width / page.height - 4 / 3) < 0.01
    assert page.text == "" and renderer.page_count(big) == 1

    transparent = tmp_path / "logo.png"
    Image.new("RGBA", (50, 40), (0, 0, 0, 0)).save(transparent)
    (page,) = renderer.render(transparent)
    assert page.image.mode == "RGB" and page.image.getpixel((10, 10)) == (255, 255, 255)  # paper, not black


def test_multi_page_tiff(renderer: Renderer, tmp_path):
    path = tmp_path / "fax.tiff"
    frames = [Image.new("RGB", (300, 400), color) for color in [(255, 0, 0), (0, 255, 0), (0, 0, 255)]]
    frames[0].save(path, save_all=True, append_images=frames[1:])
    assert renderer.page_count(path) == 3
    pages = list(renderer.render(path, pages=[3, 1]))
    assert [(p.number, p.image.getpixel((5, 5))) for p in pages] == [(3, (0, 0, 255)), (1, (255, 0, 0))]


# -- bad input --------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(badfiles.BAD_DOCUMENTS))
def test_bad_documents_give_document_error_with_reason(renderer: Renderer, bad_documents, name):
    path, reason = bad_documents[name]
    with pytest.raises(DocumentError) as info:
        renderer.page_count(path)
    assert info.value.reason.startswith(reason), info.value.reason
    with pytest.raises(DocumentError) as info:
        list(renderer.render(path))
    err = info.value
    assert err.reason.startswith(reason), err.reason
    assert err.path == path and str(err) == f"{path}: {err.reason}"
    assert "\n" not in err.reason and len(err.reason) < 200


def test_truncated_and_corrupt_reasons_carry_the_library_message(bad_documents):
    for name in RENDERERS:
        r = make_renderer(name)
        for bad in ("truncated", "corrupt"):
            with pytest.raises(DocumentError) as info:
                r.page_count(bad_documents[bad][0])
            detail = info.value.reason.removeprefix("corrupt or truncated PDF: ")
            assert len(detail) > 5 and detail != info.value.reason


def test_encrypted_pdf_text_does_not_leak(tmp_path):
    path = badfiles.encrypted_pdf(tmp_path)
    assert pymupdf.open(path).needs_pass  # the file really is locked
    assert document_title(path) == "encrypted"  # falls back to the file name, no exception


def test_fifo_named_pdf_does_not_block(renderer: Renderer, tmp_path):
    fifo = badfiles.make_fifo_pdf(tmp_path)
    if fifo is None:
        pytest.skip("no FIFOs on this platform")
    with pytest.raises(DocumentError, match="not a regular file"):
        list(renderer.render(fifo))


def test_unsupported_suffix(renderer: Renderer, tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("hello")
    with pytest.raises(DocumentError, match="unsupported file type"):
        renderer.page_count(path)


def test_corrupt_image(renderer: Renderer, tmp_path):
    png = tmp_path / "broken.png"
    Image.new("RGB", (200, 200), (10, 20, 30)).save(png)
    png.write_bytes(png.read_bytes()[:60])  # header survives, pixel data cut off
    with pytest.raises(DocumentError, match="corrupt or truncated image"):
        list(renderer.render(png))
    fake = tmp_path / "fake.jpg"
    fake.write_text("not a jpeg")
    with pytest.raises(DocumentError, match="not an image PIL can read"):
        list(renderer.render(fake))


def test_unreadable_file(renderer: Renderer, tmp_path):
    path = badfiles.unreadable_pdf(tmp_path)
    try:
        if badfiles.is_readable(path):  # running as root: mode 000 does not stop reads
            assert [p.number for p in renderer.render(path)] == [1]
        else:
            with pytest.raises(DocumentError) as info:
                list(renderer.render(path))
            assert info.value.reason == "cannot read file: Permission denied"
    finally:
        path.chmod(0o644)


def test_page_level_failure_is_reported_and_the_rest_goes_on(renderer: Renderer, tmp_path):
    path = badfiles.page_tree_cycle_pdf(tmp_path)
    seen, report = _problems()
    pages = list(renderer.render(path, on_problem=report))
    assert [p.number for p in pages] == [1]
    assert "First page survives" in pages[0].text
    assert [(p.path, p.page) for p in seen] == [(path, 2)]
    assert seen[0].reason and "\n" not in seen[0].reason


def test_page_failure_without_callback_is_logged(tmp_path, caplog):
    path = badfiles.page_tree_cycle_pdf(tmp_path)
    with caplog.at_level("WARNING", logger="indexing.render"):
        pages = list(PyMuPDFRenderer().render(path))
    assert len(pages) == 1 and "page 2" in caplog.text


def test_non_ascii_file_name(renderer: Renderer, tmp_path):
    path = badfiles.non_ascii_named_pdf(tmp_path)
    pages = list(renderer.render(path))
    assert [p.text for p in pages] == list(badfiles.NON_ASCII_PAGES)
    assert document_title(path) == badfiles.NON_ASCII_PAGES[0]


# -- the small API ----------------------------------------------------------------------------------------------


def test_make_renderer():
    assert isinstance(make_renderer(), PyMuPDFRenderer)
    r = make_renderer(" PDF2Image ", dpi=100, max_pixels=10**6, text=False)
    assert isinstance(r, Pdf2ImageRenderer)
    assert (r.name, r.dpi, r.max_pixels, r.text) == ("pdf2image", 100, 10**6, False)
    assert isinstance(r, Renderer)
    with pytest.raises(ValueError, match="unknown renderer 'poppler': choose one of pymupdf, pdf2image"):
        make_renderer("poppler")
    with pytest.raises(ValueError, match="dpi"):
        make_renderer(dpi=0)


def test_document_error_pickles():
    err = pickle.loads(pickle.dumps(DocumentError(Path("/x/a.pdf"), "PDF has no pages")))
    assert (err.path, err.reason, str(err)) == (Path("/x/a.pdf"), "PDF has no pages", "/x/a.pdf: PDF has no pages")


def test_document_title(debian_pdfs, bad_documents, tmp_path):
    assert document_title(debian_pdfs["auto-multiple-choice.en.pdf"]) == "Auto Multiple Choice"  # metadata
    assert document_title(debian_pdfs["sample-plain.pdf"]) == "AMC"  # no metadata title: first line of page 1
    # page 1 of reference.pdf.gz starts with a bare page number, which is not a title
    assert document_title(debian_pdfs["reference.pdf.gz"]).startswith("DocBook XSL Stylesheets")
    assert document_title(bad_documents["corrupt"][0]) == "corrupt"
    assert document_title(bad_documents["truncated_gz"][0]) == "truncated"
    img = tmp_path / "Scan 7.png"
    Image.new("RGB", (10, 10)).save(img)
    assert document_title(img) == "Scan 7"
    long = badfiles.text_pdf(tmp_path / "long.pdf", ["word " * 60], size=(3000, 400))
    assert len(document_title(long)) <= 120 and document_title(long).endswith("…")


def test_normalize_text():
    raw = "Title\r\n\r\n\r\n\x88 item\tone \xa0 two  \n\n\n\nend\x00 "
    assert normalize_text(raw) == "Title\n\nitem one two\n\nend"


def test_gzip_bomb_guard(tmp_path, monkeypatch):
    from indexing.render import base as render  # where the limit lives

    path = tmp_path / "big.pdf.gz"
    with gzip.open(path, "wb") as f:
        f.write(b"%PDF-1.7\n" + b"\0" * (3 << 20))
    monkeypatch.setattr(render, "MAX_GUNZIPPED_BYTES", 1 << 20)  # the real limit is 1 GiB; the check is the same
    for name in RENDERERS:
        with pytest.raises(DocumentError, match="decompressed PDF is larger than 1 MiB"):
            make_renderer(name).page_count(path)
