"""Documents -> page images + text layer, one page at a time.

Two rasterisers behind one `Renderer` protocol: PyMuPDF (fast, the default) and pdf2image/poppler (a
second opinion for PDFs that MuPDF draws badly). Both stream pages (a 1000-page PDF never sits in RAM),
cap a page's pixel count (a poster page must not blow memory), and turn every whole-document failure into
a `DocumentError` with a one-line human reason, and every single-page failure into a `PageProblem` that
is reported while the rest of the document goes on.
"""

from __future__ import annotations

import gzip
import io
import logging
import math
import os
import re
import shutil
import stat
import tempfile
import zlib
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any, Protocol, runtime_checkable

import pymupdf
from PIL import Image, ImageOps

from .scan import file_kind

log = logging.getLogger(__name__)

DEFAULT_DPI = 144
DEFAULT_MAX_PIXELS = 2_500_000
# A .pdf.gz that inflates beyond this is refused (a gzip bomb, or not a document anyone wants indexed).
MAX_GUNZIPPED_BYTES = 1 << 30
TITLE_MAX_CHARS = 120
PDF2IMAGE_HINT = (
    "pdf2image renderer needs poppler-utils (apt-get install poppler-utils) and `pip install docrag[pdf2image]`"
)


@dataclass
class Page:
    """One rendered page: `number` is 1-based, `image` is RGB, `text` is the text layer ("" for images/scans)."""

    number: int
    image: Image.Image
    text: str
    width: int
    height: int


class DocumentError(Exception):
    """The whole document cannot be rendered; `reason` is one human line ("encrypted PDF (password required)")."""

    def __init__(self, path: str | Path, reason: str) -> None:
        super().__init__(str(path), reason)  # args match __init__: the error pickles across processes
        self.path = Path(path)
        self.reason = reason

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class PageProblem:
    """One page that failed to render; the document's other pages are still produced."""

    path: Path
    page: int
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: page {self.page}: {self.reason}"


OnProblem = Callable[[PageProblem], None]


@runtime_checkable
class Renderer(Protocol):
    """Turns a PDF (.pdf, .pdf.gz) or image file into a stream of `Page`s."""

    name: str

    def page_count(self, path: str | Path) -> int:
        """Number of pages; raises `DocumentError`."""
        ...

    def render(
        self, path: str | Path, pages: Iterable[int] | None = None, on_problem: OnProblem | None = None
    ) -> Iterator[Page]:
        """Yield pages (all, or the 1-based `pages` in the given order) one at a time."""
        ...


# --------------------------------------------------------------------------------------------------------------
# Shared helpers


def normalize_text(text: str) -> str:
    """Light clean-up of a text layer: no control characters, single spaces, no trailing blanks, <= 1 blank line."""
    text = text.replace("\r\n", "\n").replace("\r", "\n")
    text = _CONTROL_CHARS.sub("", text)
    text = "\n".join(" ".join(line.split()) for line in text.split("\n"))
    return _BLANK_LINES.sub("\n\n", text).strip()


_CONTROL_CHARS = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f]")
_BLANK_LINES = re.compile(r"\n{3,}")


def _one_line(message: str, limit: int = 160) -> str:
    line = " ".join(str(message).split())
    line = re.sub(r"^code=\d+:\s*", "", line)
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _os_reason(err: OSError) -> str:
    return f"cannot read file: {err.strerror or _one_line(str(err)) or type(err).__name__}"


def _read_head(path: Path, n: int = 1024) -> bytes:
    try:
        mode = os.stat(path).st_mode
        if not stat.S_ISREG(mode) and not stat.S_ISDIR(mode):  # open() of a FIFO named x.pdf blocks forever
            raise DocumentError(path, "not a regular file")
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise DocumentError(path, _os_reason(e)) from None


def _preview(head: bytes, n: int = 24) -> str:
    shown = "".join(chr(b) if 32 <= b < 127 else "." for b in head[:n])
    return repr(shown)


def _check_pdf_head(path: Path, head: bytes) -> None:
    """A .pdf that is really HTML (a failed download), text or a Word file gets a reason saying so."""
    if not head:
        raise DocumentError(path, "empty file (0 bytes)")
    if b"%PDF-" not in head:  # the spec allows junk before the header; 1 KiB is what readers accept
        raise DocumentError(path, f"not a PDF (file starts with {_preview(head)})")


def _gunzip_into(path: Path, out: IO[bytes], limit: int | None = None) -> None:
    """Inflate a .pdf.gz into `out`, streamed, refusing more than `limit` (MAX_GUNZIPPED_BYTES) bytes."""
    limit = MAX_GUNZIPPED_BYTES if limit is None else limit
    _read_head(path, 1)  # "cannot read file: ..." before any gzip message
    written = 0
    try:
        with gzip.open(path, "rb") as f:
            while block := f.read(1 << 20):
                written += len(block)
                if written > limit:
                    raise DocumentError(path, f"decompressed PDF is larger than {limit >> 20} MiB")
                out.write(block)
    except gzip.BadGzipFile:
        raise DocumentError(path, "not a gzip file (name ends in .gz)") from None
    except EOFError:
        raise DocumentError(path, "truncated gzip file (compressed data ends early)") from None
    except zlib.error as e:
        raise DocumentError(path, f"corrupt gzip file: {_one_line(str(e))}") from None
    except OSError as e:
        raise DocumentError(path, _os_reason(e)) from None


