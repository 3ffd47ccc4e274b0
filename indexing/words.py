"""Word boxes: where each word of a page's text sits on the page, for highlights and quoted citations.

A page's words come from its text layer (PyMuPDF's words, from the same text page as the text) or from the OCR
engine that read it. Each is tied to the page text by its character span in ``NFKC(text)``, the string that
`snippets.TermMatcher` and `app.quotes` give spans in, so any span of the text maps to boxes
(`PageWords.boxes`) without a second tokenisation. Boxes are normalised to the page (0-1, origin top left),
so they fit the page image at any size.

Stored per page in ``words.sqlite`` beside the thumbnails (`indexing.page_blobs`), not in the Qdrant payload:
points stay light, and the rows are written in the same transaction discipline as the thumbnails. The encoding
is columnar, delta-coded, 12-bit coordinates (a fortieth of a point on A4), byte-shuffled and deflated: about
3 bytes a word, 0.5-1.1 KiB a page on the Debian manuals (`benchmarks/highlights.py`).
"""

from __future__ import annotations

import struct
import unicodedata
import zlib
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np

from .page_blobs import PageBlobStore
from .tokenize import CJK_RUN

WORDS_NAME = "words.sqlite"
Box = tuple[float, float, float, float]  # x0, y0, x1, y1 in 0..1 of the page's width and height
RawWord = tuple[float, float, float, float, str]  # a box and the word as the layer or the engine spelt it

_Q = 4095  # coordinate steps across the page
_MAGIC = b"W1"
_SEARCH_AHEAD = 200  # how far past the last placed word a word is looked for in the text
NARROW_CHAR = 0.55  # a non-CJK character's width against a CJK one, when a box is shared out among characters


@dataclass(frozen=True)
class PageWords:
    """A page's words: ``text[start[i]:end[i]]`` (NFKC text) sits in ``boxes[i]``; ordered by start."""

    start: np.ndarray  # int64
    end: np.ndarray
    rects: np.ndarray  # (n, 4) float, 0..1

    @classmethod
    def empty(cls) -> PageWords:
        return cls(np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros((0, 4)))

    def __len__(self) -> int:
        return len(self.start)

    def boxes(self, start: int, end: int, text: str = "") -> list[Box]:
        """The boxes covering characters ``[start, end)`` of the NFKC text, one per line run of words.

        A word cut by the span (a CJK bigram inside a run) gets the part of its box its characters take;
        with `text` (the NFKC page text) CJK characters count wider than others, as they are drawn.
        """
        if not len(self) or end <= start:
            return []
        lo = int(np.searchsorted(self.end, start, side="right"))
        hi = int(np.searchsorted(self.start, end, side="left"))
        parts: list[Box] = []
        for i in range(lo, hi):
            s, e = int(self.start[i]), int(self.end[i])
            x0, y0, x1, y1 = (float(v) for v in self.rects[i])
            if start > s or end < e:  # part of the word: its share of the width
                a, b = _share(text, s, e, max(start, s), min(end, e))
                x0, x1 = x0 + (x1 - x0) * a, x0 + (x1 - x0) * b
            parts.append((x0, y0, x1, y1))
        return [tuple(round(v, 4) for v in box) for box in _merge_lines(parts)]

    def encode(self) -> bytes:
        n = len(self)
        q = np.clip(np.rint(self.rects * _Q), 0, _Q).astype(np.int64).reshape(n, 4)
        prev_end = np.concatenate([[0], self.end[:-1]]) if n else np.zeros(0, np.int64)
        prev_y = np.concatenate([[0], q[:-1, 1]]) if n else np.zeros(0, np.int64)
        columns = [self.start - prev_end, self.end - self.start, q[:, 0], q[:, 1] - prev_y,
                   q[:, 2] - q[:, 0], q[:, 3] - q[:, 1]]
        wide = [bool(n) and (c.min() < -32768 or c.max() > 32767) for c in columns]
        body = b"".join(_shuffle(c.astype(np.int32 if w else np.int16)) for c, w in zip(columns, wide, strict=True))
        flags = sum(1 << i for i, w in enumerate(wide) if w)
        return _MAGIC + struct.pack("<IB", n, flags) + zlib.compress(body, 6)

    @classmethod
    def decode(cls, data: bytes) -> PageWords:
        if data[:2] != _MAGIC:
            raise ValueError("not a word-box record")
        n, flags = struct.unpack_from("<IB", data, 2)
        body, pos, cols = zlib.decompress(data[7:]), 0, []
        for i in range(6):
            dtype = np.dtype(np.int32 if flags >> i & 1 else np.int16)
            size = n * dtype.itemsize
            cols.append(_unshuffle(body[pos : pos + size], dtype).astype(np.int64))
            pos += size
        gap, length, x0, dy, w, h = cols
        end = np.cumsum(gap + length)
        start = end - length
        y0 = np.cumsum(dy)
        boxes = np.stack([x0, y0, x0 + w, y0 + h], axis=1) / _Q if n else np.zeros((0, 4))
        return cls(start, end, boxes)


