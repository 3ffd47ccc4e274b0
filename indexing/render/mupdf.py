"""PyMuPDF: the default renderer (fast, streams pages), the text layer, and document titles."""

from __future__ import annotations

import io
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

import pymupdf
from PIL import Image

from ..scan import file_kind
from .base import (
    DEFAULT_DPI,
    DEFAULT_MAX_PIXELS,
    THUMBNAIL_SIDE,
    TITLE_MAX_CHARS,
    DocumentError,
    OnProblem,
    Page,
    PageProblem,
    RenderDocument,
    _cap,
    _check_pdf_head,
    _check_settings,
    _fit,
    _gunzip_into,
    _is_gz,
    _one_line,
    _os_reason,
    _out_of_range,
    _read_head,
    _report,
    _requested,
    _stem,
    normalize_text,
    thumbnail_of,
)
from .images import _PdfOrImageRenderer


def _quiet_mupdf() -> None:
    """MuPDF prints warnings for every odd PDF; we keep them in its buffer and put them in reasons instead."""
    pymupdf.TOOLS.mupdf_display_errors(False)
    pymupdf.TOOLS.mupdf_display_warnings(False)


_MUPDF_BOILERPLATE = ("trying to repair", "repairing pdf document", "... repeated", "page tree load failed")


def _mupdf_message(err: BaseException | None = None) -> str:
    """The first telling line MuPDF logged (e.g. "format error: cannot find startxref")."""
    for line in pymupdf.TOOLS.mupdf_warnings().splitlines():
        line = line.strip()
        if line and not line.lower().startswith(_MUPDF_BOILERPLATE):
            return _one_line(line, 120)
    return _one_line(str(err), 120) if err is not None else "unknown MuPDF error"


def _open_mupdf(path: Path) -> pymupdf.Document:
    """Open a .pdf or .pdf.gz with PyMuPDF, raising DocumentError with a specific reason."""
    _quiet_mupdf()
    if _is_gz(path):
        buf = io.BytesIO()
        _gunzip_into(path, buf)
        data = buf.getvalue()
        del buf
        _check_pdf_head(path, data[:1024])
        source: dict[str, Any] = {"stream": data, "filetype": "pdf"}
    else:
        _check_pdf_head(path, _read_head(path))
        source = {"filename": str(path), "filetype": "pdf"}
    pymupdf.TOOLS.reset_mupdf_warnings()
    try:
        doc = pymupdf.open(**source)
    except pymupdf.EmptyFileError:
        raise DocumentError(path, "empty file (0 bytes)") from None
    except OSError as e:
        raise DocumentError(path, _os_reason(e)) from None
    except (RuntimeError, ValueError) as e:
        raise DocumentError(path, f"corrupt or truncated PDF: {_mupdf_message(e)}") from None
    if doc.needs_pass:
        doc.close()
        raise DocumentError(path, "encrypted PDF (password required)")
    if doc.page_count == 0:
        repaired = doc.is_repaired
        doc.close()
        if repaired:  # MuPDF rebuilt a broken xref and found nothing: truncated download, damaged file
            raise DocumentError(path, f"corrupt or truncated PDF: {_mupdf_message()}")
        raise DocumentError(path, "PDF has no pages")
    return doc


_TEXT_FLAGS = pymupdf.TEXTFLAGS_TEXT & ~pymupdf.TEXT_PRESERVE_LIGATURES


def _page_text(page: pymupdf.Page) -> str:
    # Ligatures expanded ("ﬁ" -> "fi") so that BM25 matches what people type.
    return normalize_text(page.get_text("text", flags=_TEXT_FLAGS))


def _display_list_text(drawn: pymupdf.DisplayList) -> tuple[str, list[tuple[float, float, float, float, str]]]:
    """`_page_text` and the words with their boxes (0-1 of the page), from a display list made for the pixels."""
    textpage = pymupdf.TextPage(drawn.get_textpage(_TEXT_FLAGS))
    return normalize_text(textpage.extractText()), _words(textpage, drawn.rect)


def _words(textpage: pymupdf.TextPage, rect: pymupdf.Rect) -> list[tuple[float, float, float, float, str]]:
    """The text page's words, their boxes normalised to the page rectangle (what `indexing.words` stores)."""
    w, h = rect.width or 1.0, rect.height or 1.0
    x, y = rect.x0, rect.y0
    return [((x0 - x) / w, (y0 - y) / h, (x1 - x) / w, (y1 - y) / h, word)
            for x0, y0, x1, y1, word, *_ in textpage.extractWORDS()]


def open_pdf_pages(path: Path, texts: dict[int, str]) -> Iterator[tuple[int, str, list]]:
    """(page, its text as given, its words) for the pages of `texts`, without drawing them: word boxes for pages
    indexed before word boxes were (`indexing.sidecars.backfill_words`). A page MuPDF cannot read is left out."""
    doc = _open_mupdf(path)
    try:
        for number in sorted(texts):
            if not 1 <= number <= doc.page_count:
                continue
            try:
                page = doc.load_page(number - 1)
                words = _words(page.get_textpage(flags=_TEXT_FLAGS), page.rect)
            except Exception:  # MuPDF raises many types; that page keeps no boxes
                continue
            yield number, texts[number], words
    finally:
        doc.close()


def _mupdf_zoom(page: pymupdf.Page, dpi: int, max_pixels: int) -> float:
    rect = page.rect
    if rect.is_empty or rect.width < 1 or rect.height < 1:
        raise ValueError(f"page has an empty size ({rect.width:g} x {rect.height:g} pt)")
    zoom = dpi / 72
    zoom *= _cap(rect.width * zoom, rect.height * zoom, max_pixels)
    # MuPDF rounds the pixmap outwards: shrink a hair until the real pixel box fits.
    for _ in range(100):
        box = (rect * pymupdf.Matrix(zoom, zoom)).irect
        if box.width * box.height <= max_pixels:
            break
        zoom *= 0.998
    return zoom