def _is_gz(path: Path) -> bool:
    return path.name.lower().endswith(".gz")


def _kind(path: Path) -> str:
    kind = file_kind(path)
    if kind is None:
        raise DocumentError(path, "unsupported file type")
    return kind


def _report(on_problem: OnProblem | None, problem: PageProblem) -> None:
    if on_problem is not None:
        on_problem(problem)
    else:
        log.warning("skipped %s", problem)


def _requested(pages: Iterable[int] | None, count: int) -> Iterable[int]:
    return range(1, count + 1) if pages is None else pages


def _out_of_range(path: Path, number: int, count: int) -> PageProblem:
    return PageProblem(path, number, f"no page {number} (the document has {count} pages)")


def _cap(width: float, height: float, max_pixels: int) -> float:
    """Scale factor <= 1 that brings width*height under max_pixels."""
    area = width * height
    return 1.0 if area <= max_pixels else math.sqrt(max_pixels / area)


def _fit(image: Image.Image, max_pixels: int) -> Image.Image:
    """Downscale (keeping the aspect ratio) when a rounding step left the image above max_pixels."""
    w, h = image.size
    if w * h <= max_pixels:
        return image
    s = _cap(w, h, max_pixels)
    nw, nh = max(1, math.floor(w * s)), max(1, math.floor(h * s))
    while nw * nh > max_pixels:
        nw, nh = max(1, nw - 1), max(1, nh - 1)
    return image.resize((nw, nh), Image.Resampling.LANCZOS)


def _to_rgb(image: Image.Image) -> Image.Image:
    """Transparent pixels become white paper, not black."""
    if image.mode == "RGB":
        return image
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        paper = Image.new("RGB", rgba.size, (255, 255, 255))
        paper.paste(rgba, mask=rgba.getchannel("A"))
        return paper
    return image.convert("RGB")


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".pdf.gz", ".gz", ".pdf"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.stem or name


# --------------------------------------------------------------------------------------------------------------
# Images (.png, .jpg, .webp, .tif...): the same for both renderers


def _open_image(path: Path) -> Image.Image:
    head = _read_head(path, 16)
    if not head:
        raise DocumentError(path, "empty file (0 bytes)")
    try:
        return Image.open(path)
    except Image.DecompressionBombError as e:
        raise DocumentError(path, f"image too large to decode safely: {_one_line(str(e), 100)}") from None
    except Image.UnidentifiedImageError:
        raise DocumentError(path, f"not an image PIL can read (file starts with {_preview(head)})") from None
    except OSError as e:
        raise DocumentError(path, _os_reason(e)) from None


def _image_frames(image: Image.Image) -> int:
    # Multi-page TIFFs are scanned documents; animated WebP/PNG frames are not pages.
    return getattr(image, "n_frames", 1) if image.format == "TIFF" else 1


def _image_page_count(path: Path) -> int:
    with _open_image(path) as image:
        return _image_frames(image)


def _image_frame(image: Image.Image, max_pixels: int) -> Image.Image:
    if image.format == "JPEG":  # decode big scans at 1/2, 1/4 or 1/8 scale straight away
        w, h = image.size
        s = _cap(w, h, max_pixels)
        if s < 1:
            image.draft("RGB", (max(1, int(w * s)), max(1, int(h * s))))
    image.load()
    frame = ImageOps.exif_transpose(image)  # phone photos of pages come sideways otherwise
    return _fit(_to_rgb(frame), max_pixels)


def _render_image(
    path: Path, pages: Iterable[int] | None, on_problem: OnProblem | None, max_pixels: int
) -> Iterator[Page]:
    with _open_image(path) as image:
        count = _image_frames(image)
        for number in _requested(pages, count):
            if not 1 <= number <= count:
                _report(on_problem, _out_of_range(path, number, count))
                continue
            try:
                image.seek(number - 1)
                rgb = _image_frame(image, max_pixels)
            except Image.DecompressionBombError as e:
                raise DocumentError(path, f"image too large to decode safely: {_one_line(str(e), 100)}") from None
            except (OSError, ValueError, SyntaxError, EOFError) as e:  # what PIL raises for broken image data
                if count == 1:
                    raise DocumentError(path, f"corrupt or truncated image: {_one_line(str(e))}") from None
                _report(on_problem, PageProblem(path, number, f"corrupt image frame: {_one_line(str(e))}"))
                continue
            yield Page(number=number, image=rgb, text="", width=rgb.width, height=rgb.height)


# --------------------------------------------------------------------------------------------------------------
# PyMuPDF


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


