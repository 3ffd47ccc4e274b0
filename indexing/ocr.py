"""OCR for pages without a usable text layer (scans, faxes, broken font encodings).

* Which pages: `text_layer_usable` is the per-page check. With ``--ocr auto`` (the default) a page whose text
  layer fails it is OCR'd; ``always`` OCRs every page (the OCR text replaces the layer); ``never`` none.
* Engines: Tesseract (the Debian ``tesseract-ocr`` package plus ``tesseract-ocr-LANG`` packs, driven through
  its CLI) by default; RapidOCR (``pip install docrag[ocr]``, ONNX models shipped in the wheel) as an option.
  The engine, its version and the languages are recorded per page (payload ``ocr_engine``).
* Cost: pages are recognised in parallel, ``workers`` at a time. For Tesseract every page is its own
  ``tesseract`` process (single-threaded, ``OMP_THREAD_LIMIT=1``), so a page that crashes or hangs the engine
  fails alone: it is reported and the others go on. Results are cached in ``INDEX_DIR/ocr_cache.sqlite`` by
  the hash of the page image's pixels (and the engine + languages), so a re-index never OCRs a page twice.
* Without an engine nothing fails: such pages are indexed without text and counted (`OcrStats.without_text`);
  the caller prints `MISSING_ENGINE_HINT`.
"""

from __future__ import annotations

import hashlib
import io
import os
import shutil
import sqlite3
import subprocess
import threading
import unicodedata
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from PIL import Image

OCR_MODES = ("auto", "always", "never")
OCR_ENGINES = ("tesseract", "rapidocr")
DEFAULT_LANG = "eng"
CACHE_NAME = "ocr_cache.sqlite"
SOURCE_LAYER, SOURCE_OCR = "layer", "ocr"
MISSING_ENGINE_HINT = "install tesseract-ocr for OCR"

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


class OcrFailed(RuntimeError):
    """The engine could not read one page (its message is one line)."""


class OcrUnavailable(RuntimeError):
    """No usable OCR engine (not installed, or missing language data); the message says what to install."""


class OcrEngine(Protocol):
    """What the OCR runner needs: recognise one page image; thread-safe (several pages run at once)."""

    name: str  # "tesseract 5.3.0 (eng+jpn)": engine, version, languages; recorded per page

    def recognize(self, image: Image.Image) -> str: ...


