"""The run's chunks, submitted to the render workers a window ahead, across file boundaries.

The plan (every file's chunks, in the order the run indexes the files) is made once the run knows what needs
work (`indexing.plan`), so that while the writer finishes one file the workers already render the next: without
it the workers would idle at the end of every file. The writer then asks for one file's results at a time
(`open_file`, `next_result`), in order. What the plan assumed can be wrong when a file comes up: a ``.pdf.gz``
whose page count was estimated, a file skipped since planning (now a copy of another, failed to open). The
file's chunks are then planned again at the front (what was submitted ahead is resubmitted after them), and
the chunks of files skipped in between are dropped. Results are never reordered, so the manifest advances as
with one process.
"""

from __future__ import annotations

from collections import deque

from .extract import Chunk, ChunkResult
from .render import RenderDocument
from .workers import Handle, RenderPool


def chunks_of(path: str, digest: str, start: int, total: int, step: int) -> list[Chunk]:
    """Pages ``start..total`` of one file in chunks of ``step`` pages."""
    step = max(1, step)
    return [Chunk(path, digest, a, min(a + step, total + 1)) for a in range(start, total + 1, step)]


def _key(chunk: Chunk) -> tuple[str, str]:
    return chunk.path, chunk.digest


class ChunkFeed:
    """Keeps ``pool.window`` chunks submitted, from a plan spanning the run's files."""

    def __init__(self, pool: RenderPool) -> None:
        self.pool = pool
        self._ahead: deque[Handle] = deque()  # submitted, in plan order
        self._planned: deque[Chunk] = deque()  # not submitted yet, in plan order

    @property
    def in_flight(self) -> list[Chunk]:
        """The chunks submitted and not taken yet, in order."""
        return [h.chunk for h in self._ahead]

    def plan(self, chunks: list[Chunk]) -> None:
        """Append one file's chunks to the plan."""
        self._planned.extend(chunks)

    def fill(self) -> None:
        """Submit planned chunks until the window is full (the workers start on the first)."""
        while len(self._ahead) < self.pool.window and self._planned:
            self._ahead.append(self.pool.submit(self._planned.popleft()))

    def open_file(self, chunks: list[Chunk]) -> None:
        """Make ``chunks`` (one file's, all of them) the next results, whatever the plan said."""
        if not chunks:
            return
        key = _key(chunks[0])
        queued = [h.chunk for h in self._ahead] + list(self._planned)
        if any(_key(c) == key for c in queued):
            while _key(self._front()) != key:  # files skipped since planning: nothing of theirs is needed
                self._drop_front()
            queued = [h.chunk for h in self._ahead] + list(self._planned)
        mine = [c for c in queued if _key(c) == key]
        if queued[: len(chunks)] != chunks or mine != chunks:
            others = [c for c in queued if _key(c) != key]
            for h in self._ahead:  # submitted too early: they are submitted again, after this file
                h.cancel()
            self._ahead.clear()
            self._planned = deque(chunks + others)
        self.fill()

    def next_result(self, doc: RenderDocument | None = None) -> tuple[Chunk, ChunkResult]:
        """The next chunk's result, in plan order (raises what rendering it raised); ``doc``, the file's document
        open in this process, is what a pool without workers renders from."""
        self.fill()
        handle = self._ahead.popleft()
        try:
            return handle.chunk, self.pool.result(handle, doc)
        finally:
            self.fill()

    def discard(self, path: str, digest: str) -> None:
        """Drop what is left of one file (it failed): nothing more is rendered for it."""
        key = (path, digest)
        for h in [h for h in self._ahead if _key(h.chunk) == key]:
            h.cancel()
        self._ahead = deque(h for h in self._ahead if _key(h.chunk) != key)
        self._planned = deque(c for c in self._planned if _key(c) != key)

    def close(self) -> None:
        for h in self._ahead:
            h.cancel()
        self._ahead.clear()
        self._planned.clear()

    def _front(self) -> Chunk:
        return self._ahead[0].chunk if self._ahead else self._planned[0]

    def _drop_front(self) -> None:
        if self._ahead:
            self._ahead.popleft().cancel()
        else:
            self._planned.popleft()
