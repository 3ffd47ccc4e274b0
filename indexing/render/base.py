"""What every renderer shares: pages, problems, the `Renderer` protocol, and helpers for files and images."""

from __future__ import annotations

import gzip
import logging
import math
import os
import re
import stat
import zlib
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Protocol, runtime_checkable

from PIL import Image

from ..scan import file_kind

log = logging.getLogger(__name__)

DEFAULT_DPI = 144
DEFAULT_MAX_PIXELS = 2_500_000
THUMBNAIL_SIDE = 256  # px on the long side: a gallery tile, ~7 KiB as WebP (benchmarks/render_floor.py)
# A .pdf.gz that inflates beyond this is refused (a gzip bomb, or not a document anyone wants indexed).
MAX_GUNZIPPED_BYTES = 1 << 30
TITLE_MAX_CHARS = 120
PDF2IMAGE_HINT = (
    "pdf2image renderer needs poppler-utils (apt-get install poppler-utils) and `pip install docrag[pdf2image]`"
)


@dataclass
class Page:
    """One rendered page: `number` is 1-based, `image` is RGB, `text` is the text layer ("" for images/scans).

    `words` are the text layer's words with their boxes normalised to the page (`indexing.words.RawWord`), in
    the order of `text`; None where the renderer does not give them (pdf2image)."""

    number: int
    image: Image.Image
    text: str
    width: int
    height: int
    words: list[tuple[float, float, float, float, str]] | None = None


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


class RenderDocument:
    """One document opened once: its page count, display title and pages all come from that one open.

    The indexer needs all three per file; opening a ``.pdf.gz`` three times meant inflating it three times.
    Use as a context manager (``with renderer.open(path) as doc:``); raises `DocumentError` when opened.
    """

    path: Path
    page_count: int
    title: str

    def render(self, pages: Iterable[int] | None = None, on_problem: OnProblem | None = None) -> Iterator[Page]:
        """Yield pages (all, or the 1-based `pages` in the given order) one at a time."""
        raise NotImplementedError

    def render_small(self, pages: Iterable[int] | None = None, on_problem: OnProblem | None = None,
                     max_side: int = THUMBNAIL_SIDE) -> Iterator[Page]:
        """Like `render`, with images at most `max_side` px on the long side (thumbnails, for the gallery).

        This default renders full size and shrinks; a renderer that can draw small directly (PyMuPDF) overrides
        it, which is what makes a text-only index run at the renderer's speed.
        """
        for page in self.render(pages, on_problem):
            small = thumbnail_of(page.image, max_side)
            yield Page(page.number, small, page.text, small.width, small.height, page.words)

    def close(self) -> None:
        """Release the file (and any inflated copy). Idempotent."""

    def __enter__(self) -> RenderDocument:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


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

    def open(self, path: str | Path) -> RenderDocument:
        """Open once for page count, title and pages; raises `DocumentError`."""
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


def thumbnail_of(image: Image.Image, max_side: int = THUMBNAIL_SIDE) -> Image.Image:
    """A copy at most `max_side` px on its long side (the image itself when it is that small already)."""
    if max(image.size) <= max_side:
        return image
    small = image.copy()
    small.thumbnail((max_side, max_side), Image.Resampling.BILINEAR, reducing_gap=2.0)
    return small


def _stem(path: Path) -> str:
    name = path.name
    for suffix in (".pdf.gz", ".gz", ".pdf"):
        if name.lower().endswith(suffix) and len(name) > len(suffix):
            return name[: -len(suffix)]
    return path.stem or name




def _check_settings(dpi: int, max_pixels: int) -> None:
    if not dpi or dpi <= 0:
        raise ValueError(f"dpi must be positive, got {dpi!r}")
    if not max_pixels or max_pixels < 64 * 64:
        raise ValueError(f"max_pixels must be at least {64 * 64}, got {max_pixels!r}")