def align(text: str, words: Iterable[RawWord]) -> PageWords:
    """Tie each word to its place in ``NFKC(text)``, in reading order; a word not found near there is left out.

    Words come in the order of the text (PyMuPDF's words and text come from one text page; OCR words from the
    text the engine wrote), so each is looked for a little after the previous one and never before it.
    """
    norm = unicodedata.normalize("NFKC", text or "")
    starts, ends, boxes = [], [], []
    pos = 0
    for x0, y0, x1, y1, word in words:
        w = unicodedata.normalize("NFKC", word).strip()
        if not w:
            continue
        at = norm.find(w, pos, pos + len(w) + _SEARCH_AHEAD)
        if at < 0:
            continue
        starts.append(at)
        ends.append(at + len(w))
        boxes.append((min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1)))
        pos = at + len(w)
    if not starts:
        return PageWords.empty()
    return PageWords(np.array(starts, np.int64), np.array(ends, np.int64), np.clip(np.array(boxes, float), 0, 1))


def encode_words(text: str, words: Iterable[RawWord]) -> bytes:
    """What the indexer stores for a page: its words aligned to its text (`align`), encoded."""
    return align(text, words).encode()


def char_widths(text: str) -> list[float]:
    """Each character's share of a line's width, where only a box for the whole run is known: CJK characters
    are drawn square, others about half as wide."""
    return [1.0 if CJK_RUN.match(ch) else NARROW_CHAR for ch in text]


def _share(text: str, s: int, e: int, a: int, b: int) -> tuple[float, float]:
    """The fraction of a word's width [s, e) before a and before b."""
    weights = char_widths(text[s:e]) if text else [1.0] * (e - s)
    total = sum(weights) or 1.0
    return sum(weights[: a - s]) / total, sum(weights[: b - s]) / total


def _merge_lines(parts: list[Box]) -> list[Box]:
    """Neighbouring boxes on one line (overlapping heights, a small gap) become one."""
    out: list[list[float]] = []
    for x0, y0, x1, y1 in parts:
        if out:
            px0, py0, px1, py1 = out[-1]
            overlap = min(y1, py1) - max(y0, py0)
            height = max(y1 - y0, py1 - py0)
            if height > 0 and overlap > 0.5 * height and -height < x0 - px1 < 2 * height:
                out[-1] = [min(px0, x0), min(py0, y0), max(px1, x1), max(py1, y1)]
                continue
        out.append([x0, y0, x1, y1])
    return [(a, b, c, d) for a, b, c, d in out]


def _shuffle(column: np.ndarray) -> bytes:
    """Low bytes of every value, then the next bytes: deflate finds the runs of small deltas."""
    return column.astype(column.dtype.newbyteorder("<")).view(np.uint8).reshape(-1, column.itemsize).T.tobytes()


def _unshuffle(data: bytes, dtype: np.dtype) -> np.ndarray:
    raw = np.frombuffer(data, np.uint8).reshape(dtype.itemsize, -1).T.copy()
    return raw.view(dtype.newbyteorder("<")).reshape(-1)


class WordStore(PageBlobStore):
    """Word boxes of an index folder, one encoded `PageWords` per page (an empty one for a page without words)."""

    file_name = WORDS_NAME
    table = "words"

    def words(self, doc_hash: str, page: int) -> PageWords | None:
        """The page's words; None when the page has no record (indexed before word boxes, or not yet)."""
        data = self.get(doc_hash, page)
        return PageWords.decode(data) if data is not None else None
