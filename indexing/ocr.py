"""OCR for pages without a usable text layer (scans, faxes, broken font encodings).

* Which pages: `text_layer_usable` is the per-page check. With ``--ocr auto`` (the default) a page whose text
  layer fails it is OCR'd; ``always`` OCRs every page (the OCR text replaces the layer); ``never`` none.
* Engines: Tesseract (the Debian ``tesseract-ocr`` package plus ``tesseract-ocr-LANG`` packs, driven through
  its CLI) by default; RapidOCR (``pip install docrag[ocr]``, ONNX models shipped in the wheel) as an option.
  The engine, its version and the languages are recorded per page (payload ``ocr_engine``). The engines live
  in `indexing.ocr_engines` (re-exported here).
* Words: an OCR'd page comes with the engine's word boxes (`PageText.words`), so matched words can be
  highlighted on a scan as on a page with a text layer (`indexing.words`).
* Cost: pages are recognised in parallel, ``workers`` at a time. For Tesseract every page is its own
  ``tesseract`` process (single-threaded, ``OMP_THREAD_LIMIT=1``), so a page that crashes or hangs the engine
  fails alone: it is reported and the others go on. Results are cached in ``INDEX_DIR/ocr_cache.sqlite`` by
  the hash of the page image's pixels (and the engine + languages), so a re-index never OCRs a page twice;
  a row cached before word boxes (no words) is read once more, to get them.
* Without an engine nothing fails: such pages are indexed without text and counted (`OcrStats.without_text`);
  the caller prints `MISSING_ENGINE_HINT`.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from .ocr_engines import (  # noqa: F401  the engines' names are re-exported: `from indexing.ocr import ...`
    BOX_DECIMALS,
    DEFAULT_LANG,
    MISSING_ENGINE_HINT,
    OCR_ENGINES,
    OcrEngine,
    OcrFailed,
    OcrUnavailable,
    RapidOcrEngine,
    TesseractEngine,
    make_engine,
)
from .words import RawWord

OCR_MODES = ("auto", "always", "never")
CACHE_NAME = "ocr_cache.sqlite"
SOURCE_LAYER, SOURCE_OCR = "layer", "ocr"

# The text-layer check. A layer is usable when it has at least MIN_WORDS word-like tokens and most of its
# visible characters are letters, digits or ordinary punctuation. Scans have no layer (or a few stray
# characters: a page number, a stamp); broken font encodings give private-use glyphs, U+FFFD or control
# characters, or symbol soup with hardly any real word in it.
MIN_WORDS = 3  # fewer is still usable when one of them is a real word of 6+ letters (a title page)
MIN_GOOD_CHAR_RATIO = 0.7
MIN_WORD_TOKEN_RATIO = 0.3
MIN_CHARS_SKIP_WORD_CHECK = 400


def _is_word(token: str) -> bool:
    letters = sum(ch.isalpha() for ch in token)
    # CJK has no spaces: one "token" can be a whole sentence of letters, which is a word for this check.
    return letters >= 2 and letters >= 0.6 * len(token)


def needs_ocr(mode: str, layer: str, usable: bool | None = None) -> bool:
    """Whether OCR in `mode` (never | auto | always) reads a page with this text layer; ``usable`` is
    `text_layer_usable(layer)` when the caller has it already (a render worker computed it)."""
    if mode != "auto":
        return mode == "always"
    return not (text_layer_usable(layer) if usable is None else usable)


def text_layer_usable(text: str) -> bool:
    """Whether a page's text layer is real text (False for empty, stray characters, or garbage)."""
    # Counted per distinct character: a page has thousands of characters but a few dozen distinct ones.
    counts = Counter(text)
    visible = sum(n for ch, n in counts.items() if not ch.isspace())
    if not visible:
        return False
    bad = sum(n for ch, n in counts.items()
              if not ch.isspace() and (unicodedata.category(ch) in ("Co", "Cn", "Cc", "Cs") or ch == "\ufffd"))
    good = sum(n for ch, n in counts.items()
               if not ch.isspace() and (ch.isalnum() or unicodedata.category(ch)[0] == "P"))
    if bad > 0.05 * visible or good < MIN_GOOD_CHAR_RATIO * visible:
        return False
    if visible >= MIN_CHARS_SKIP_WORD_CHECK:
        return True  # plenty of ordinary characters: real text even if few tokens look like words (code, data)
    tokens = text.split()
    words = [t for t in tokens if _is_word(t)]
    if len(words) < MIN_WORDS and not any(len(w) >= 6 for w in words):
        return False  # stray characters: a page number, a stamp, a few OCR-less glyphs
    # Only tokens with a letter count: dot leaders and page numbers of a table of contents are not garbage.
    lettered = sum(any(ch.isalpha() for ch in t) for t in tokens)
    return len(words) >= MIN_WORD_TOKEN_RATIO * lettered