class TesseractEngine:
    """Tesseract through its CLI: one process per page, single-threaded, killed after `timeout_s`."""

    def __init__(self, lang: str = DEFAULT_LANG, *, binary: str = "tesseract", timeout_s: float = 120.0) -> None:
        path = shutil.which(binary)
        if path is None:
            raise OcrUnavailable(f"{MISSING_ENGINE_HINT} ({binary} is not on PATH)")
        self.binary, self.lang, self.timeout_s = path, lang, timeout_s
        out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30)
        first = (out.stdout or out.stderr).strip().splitlines()
        self.version = first[0].split()[-1] if first else "unknown"
        langs = subprocess.run([path, "--list-langs"], capture_output=True, text=True, timeout=30).stdout.split()
        missing = [code for code in lang.split("+") if code not in langs[1:]]
        if missing:
            packs = " ".join(f"tesseract-ocr-{m}" for m in missing)
            raise OcrUnavailable(f"tesseract has no language data for {'+'.join(missing)}: apt-get install {packs}")
        self.name = f"tesseract {self.version} ({lang})"

    def recognize(self, image: Image.Image) -> str:
        buf = io.BytesIO()
        image.convert("L").save(buf, format="PPM")  # PGM: no compression cost, and tesseract binarises anyway
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        try:
            out = subprocess.run([self.binary, "stdin", "stdout", "-l", self.lang], input=buf.getvalue(),
                                 capture_output=True, timeout=self.timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise OcrFailed(f"tesseract took longer than {self.timeout_s:.0f} s") from None
        if out.returncode != 0:
            lines = [ln for ln in out.stderr.decode(errors="replace").splitlines() if ln.strip()]
            raise OcrFailed(f"tesseract exited with {out.returncode}: {'; '.join(lines[-2:]) or 'no message'}")
        return out.stdout.decode("utf-8", errors="replace").strip()


class RapidOcrEngine:
    """RapidOCR (ONNX Runtime; its wheel ships Chinese+English detection/recognition models).

    One single-threaded RapidOCR per worker thread: ONNX Runtime releases the GIL while it runs, so `workers`
    pages run at once without its threads spinning against each other for the same cores.
    """

    def __init__(self, lang: str = DEFAULT_LANG) -> None:
        try:
            from importlib.metadata import version

            import rapidocr_onnxruntime  # noqa: F401
        except ImportError:
            raise OcrUnavailable("RapidOCR is not installed: pip install 'docrag[ocr]'") from None
        self._local = threading.local()
        self.version = version("rapidocr-onnxruntime")
        self.name = f"rapidocr {self.version} (ch+en)"

    def _engine(self):
        engine = getattr(self._local, "engine", None)
        if engine is None:
            from rapidocr_onnxruntime import RapidOCR

            engine = self._local.engine = RapidOCR(intra_op_num_threads=1, inter_op_num_threads=1)
        return engine

    def recognize(self, image: Image.Image) -> str:
        import numpy as np

        try:
            result, _ = self._engine()(np.asarray(image.convert("RGB")))
        except Exception as e:  # the engine's own errors have no common type
            raise OcrFailed(f"rapidocr: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return "\n".join(str(r[1]) for r in (result or []))


def make_engine(engine: str = "tesseract", lang: str = DEFAULT_LANG) -> OcrEngine:
    """The named engine for `lang` ("eng+fra+jpn", Tesseract's codes); raises OcrUnavailable."""
    if engine == "tesseract":
        return TesseractEngine(lang)
    if engine == "rapidocr":
        return RapidOcrEngine(lang)
    raise ValueError(f"unknown OCR engine {engine!r}: choose one of {', '.join(OCR_ENGINES)}")


def image_digest(image: Image.Image) -> str:
    """Hash of a page image's pixels (not its file bytes: the same render always gives the same key)."""
    h = hashlib.sha256(f"{image.mode}:{image.width}x{image.height}:".encode())
    h.update(image.tobytes())
    return h.hexdigest()


class OcrCache:
    """OCR text by (engine, page-image hash), in SQLite under the index folder. Thread-safe."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute(
            "CREATE TABLE IF NOT EXISTS ocr (engine TEXT, image TEXT, text TEXT, PRIMARY KEY (engine, image))"
        )
        self._lock = threading.Lock()

    def get(self, engine: str, digest: str) -> str | None:
        with self._lock:
            row = self._db.execute("SELECT text FROM ocr WHERE engine = ? AND image = ?", (engine, digest)).fetchone()
        return row[0] if row else None

    def put(self, engine: str, digest: str, text: str) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO ocr(engine, image, text) VALUES (?, ?, ?)", (engine, digest, text))

    def __len__(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM ocr").fetchone()[0])

    def close(self) -> None:
        self._db.close()


@dataclass
class PageText:
    """The text a page is indexed with: `source` "layer" (its text layer) or "ocr", `engine` for OCR."""

    text: str
    source: str = SOURCE_LAYER
    engine: str = ""


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
                for i in idx:
                    out[i] = _better(pages[i][1], PageText(cached, SOURCE_OCR, engine.name))
                read.update(idx)
                self.stats.cached += len(idx)
        if not run:
            return read
        on_progress(len(run), 0)
        if self._pool is None:
            self._pool = ThreadPoolExecutor(self.workers, thread_name_prefix="ocr")
        futures = {d: self._pool.submit(engine.recognize, pages[idx[0]][0]) for d, idx in run.items()}
        for digest, fut in futures.items():
            idx = run[digest]
            try:
                text = fut.result()
            except OcrFailed as e:
                self.stats.failed += len(idx)
                for i in idx:
                    on_failure(i, f"OCR failed: {e}")
            else:
                self.stats.recognized += 1
                self.stats.cached += len(idx) - 1
                for i in idx:
                    out[i] = _better(pages[i][1], PageText(text, SOURCE_OCR, engine.name))
                read.update(idx)
                if self.cache is not None:
                    self.cache.put(engine.name, digest, text)
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
    a page rendered too small to read): then the layer is all there is, and it is kept."""
    if layer.strip() and not text_layer_usable(ocr.text):
        return PageText(layer)
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
