"""What an indexing run takes and gives back: its options, the encoder it needs, progress hooks, and the report.

Kept apart from `pipeline` (the run itself) so the CLI, the UI and `docrag eval` can name them cheaply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np
from PIL import Image

from .pages import WEBP_METHOD
from .store import StoreSettings


class EmbedderUnavailable(RuntimeError):
    """The encoder could not be loaded or used: ends the run (every later page would fail the same way)."""


class Embedder(Protocol):
    """What the indexer needs of an encoder (``moca_train.MoCaEncoder`` is one)."""

    name: str

    @property
    def dim(self) -> int: ...

    def encode_documents(self, images: Sequence[Image.Image]) -> np.ndarray: ...


class Events:
    """Progress hooks; the CLI and the UI override what they show. All no-ops here.

    Order: `files(n)`, then `pages_total(n)` once every file is compared with the manifest (the pages this run
    will render, counted before the first is rendered; called again when an estimate is corrected or visual
    vectors are back-filled), then per file `file_started` / `pages_done`... / `file_finished`.
    """

    def files(self, total: int) -> None: ...

    def pages_total(self, total: int) -> None: ...

    def file_started(self, path: str, pages: int) -> None: ...

    def pages_done(self, n: int) -> None: ...

    def file_finished(self, path: str, status: str) -> None: ...

    def problem(self, path: str, reason: str) -> None: ...

    def message(self, text: str) -> None: ...

    def ocr_pages(self, queued: int = 0, done: int = 0) -> None:
        """Pages sent to the OCR engine (`queued`) and finished (`done`) since the last call."""


@dataclass
class IndexOptions:
    renderer: str = "pymupdf"
    dpi: int = 144
    max_pixels: int = 2_500_000
    page_store: str = "thumbnail"  # none | thumbnail | full: what is kept of each page's image (indexing.extract)
    page_format: str = "webp"  # webp | jpeg | png, for page_store = "full"
    webp_method: int = WEBP_METHOD
    workers: int | None = None  # render processes; None: the CPUs available (in-process for small runs); 0: none
    batch_pages: int = 16
    lock_timeout_s: float = 10.0
    qdrant_url: str | None = None
    api_key: str | None = None
    collection: str = "docrag"
    command: str = "docrag index"
    bm25_language: str | None = None
    ocr: str = "auto"  # auto | always | never (see indexing.ocr)
    ocr_lang: str = "eng"  # Tesseract language codes, "eng+fra+jpn"
    ocr_engine: str = "tesseract"  # or rapidocr
    ocr_workers: int = 2

    def store_settings(self) -> StoreSettings:
        return StoreSettings(self.qdrant_url, self.api_key, self.collection, self.command, self.lock_timeout_s,
                             self.bm25_language)


@dataclass
class IndexReport:
    new: int = 0
    changed: int = 0
    unchanged: int = 0
    failed: int = 0
    removed: int = 0
    pages: int = 0
    pages_rendered: int = 0
    visual_added: int = 0
    text_dense_added: int = 0  # stored pages that got a dense text vector from their stored text (backfill)
    words_added: int = 0  # stored pages that got word boxes from their source's text layer (backfill)
    ocr_pages: int = 0  # pages the OCR engine read in this run
    ocr_cached: int = 0  # pages whose OCR text came from the cache
    pages_without_text: int = 0  # pages indexed without usable text (scans with no OCR engine, OCR off)
    without_text_hint: str = ""  # what to do about them ("install tesseract-ocr for OCR")
    problems: list[tuple[str, str]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def indexed_anything(self) -> bool:
        return self.new + self.changed + self.unchanged > 0

    def as_dict(self) -> dict:
        return {k: getattr(self, k) for k in ("new", "changed", "unchanged", "failed", "removed", "pages",
                                              "pages_rendered", "visual_added", "text_dense_added", "ocr_pages",
                                              "ocr_cached", "pages_without_text", "seconds")} | {
            "problems": [{"path": p, "reason": r} for p, r in self.problems]}
