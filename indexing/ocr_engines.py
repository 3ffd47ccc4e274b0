"""The OCR engines behind `indexing.ocr`: each reads one page image into its text and its word boxes.

* Tesseract (the Debian ``tesseract-ocr`` package, driven through its CLI): one process per page writes the
  plain text and the TSV word boxes of one recognition, so the words are those of the text it indexes.
* RapidOCR (``pip install docrag[ocr]``): it finds text lines, not words; a line's box is shared out among its
  words by their characters (approximate, see `_line_words`).

Words are `indexing.words.RawWord`: a box normalised to the page image (0-1, origin top left) and the word as
the engine spelt it, in the order of the text, so `indexing.words.align` can tie them to the text.
"""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

from PIL import Image

from .tokenize import CJK_RUN
from .words import RawWord, char_widths

OCR_ENGINES = ("tesseract", "rapidocr")
DEFAULT_LANG = "eng"
MISSING_ENGINE_HINT = "install tesseract-ocr for OCR"
BOX_DECIMALS = 4  # a ten-thousandth of the page (a 16th of a point on A4): finer than any highlight needs


class OcrFailed(RuntimeError):
    """The engine could not read one page (its message is one line)."""


class OcrUnavailable(RuntimeError):
    """No usable OCR engine (not installed, or missing language data); the message says what to install."""


class OcrEngine(Protocol):
    """What the OCR runner needs: recognise one page image; thread-safe (several pages run at once)."""

    name: str  # "tesseract 5.3.0 (eng+jpn)": engine, version, languages; recorded per page

    def recognize(self, image: Image.Image) -> str: ...

    def recognize_words(self, image: Image.Image) -> tuple[str, list[RawWord]]:
        """The same text as `recognize`, and its words in the order of the text."""
        ...


def _box(x0: float, y0: float, x1: float, y1: float, width: int, height: int) -> tuple[float, float, float, float]:
    """A pixel box normalised to the image, rounded: a word read now and the same word from the cache are equal."""
    w, h = max(1, width), max(1, height)
    return (round(min(max(x0 / w, 0.0), 1.0), BOX_DECIMALS), round(min(max(y0 / h, 0.0), 1.0), BOX_DECIMALS),
            round(min(max(x1 / w, 0.0), 1.0), BOX_DECIMALS), round(min(max(y1 / h, 0.0), 1.0), BOX_DECIMALS))


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
        return self._run(image, "stdout").decode("utf-8", errors="replace").strip()

    def recognize_words(self, image: Image.Image) -> tuple[str, list[RawWord]]:
        """One run with two renderers (``txt tsv``): the text is byte for byte `recognize`'s, and the words
        are the TSV's, both written from the same recognition of the page."""
        with tempfile.TemporaryDirectory(prefix="docrag-ocr-") as tmp:
            base = Path(tmp) / "page"
            self._run(image, str(base), "txt", "tsv")
            try:
                text = base.with_suffix(".txt").read_bytes().decode("utf-8", errors="replace").strip()
                tsv = base.with_suffix(".tsv").read_bytes().decode("utf-8", errors="replace")
            except OSError as e:
                raise OcrFailed(f"tesseract wrote no output: {e.strerror or e}") from None
        return text, tsv_words(tsv, image.width, image.height)

    def _run(self, image: Image.Image, outbase: str, *configs: str) -> bytes:
        """Run tesseract on the image (``stdin``) into `outbase`; its standard output."""
        buf = io.BytesIO()
        image.convert("L").save(buf, format="PPM")  # PGM: no compression cost, and tesseract binarises anyway
        env = {**os.environ, "OMP_THREAD_LIMIT": "1"}
        try:
            out = subprocess.run([self.binary, "stdin", outbase, "-l", self.lang, *configs], input=buf.getvalue(),
                                 capture_output=True, timeout=self.timeout_s, env=env)
        except subprocess.TimeoutExpired:
            raise OcrFailed(f"tesseract took longer than {self.timeout_s:.0f} s") from None
        if out.returncode != 0:
            lines = [ln for ln in out.stderr.decode(errors="replace").splitlines() if ln.strip()]
            raise OcrFailed(f"tesseract exited with {out.returncode}: {'; '.join(lines[-2:]) or 'no message'}")
        return out.stdout


