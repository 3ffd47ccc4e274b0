"""pdf2image (poppler): a second opinion for PDFs that MuPDF draws badly; MuPDF still reads the text layer."""

from __future__ import annotations

import math
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

import pymupdf
from PIL import Image

from .base import (
    DEFAULT_DPI,
    DEFAULT_MAX_PIXELS,
    PDF2IMAGE_HINT,
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
    _out_of_range,
    _read_head,
    _report,
    _requested,
    _stem,
    _to_rgb,
)
from .images import _PdfOrImageRenderer
from .mupdf import _open_mupdf, _text_of, _title_of

_SIZE_RE = re.compile(r"([\d.]+)\s*x\s*([\d.]+)")


@contextmanager
def _pdf_on_disk(path: Path) -> Iterator[Path]:
    """Poppler reads files only: a .pdf.gz is inflated into a temporary file for the duration."""
    if not _is_gz(path):
        _check_pdf_head(path, _read_head(path))
        yield path
        return
    tmp = Path(tempfile.mkdtemp(prefix="docrag-gunzip-"))
    try:
        target = tmp / (_stem(path) + ".pdf")
        with open(target, "wb") as out:
            _gunzip_into(path, out)
        _check_pdf_head(path, _read_head(target))
        yield target
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _poppler_reason(stderr: str) -> str:
    if "Incorrect password" in stderr:
        return "encrypted PDF (password required)"
    if "Invalid page count 0" in stderr:
        return "PDF has no pages"
    for line in stderr.splitlines():
        line = line.strip()
        if line.startswith(("Syntax Error", "Internal Error", "I/O Error")):
            return "corrupt or truncated PDF: " + _one_line(re.sub(r"^[\w/ ]+Error( \(\d+\))?:\s*", "", line), 120)
    lines = [x.strip() for x in stderr.splitlines() if x.strip() and "Unable to get page count" not in x]
    return "corrupt or truncated PDF: " + (_one_line(lines[0], 120) if lines else "poppler could not read it")


class Pdf2ImageRenderer(_PdfOrImageRenderer):
    """Render with poppler's pdftoppm through pdf2image, one page per call (bounded memory).

    Page count and page boxes come from poppler (pdfinfo) too, so this is a genuine second opinion on a
    PDF; the text layer comes from PyMuPDF so that BM25 sees the same text whichever renderer drew the page.
    """

    name = "pdf2image"

    def __init__(
        self, dpi: int = DEFAULT_DPI, max_pixels: int = DEFAULT_MAX_PIXELS, text: bool = True, timeout: int = 120
    ) -> None:
        _check_settings(dpi, max_pixels)
        try:
            import pdf2image
            import pdf2image.exceptions
        except ImportError:
            raise RuntimeError(PDF2IMAGE_HINT) from None
        if shutil.which("pdftoppm") is None or shutil.which("pdfinfo") is None:
            raise RuntimeError(PDF2IMAGE_HINT)
        self._pdf2image = pdf2image
        self.dpi = dpi
        self.max_pixels = max_pixels
        self.text = text
        self.timeout = timeout

    def _page_boxes(self, path: Path, on_disk: Path) -> list[tuple[float, float]]:
        """(width, height) in points of every page as poppler draws it (crop box, rotation applied)."""
        exc = self._pdf2image.exceptions
        try:
            info = self._pdf2image.pdfinfo_from_path(str(on_disk), first_page=1, last_page=10**9, timeout=self.timeout)
        except exc.PDFPageCountError as e:
            raise DocumentError(path, _poppler_reason(str(e))) from None
        except exc.PDFPopplerTimeoutError:
            raise DocumentError(path, f"poppler took longer than {self.timeout} s to read the PDF") from None
        except exc.PDFInfoNotInstalledError:
            raise RuntimeError(PDF2IMAGE_HINT) from None
        count = int(info.get("Pages", 0))
        if count == 0:
            raise DocumentError(path, "PDF has no pages")
        boxes = []
        for number in range(1, count + 1):
            m = _SIZE_RE.match(str(info.get(f"Page {number:4d} size", "")))
            w, h = (float(m.group(1)), float(m.group(2))) if m else (0.0, 0.0)
            if str(info.get(f"Page {number:4d} rot", "0")).strip() in ("90", "270"):
                w, h = h, w
            boxes.append((w, h))
        return boxes

    def _pdf_page_count(self, path: Path) -> int:
        with _pdf_on_disk(path) as on_disk:
            return len(self._page_boxes(path, on_disk))

    def _render_page(self, on_disk: Path, number: int, box: tuple[float, float]) -> Image.Image:
        w_pt, h_pt = box
        if w_pt < 1 or h_pt < 1:
            raise ValueError(f"page has an empty size ({w_pt:g} x {h_pt:g} pt)")
        w_px, h_px = w_pt * self.dpi / 72, h_pt * self.dpi / 72
        s = _cap(w_px, h_px, self.max_pixels)
        size = None if s >= 1 else (max(1, math.floor(w_px * s)), max(1, math.floor(h_px * s)))
        images = self._pdf2image.convert_from_path(
            str(on_disk),
            dpi=self.dpi,
            first_page=number,
            last_page=number,
            use_cropbox=True,  # what pdfinfo's sizes and PyMuPDF's page.rect describe
            size=size,
            timeout=self.timeout,
        )
        if not images:
            raise ValueError("poppler produced no image for this page")
        image = images[0]
        image.load()
        return _fit(_to_rgb(image), self.max_pixels)

    def _render_pdf(self, path: Path, pages: Iterable[int] | None, on_problem: OnProblem | None) -> Iterator[Page]:
        with self._open_pdf(path) as doc:
            yield from doc.render(pages, on_problem)

    def _open_pdf(self, path: Path) -> RenderDocument:
        return _PopplerDocument(self, path)

    @staticmethod
    def _text_doc(on_disk: Path) -> pymupdf.Document | None:
        """PyMuPDF for the text layer; None (pages get "") if MuPDF cannot read what poppler can."""
        try:
            return _open_mupdf(on_disk)
        except DocumentError:
            return None


class _PopplerDocument(RenderDocument):
    """A PDF on disk for poppler (a .pdf.gz inflated once, into a temporary file kept until `close`)."""

    def __init__(self, renderer: Pdf2ImageRenderer, path: Path) -> None:
        self.path, self._r = path, renderer
        self._stack = ExitStack()
        try:
            self._on_disk = self._stack.enter_context(_pdf_on_disk(path))
            self._boxes = renderer._page_boxes(path, self._on_disk)
            self._text_doc = renderer._text_doc(self._on_disk)
            if self._text_doc is not None:
                self._stack.callback(self._text_doc.close)
        except BaseException:
            self._stack.close()
            raise
        self.page_count = len(self._boxes)
        self.title = _title_of(self._text_doc, path) if self._text_doc is not None else _stem(path)

    def render(self, pages: Iterable[int] | None = None, on_problem: OnProblem | None = None) -> Iterator[Page]:
        path, boxes = self.path, self._boxes
        text_doc = self._text_doc if self._r.text else None
        for number in _requested(pages, len(boxes)):
            if not 1 <= number <= len(boxes):
                _report(on_problem, _out_of_range(path, number, len(boxes)))
                continue
            try:
                image = self._r._render_page(self._on_disk, number, boxes[number - 1])
            except Exception as e:  # poppler/PIL failures for one page
                _report(on_problem, PageProblem(path, number, _one_line(str(e)) or type(e).__name__))
                continue
            text = _text_of(text_doc, number)
            yield Page(number=number, image=image, text=text, width=image.width, height=image.height)

    def close(self) -> None:
        self._stack.close()