class PyMuPDFRenderer(_PdfOrImageRenderer):
    """Render with PyMuPDF (MuPDF): ~ms per page, text layer from the same open document."""

    name = "pymupdf"

    def __init__(self, dpi: int = DEFAULT_DPI, max_pixels: int = DEFAULT_MAX_PIXELS, text: bool = True) -> None:
        _check_settings(dpi, max_pixels)
        self.dpi = dpi
        self.max_pixels = max_pixels
        self.text = text
        _quiet_mupdf()

    def _pdf_page_count(self, path: Path) -> int:
        with _open_mupdf(path) as doc:
            return doc.page_count

    def _render_pdf(self, path: Path, pages: Iterable[int] | None, on_problem: OnProblem | None) -> Iterator[Page]:
        doc = _open_mupdf(path)
        try:
            yield from self._pages(doc, path, pages, on_problem)
        finally:
            doc.close()

    def _open_pdf(self, path: Path) -> RenderDocument:
        return _MuPDFDocument(self, path)

    def _pages(
        self, doc: pymupdf.Document, path: Path, pages: Iterable[int] | None, on_problem: OnProblem | None,
        max_side: int | None = None,
    ) -> Iterator[Page]:
        count = doc.page_count
        for number in _requested(pages, count):
            if not 1 <= number <= count:
                _report(on_problem, _out_of_range(path, number, count))
                continue
            pymupdf.TOOLS.reset_mupdf_warnings()
            try:
                page = doc.load_page(number - 1)
                zoom = _mupdf_zoom(page, self.dpi, self.max_pixels)
                if max_side is not None:  # drawn small, not drawn large and shrunk: ~10x fewer pixels
                    zoom = min(zoom, max_side / max(page.rect.width, page.rect.height))
                # One display list for the pixels and the text: the page's content is interpreted once, not twice
                # (the same pixels and text as page.get_pixmap + page.get_text, ~15% less CPU a page).
                drawn = page.get_displaylist(annots=True)
                pix = drawn.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
                image = Image.new("RGB", (pix.width, pix.height), None)  # None: no zero fill before the copy
                image.frombytes(pix.samples_mv)  # straight from MuPDF's buffer, no intermediate bytes object
                image = _fit(image, self.max_pixels)
                del pix
                text, words = _display_list_text(drawn) if self.text else ("", None)
                del drawn
            except Exception as e:  # MuPDF raises many types; one bad page must not stop the rest
                _report(on_problem, PageProblem(path, number, _one_line(str(e)) or type(e).__name__))
                continue
            yield Page(number=number, image=image, text=text, width=image.width, height=image.height, words=words)


class _MuPDFDocument(RenderDocument):
    """A PDF (or inflated .pdf.gz) opened once by MuPDF: count, title and pages from the same document."""

    def __init__(self, renderer: PyMuPDFRenderer, path: Path) -> None:
        self.path, self._renderer = path, renderer
        self._doc: pymupdf.Document | None = _open_mupdf(path)
        self.page_count = self._doc.page_count
        self.title = _title_of(self._doc, path)

    def render(self, pages: Iterable[int] | None = None, on_problem: OnProblem | None = None) -> Iterator[Page]:
        if self._doc is None:
            raise ValueError(f"{self.path}: document is closed")
        yield from self._renderer._pages(self._doc, self.path, pages, on_problem)

    def render_small(self, pages: Iterable[int] | None = None, on_problem: OnProblem | None = None,
                     max_side: int = THUMBNAIL_SIDE) -> Iterator[Page]:
        if self._doc is None:
            raise ValueError(f"{self.path}: document is closed")
        for page in self._renderer._pages(self._doc, self.path, pages, on_problem, max_side=max_side):
            # MuPDF rounds the pixmap outwards: a pixel over is trimmed here, not stored.
            small = thumbnail_of(page.image, max_side)
            yield Page(page.number, small, page.text, small.width, small.height, page.words)

    def close(self) -> None:
        doc, self._doc = self._doc, None
        if doc is not None:
            doc.close()



def _text_of(doc: pymupdf.Document | None, number: int) -> str:
    if doc is None or number > doc.page_count:
        return ""
    try:
        return _page_text(doc.load_page(number - 1))
    except Exception:  # a page without a text layer is still a page
        return ""


# --------------------------------------------------------------------------------------------------------------



def document_title(path: str | Path) -> str:
    """A display title: the PDF's metadata title, else the first line of page 1's text, else the file name."""
    path = Path(path)
    fallback = _stem(path)
    if file_kind(path) != "pdf":
        return fallback
    try:
        doc = _open_mupdf(path)
    except DocumentError:
        return fallback
    try:
        return _title_of(doc, path)
    finally:
        doc.close()


def _title_of(doc: pymupdf.Document, path: Path) -> str:
    """`document_title` of an open document."""
    fallback = _stem(path)
    try:
        title = " ".join((doc.metadata or {}).get("title", "").split())
    except Exception:  # broken metadata: the title is a nicety
        title = ""
    if title and title.lower() not in ("untitled", "title", "no title"):
        return _truncate(title)
    try:
        text = _page_text(doc.load_page(0))
    except Exception:  # the title is a nicety
        text = ""
    for line in text.splitlines():
        if sum(c.isalpha() for c in line) >= 2:  # skip page numbers ("1", "iv") and rules
            return _truncate(line.strip())
    return fallback


def _truncate(s: str, limit: int = TITLE_MAX_CHARS) -> str:
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"
