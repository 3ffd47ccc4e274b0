"""Single images (.png, .jpg, .webp, .tif...): one page per frame, the same for both renderers."""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from pathlib import Path

from PIL import Image, ImageOps

from .base import (
    DocumentError,
    OnProblem,
    Page,
    PageProblem,
    RenderDocument,
    _cap,
    _fit,
    _kind,
    _one_line,
    _os_reason,
    _out_of_range,
    _preview,
    _read_head,
    _report,
    _requested,
    _stem,
    _to_rgb,
)


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

    def open(self, path: str | Path) -> RenderDocument:
        """Open once for page count, title and pages; raises `DocumentError`."""
        path = Path(path)
        if _kind(path) == "image":
            return _ImageDocument(path, self.max_pixels)
        return self._open_pdf(path)

    def _open_pdf(self, path: Path) -> RenderDocument:
        raise NotImplementedError

    def _pdf_page_count(self, path: Path) -> int:
        raise NotImplementedError

    def _render_pdf(self, path: Path, pages: Iterable[int] | None, on_problem: OnProblem | None) -> Iterator[Page]:
        raise NotImplementedError



class _ImageDocument(RenderDocument):
    def __init__(self, path: Path, max_pixels: int) -> None:
        self.path, self.max_pixels = path, max_pixels
        self.page_count = _image_page_count(path)
        self.title = _stem(path)

    def render(self, pages: Iterable[int] | None = None, on_problem: OnProblem | None = None) -> Iterator[Page]:
        yield from _render_image(self.path, pages, on_problem, self.max_pixels)