def _page_text(page: pymupdf.Page) -> str:
    # Ligatures expanded ("ﬁ" -> "fi") so that BM25 matches what people type.
    return normalize_text(page.get_text("text", flags=pymupdf.TEXTFLAGS_TEXT & ~pymupdf.TEXT_PRESERVE_LIGATURES))


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


class _PdfOrImageRenderer:
    """Single images are one page whatever the renderer: only PDFs differ between backends."""

    max_pixels: int

    def page_count(self, path: str | Path) -> int:
        """Number of pages; raises `DocumentError`."""
        path = Path(path)
        return _image_page_count(path) if _kind(path) == "image" else self._pdf_page_count(path)

    def render(
        self, path: str | Path, pages: Iterable[int] | None = None, on_problem: OnProblem | None = None
    ) -> Iterator[Page]:
        """Yield pages (all, or the 1-based `pages` in the given order) one at a time."""
        path = Path(path)
        if _kind(path) == "image":
            yield from _render_image(path, pages, on_problem, self.max_pixels)
        else:
            yield from self._render_pdf(path, pages, on_problem)

    def _pdf_page_count(self, path: Path) -> int:
        raise NotImplementedError

    def _render_pdf(self, path: Path, pages: Iterable[int] | None, on_problem: OnProblem | None) -> Iterator[Page]:
        raise NotImplementedError


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
            count = doc.page_count
            for number in _requested(pages, count):
                if not 1 <= number <= count:
                    _report(on_problem, _out_of_range(path, number, count))
                    continue
                pymupdf.TOOLS.reset_mupdf_warnings()
                try:
                    page = doc.load_page(number - 1)
                    zoom = _mupdf_zoom(page, self.dpi, self.max_pixels)
                    pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), colorspace=pymupdf.csRGB, alpha=False)
                    image = _fit(Image.frombytes("RGB", (pix.width, pix.height), pix.samples), self.max_pixels)
                    del pix
                    text = _page_text(page) if self.text else ""
                except Exception as e:  # MuPDF raises many types; one bad page must not stop the rest
                    _report(on_problem, PageProblem(path, number, _one_line(str(e)) or type(e).__name__))
                    continue
                yield Page(number=number, image=image, text=text, width=image.width, height=image.height)
        finally:
            doc.close()


# --------------------------------------------------------------------------------------------------------------
# pdf2image (poppler)

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
        with _pdf_on_disk(path) as on_disk:
            boxes = self._page_boxes(path, on_disk)
            text_doc = self._text_doc(on_disk) if self.text else None
            try:
                for number in _requested(pages, len(boxes)):
                    if not 1 <= number <= len(boxes):
                        _report(on_problem, _out_of_range(path, number, len(boxes)))
                        continue
                    try:
                        image = self._render_page(on_disk, number, boxes[number - 1])
                    except Exception as e:  # poppler/PIL failures for one page
                        _report(on_problem, PageProblem(path, number, _one_line(str(e)) or type(e).__name__))
                        continue
                    text = _text_of(text_doc, number)
                    yield Page(number=number, image=image, text=text, width=image.width, height=image.height)
            finally:
                if text_doc is not None:
                    text_doc.close()

    @staticmethod
    def _text_doc(on_disk: Path) -> pymupdf.Document | None:
        """PyMuPDF for the text layer; None (pages get "") if MuPDF cannot read what poppler can."""
        try:
            return _open_mupdf(on_disk)
        except DocumentError:
            return None


def _text_of(doc: pymupdf.Document | None, number: int) -> str:
    if doc is None or number > doc.page_count:
        return ""
    try:
        return _page_text(doc.load_page(number - 1))
    except Exception:  # a page without a text layer is still a page
        return ""


# --------------------------------------------------------------------------------------------------------------


def _check_settings(dpi: int, max_pixels: int) -> None:
    if not dpi or dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    if not max_pixels or max_pixels < 64 * 64:
        raise ValueError(f"max_pixels must be at least {64 * 64}, got {max_pixels!r}")


RENDERERS: dict[str, type] = {"pymupdf": PyMuPDFRenderer, "pdf2image": Pdf2ImageRenderer}


def make_renderer(
    name: str = "pymupdf", dpi: int = DEFAULT_DPI, max_pixels: int = DEFAULT_MAX_PIXELS, text: bool = True
) -> Renderer:
    """The renderer called `name` ("pymupdf" or "pdf2image"), as configured by the user."""
    key = (name or "").strip().lower()
    if key not in RENDERERS:
        raise ValueError(f"unknown renderer {name!r}: choose one of {', '.join(RENDERERS)}")
    return RENDERERS[key](dpi=dpi, max_pixels=max_pixels, text=text)


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
        title = " ".join((doc.metadata or {}).get("title", "").split())
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
    finally:
        doc.close()


def _truncate(s: str, limit: int = TITLE_MAX_CHARS) -> str:
    return s if len(s) <= limit else s[: limit - 1].rstrip() + "…"
