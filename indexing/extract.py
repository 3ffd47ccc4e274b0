"""One chunk of a document's pages -> what the indexer stores: text, thumbnail, full image where needed.

This is the work the render workers (`indexing.workers`) do, so it is picklable in and out and imports no
model: the main process stays the single writer of the store and the manifest. Per page it draws only what
the run needs:

- the full image (the index's dpi and pixel cap) when an encoder embeds it, when ``page_store = "full"``
  stores it (encoded and written here, in parallel), or when OCR must read the page (no usable text layer);
- otherwise a small drawing (`RenderDocument.render_small`): the thumbnail itself, about 10x fewer pixels.

Each page's text layer is judged here too (`ocr.text_layer_usable`, sent back as ``layer_usable``), and, when the
run's text encoder can be built in a worker (`text_dense.worker_factory`), its dense text vector is computed here
(built once per worker), except for pages OCR will read: their text comes later, in the writer.

A worker keeps its last documents open between chunks (`_OPEN`), so a long file is opened once per worker.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from .ocr import needs_ocr, text_layer_usable
from .pages import PageStore
from .render import Page, PageProblem, RenderDocument, Renderer, make_renderer, thumbnail_of
from .text_dense import TextEmbedder, embed_page_texts
from .thumbnails import encode_thumbnail
from .words import encode_words

PAGE_STORES = ("none", "thumbnail", "full")


def check_page_store(value: str) -> str:
    if value not in PAGE_STORES:
        raise ValueError(f"unknown page_store {value!r}: choose one of {', '.join(PAGE_STORES)}")
    return value


@dataclass(frozen=True)
class ExtractSettings:
    """How a run renders and keeps pages (the same for every chunk of the run)."""

    renderer: str = "pymupdf"
    dpi: int = 144
    max_pixels: int = 2_500_000
    page_store: str = "thumbnail"  # none | thumbnail | full
    full_images: bool = False  # an encoder embeds every page: send its full image back
    ocr: str = "never"  # never | auto | always: the OCR that will read pages (never when no engine is there)
    store_root: str = ""  # the index folder (page_store = "full" writes its images there)
    page_format: str = "webp"
    webp_method: int = 0
    # builds the dense text encoder in the worker (`text_dense.worker_factory`): pages get their vector here
    text_encoder: Callable[[], TextEmbedder] | None = None


@dataclass(frozen=True)
class Chunk:
    """Pages ``start..stop-1`` (1-based) of one file, as it was when the run hashed it."""

    path: str
    digest: str
    start: int
    stop: int


@dataclass
class ExtractedPage:
    number: int
    text: str
    image: Image.Image | None = None  # full size, only when the main process needs it (encoder, OCR)
    thumbnail: bytes | None = None  # WebP, with page_store = "thumbnail"
    image_path: str = ""  # relative to the index folder, with page_store = "full" (written and fsynced)
    text_vector: np.ndarray | None = None  # the dense vector of ``text`` (pages OCR will read get none here)
    layer_usable: bool = True  # `ocr.text_layer_usable(text)`, computed here so the writer need not
    words: bytes | None = None  # the text layer's word boxes (`indexing.words`), None where the renderer gives none


@dataclass
class ChunkResult:
    pages: list[ExtractedPage] = field(default_factory=list)
    problems: list[PageProblem] = field(default_factory=list)


def extract_chunk(settings: ExtractSettings, chunk: Chunk, renderer: Renderer | None = None,
                  doc: RenderDocument | None = None) -> ChunkResult:
    """Render one chunk from ``doc`` (the caller's open document, in-process), else from the file opened with
    `renderer` or the one `settings` names; raises `DocumentError` when the file cannot be opened."""
    doc = doc if doc is not None else _open(settings, chunk.path, renderer)
    out = ChunkResult()
    numbers = range(chunk.start, chunk.stop)
    store = (PageStore(settings.store_root, fmt=settings.page_format, webp_method=settings.webp_method)
             if settings.page_store == "full" else None)
    full_pass = settings.full_images or store is not None
    pages = (doc.render(numbers, out.problems.append) if full_pass
             else doc.render_small(numbers, out.problems.append))
    for page in pages:
        out.pages.append(_keep(settings, doc, page, store, chunk.digest, full_pass, out.problems))
    if settings.text_encoder is not None:
        # OCR'd text is embedded later, by the writer
        kept = [p for p in out.pages if not needs_ocr(settings.ocr, p.text, p.layer_usable)]
        vectors = embed_page_texts(_text_encoder(settings.text_encoder), [p.text for p in kept])
        for p, vec in zip(kept, vectors, strict=True):
            p.text_vector = vec
    return out


def _keep(settings: ExtractSettings, doc: RenderDocument, page: Page, store: PageStore | None, digest: str,
          full_pass: bool, problems: list[PageProblem]) -> ExtractedPage:
    usable = text_layer_usable(page.text)
    ocr_wants = needs_ocr(settings.ocr, page.text, usable)  # OCR reads the full image
    full = page.image if full_pass else None
    if full is None and ocr_wants:  # a scan among text pages: draw it again, at the size OCR reads
        full = next(iter(doc.render([page.number], problems.append)), page).image
    out = ExtractedPage(page.number, page.text, layer_usable=usable,
                        words=encode_words(page.text, page.words) if page.words is not None else None)
    if settings.page_store == "thumbnail":
        out.thumbnail = encode_thumbnail(thumbnail_of(page.image) if full_pass else page.image)
    if store is not None:
        out.image_path = store.save(digest, page.number, page.image)
    if settings.full_images or ocr_wants:
        out.image = full
    return out


# ---- documents kept open between chunks, per process ------------------------------------------------
_KEEP_OPEN = 2
_OPEN: OrderedDict[tuple, RenderDocument] = OrderedDict()
_RENDERERS: dict[tuple, Renderer] = {}


def _open(settings: ExtractSettings, path: str, renderer: Renderer | None = None) -> RenderDocument:
    p = Path(path)
    st = p.stat()
    key = (settings.renderer, settings.dpi, settings.max_pixels, path, st.st_size, st.st_mtime_ns, id(renderer))
    doc = _OPEN.get(key)
    if doc is not None:
        _OPEN.move_to_end(key)
        return doc
    rkey = key[:3]
    if renderer is None and rkey not in _RENDERERS:
        _RENDERERS[rkey] = make_renderer(settings.renderer, dpi=settings.dpi, max_pixels=settings.max_pixels)
    doc = (renderer or _RENDERERS[rkey]).open(p)
    _OPEN[key] = doc
    while len(_OPEN) > _KEEP_OPEN:
        _OPEN.popitem(last=False)[1].close()
    return doc


_TEXT_ENCODERS: dict[Callable[[], TextEmbedder], TextEmbedder] = {}


def _text_encoder(factory: Callable[[], TextEmbedder]) -> TextEmbedder:
    if factory not in _TEXT_ENCODERS:
        _TEXT_ENCODERS[factory] = factory()
    return _TEXT_ENCODERS[factory]


def close_open_documents() -> None:
    """Close what this process keeps open (the in-process path calls this at the end of a run)."""
    while _OPEN:
        _OPEN.popitem()[1].close()