def tsv_words(tsv: str, width: int, height: int) -> list[RawWord]:
    """The words of Tesseract's TSV output, boxes normalised to a `width` x `height` image.

    Rows come in block, paragraph, line, word order, the order the txt renderer writes the text in. Level 5
    rows are words; one with confidence -1 or no text (a rule read as a blank) is not.
    """
    words: list[RawWord] = []
    for row in tsv.split("\n")[1:]:  # not splitlines(): a word may hold a character it counts as a line break
        cols = row.rstrip("\r").split("\t", 11)
        if len(cols) != 12 or cols[0] != "5":
            continue
        try:
            left, top, w, h = (int(c) for c in cols[6:10])
            conf = float(cols[10])
        except ValueError:
            continue
        word = cols[11].strip()
        if conf < 0 or not word:
            continue
        words.append((*_box(left, top, left + w, top + h, width, height), word))
    return words


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

    def _lines(self, image: Image.Image) -> list:
        """RapidOCR's lines, top to bottom: ``[polygon, text, score]``, the polygon's corners clockwise from
        the top left."""
        import numpy as np

        try:
            result, _ = self._engine()(np.asarray(image.convert("RGB")))
        except Exception as e:  # the engine's own errors have no common type
            raise OcrFailed(f"rapidocr: {str(e).splitlines()[0] if str(e) else type(e).__name__}") from None
        return list(result or [])

    def recognize(self, image: Image.Image) -> str:
        return "\n".join(str(r[1]) for r in self._lines(image))

    def recognize_words(self, image: Image.Image) -> tuple[str, list[RawWord]]:
        lines = self._lines(image)
        words = [w for r in lines for w in _line_words(r[0], str(r[1]), image.width, image.height)]
        return "\n".join(str(r[1]) for r in lines), words


def _line_words(polygon: Sequence[Sequence[float]], line: str, width: int, height: int) -> list[RawWord]:
    """A line's words, each with its share of the line's box: approximate, by character count (a CJK character
    counts wider than others) along the line, since RapidOCR gives no position inside a line.

    Words are runs of non-space characters; each CJK character is a word of its own (CJK has no spaces, and a
    search matches single characters and bigrams). The line's polygon is followed along its top and bottom
    edges, so a slanted line's words get slanted slices (their enclosing boxes).
    """
    try:
        (ax, ay), (bx, by), (cx, cy), (dx, dy) = ((float(p[0]), float(p[1])) for p in polygon)
    except (TypeError, ValueError):
        return []
    weights = char_widths(line)
    total = sum(weights)
    if not total:
        return []
    spans: list[tuple[int, int]] = []
    start = None
    for i, ch in enumerate(line):
        if ch.isspace() or CJK_RUN.match(ch):
            if start is not None:
                spans.append((start, i))
                start = None
            if not ch.isspace():
                spans.append((i, i + 1))
        elif start is None:
            start = i
    if start is not None:
        spans.append((start, len(line)))
    edges = [0.0]
    for wt in weights:
        edges.append(edges[-1] + wt / total)
    words: list[RawWord] = []
    for s, e in spans:
        f, g = edges[s], edges[e]
        xs = (ax + (bx - ax) * f, ax + (bx - ax) * g, dx + (cx - dx) * f, dx + (cx - dx) * g)
        ys = (ay + (by - ay) * f, ay + (by - ay) * g, dy + (cy - dy) * f, dy + (cy - dy) * g)
        words.append((*_box(min(xs), min(ys), max(xs), max(ys), width, height), line[s:e]))
    return words


def make_engine(engine: str = "tesseract", lang: str = DEFAULT_LANG) -> OcrEngine:
    """The named engine for `lang` ("eng+fra+jpn", Tesseract's codes); raises OcrUnavailable."""
    if engine == "tesseract":
        return TesseractEngine(lang)
    if engine == "rapidocr":
        return RapidOcrEngine(lang)
    raise ValueError(f"unknown OCR engine {engine!r}: choose one of {', '.join(OCR_ENGINES)}")