def image_digest(image: Image.Image) -> str:
    """Hash of a page image's pixels (not its file bytes: the same render always gives the same key)."""
    h = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class OcrCache:
    """OCR text and words by (engine, page-image hash), in SQLite under the index folder. Thread-safe.

    Words are JSON, ``[[x0, y0, x1, y1, "word"], ...]`` with 4-decimal coordinates (about 40 bytes a word,
    13-14 KiB a text-heavy page): readable with the sqlite3 shell, and this is a cache, not the index.
    A cache file from before word boxes gets the ``words`` column added; its rows (words NULL) are misses.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS ocr "
                         "(engine TEXT, image TEXT, text TEXT, words TEXT, PRIMARY KEY (engine, image))")
        if "words" not in {row[1] for row in self._db.execute("PRAGMA table_info(ocr)")}:
            try:
                self._db.execute("ALTER TABLE ocr ADD COLUMN words TEXT")
            except sqlite3.OperationalError as e:  # another process added it between the check and here
                if "duplicate column" not in str(e):
                    raise
        self._lock = threading.Lock()

    def get(self, engine: str, digest: str) -> tuple[str, list[RawWord]] | None:
        """The cached text and words; None when the page is not cached or was cached without words: the
        engine reads such a page once more (its text is the same, the engine and version being part of the key),
        else a page cached before word boxes would never get any."""
        with self._lock:
            row = self._db.execute("SELECT text, words FROM ocr WHERE engine = ? AND image = ?",
                                   (engine, digest)).fetchone()
        if row is None or row[1] is None:
            return None
        try:
            words = [(float(x0), float(y0), float(x1), float(y1), str(w)) for x0, y0, x1, y1, w in json.loads(row[1])]
        except (ValueError, TypeError):
            return None  # a damaged row is read again
        return row[0], words

    def put(self, engine: str, digest: str, text: str, words: Sequence[RawWord]) -> None:
        data = json.dumps([[*(round(v, BOX_DECIMALS) for v in (x0, y0, x1, y1)), w] for x0, y0, x1, y1, w in words],
                          ensure_ascii=False, separators=(",", ":"))
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO ocr(engine, image, text, words) VALUES (?, ?, ?, ?)",
                             (engine, digest, text, data))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM ocr").fetchone()[0])

    def close(self) -> None:
        self._db.close()


@dataclass
class PageText:
    """The text a page is indexed with: `source` "layer" (its text layer) or "ocr", `engine` for OCR.

    `words`: the OCR engine's words of `text`, in its order (`indexing.words.align` ties them to the text);
    None for a page indexed with its text layer, whose words come from the layer (`indexing.render`).
    """

    text: str
    source: str = SOURCE_LAYER
    engine: str = ""
    words: list[RawWord] | None = None


@dataclass
class OcrStats:
    recognized: int = 0  # pages the engine ran on
    cached: int = 0  # pages whose OCR text came from the cache
    failed: int = 0  # pages the engine failed on (reported, indexed with their layer, if any)
    without_text: int = 0  # pages indexed without usable text (no engine, OCR off, or the engine failed)


def check_ocr_mode(mode: str) -> None:
    if mode not in OCR_MODES:
        raise ValueError(f"unknown OCR mode {mode!r}: choose one of {', '.join(OCR_MODES)}")


class PageOcr:
    """Decides which pages need OCR and gets their text: from the cache, else from the engine in parallel.

    `engine` None (none installed) degrades: pages that need OCR keep their (empty) layer and are counted.
    """

    def __init__(self, mode: str, engine: OcrEngine | None, cache: OcrCache | None, workers: int = 2) -> None:
        check_ocr_mode(mode)
        self.mode, self.engine, self.cache = mode, engine, cache
        self.workers = max(1, int(workers))
        self.stats = OcrStats()
        self._pool: ThreadPoolExecutor | None = None

    def texts(
        self,
        pages: Sequence[tuple[Image.Image, str]],
        on_failure: Callable[[int, str], None] = lambda i, reason: None,
        on_progress: Callable[[int, int], None] = lambda queued, done: None,
        usable: Sequence[bool] | None = None,
    ) -> list[PageText]:
        """One `PageText` per (image, text layer); `on_failure(index, reason)` for a page the engine failed on.
        ``usable``: each layer's `text_layer_usable`, when the render workers computed it (else done here)."""
        ok = list(usable) if usable is not None else [text_layer_usable(layer) for _, layer in pages]
        out = [PageText(layer) for _, layer in pages]
        todo = [i for i, (_, layer) in enumerate(pages) if needs_ocr(self.mode, layer, ok[i])]
        read: set[int] = set()  # pages OCR'd (a short layer kept because OCR read nothing has text after all)
        if todo and self.engine is not None:
            read = self._recognize(self.engine, pages, todo, out, on_failure, on_progress)
        self.stats.without_text += sum(
            t.source == SOURCE_LAYER and not (ok[i] if t.text == pages[i][1] else text_layer_usable(t.text))
            and not (i in read and t.text.strip()) for i, t in enumerate(out))
        return out

    def _recognize(
        self,
        engine: OcrEngine,
        pages: Sequence[tuple[Image.Image, str]],
        todo: list[int],
        out: list[PageText],
        on_failure: Callable[[int, str], None],
        on_progress: Callable[[int, int], None],
    ) -> set[int]:
        """OCR the pages `todo` into `out`; returns those the engine read (from the cache or now)."""
        read: set[int] = set()
        by_digest: dict[str, list[int]] = {}
        for i in todo:
            by_digest.setdefault(image_digest(pages[i][0]), []).append(i)
        run: dict[str, list[int]] = {}
        for digest, idx in by_digest.items():
            cached = self.cache.get(engine.name, digest) if self.cache is not None else None
            if cached is None:
                run[digest] = idx  # identical images in one batch (blank pages, repeated forms) run once
            else:
                text, words = cached
                for i in idx:
                    out[i] = _better(pages[i][1], PageText(text, SOURCE_OCR, engine.name, list(words)))
                read.update(idx)
                self.stats.cached += len(idx)
        if not run:
            return read
        on_progress(len(run), 0)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ocr")
        futures = {d: self._pool.submit(engine.recognize_words, pages[idx[0]][0]) for d, idx in run.items()}
        for digest, fut in futures.items():
            idx = run[digest]
            try:
                text, words = fut.result()
            except OcrFailed as e:
                self.stats.failed += len(idx)
                for i in idx:
                    on_failure(i, f"OCR failed: {e}")
            else:
                self.stats.recognized += 1
                self.stats.cached += len(idx) - 1
                for i in idx:  # each page its own list: a caller may change one page's words
                    out[i] = _better(pages[i][1], PageText(text, SOURCE_OCR, engine.name, list(words)))
                read.update(idx)
                if self.cache is not None:
                    self.cache.put(engine.name, digest, text, words)
            on_progress(0, 1)
        return read

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        if self.cache is not None:
            self.cache.close()


def _better(layer: str, ocr: PageText) -> PageText:
    """The OCR text, unless it read nothing usable where the text layer has words (a one-word title page,
    a page rendered too small to read): then the layer is all there is, and it is kept, without the OCR words
    (they are not the layer's: its words come from the layer)."""
    if layer.strip() and not text_layer_usable(ocr.text):
        return PageText(layer, words=None)
    return ocr


def build_page_ocr(mode: str, engine: str, lang: str, workers: int, index_dir: Path | str) -> tuple[PageOcr, str]:
    """The OCR step of an indexing run, and the hint to print for pages left without text.

    A missing engine is not an error: the step then only counts the pages that needed it.
    """
    check_ocr_mode(mode)
    if mode == "never":
        return PageOcr(mode, None, None, workers), "OCR is off (--ocr never)"
    try:
        ocr_engine: OcrEngine | None = make_engine(engine, lang)
        hint = ""
    except OcrUnavailable as e:
        ocr_engine, hint = None, str(e)
    cache = OcrCache(Path(index_dir) / CACHE_NAME) if ocr_engine is not None else None
    return PageOcr(mode, ocr_engine, cache, workers), hint
