"""Render workers: `extract_chunk` in a pool of processes, results handed back in submission order.

The main process keeps chunks submitted a few ahead (`window`, fed across files by `indexing.feed`) and takes
results in order, so the manifest advances page by page exactly as with one process, and kill -9 loses at most
the chunks in flight (the next run renders them again). Processes are started with **spawn**: a fork would
inherit the index's lock file descriptors (`indexing.lock`) and the Qdrant engine's threads. A worker killed by
a hostile PDF (a MuPDF crash, the OOM killer) breaks the whole pool: the pool is restarted, the chunk is tried
once more alone, and if it kills that worker too, only its file fails, in one line (`DocumentError`).

``workers = 0`` runs `extract_chunk` in the calling process, lazily (nothing renders ahead).
"""

from __future__ import annotations

import multiprocessing
import os
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

from .extract import Chunk, ChunkResult, ExtractSettings, close_open_documents, extract_chunk
from .render import DocumentError, RenderDocument, Renderer


class _NoWorkers(Exception):
    pass


def _ping() -> bool:
    return True


def _exit_with_parent(parent: int) -> None:
    """A worker's initializer: exit when the indexer dies. A killed (kill -9) parent's workers would
    otherwise wait on the task queue for ever."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(0)

    threading.Thread(target=watch, name="exit-with-parent", daemon=True).start()


class Handle:
    """A submitted chunk: its result comes from `RenderPool.result`; `cancel` drops it."""

    def __init__(self, chunk: Chunk, future: Future | None, generation: int) -> None:
        self.chunk, self.future, self.generation = chunk, future, generation

    def cancel(self) -> None:
        if self.future is not None:
            self.future.cancel()


class RenderPool:
    """`workers` render processes (0: in this process), started on the first submit, for one run's settings."""

    def __init__(self, settings: ExtractSettings, workers: int, renderer: Renderer | None = None,
                 task: Callable[[ExtractSettings, Chunk], ChunkResult] = extract_chunk) -> None:
        """``task`` is what a worker runs per chunk: `extract_chunk`, or a module-level function wrapping it
        (a spawned worker imports it by name)."""
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        # A renderer object given by the caller cannot cross into another process: it renders here.
        self.settings, self.workers, self.renderer = settings, 0 if renderer is not None else workers, renderer
        self.task = task
        self._pool: ProcessPoolExecutor | None = None
        self._generation = 0
        self.fallback = ""  # why the run renders in-process after all ("" when it does not)

    @property
    def window(self) -> int:
        """How many chunks to keep submitted: two per worker keeps each busy while the main process writes."""
        return 2 * self.workers if self.workers else 1

    def submit(self, chunk: Chunk) -> Handle:
        if self.workers:
            try:
                return Handle(chunk, self._executor().submit(self.task, self.settings, chunk), self._generation)
            except _NoWorkers:
                pass
        return Handle(chunk, None, 0)

    def result(self, handle: Handle, doc: RenderDocument | None = None) -> ChunkResult:
        """The chunk's result; rendered here, from ``doc`` when given (the caller's open document of that file:
        a .pdf.gz is then not inflated a second time), when the pool has no workers."""
        if handle.future is None:
            if self.renderer is not None or doc is not None:
                return extract_chunk(self.settings, handle.chunk, self.renderer, doc)
            return self.task(self.settings, handle.chunk)
        if handle.generation != self._generation:  # submitted to a pool that has died since
            handle = self.submit(handle.chunk)
        try:
            return handle.future.result()
        except BrokenProcessPool:
            pass
        self._restart()
        try:  # once more, alone: was it this chunk that killed the worker, or a neighbour?
            return self.submit(handle.chunk).future.result()
        except BrokenProcessPool:
            self._restart()
            c = handle.chunk
            raise DocumentError(c.path, f"the renderer crashed on pages {c.start}-{c.stop - 1} "
                                        "(worker process died)") from None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
        close_open_documents()  # those the in-process path opened

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                       initializer=_exit_with_parent, initargs=(os.getpid(),))
            if self._generation == 0:
                try:  # workers that cannot start at all (a main script read from stdin): render here instead
                    pool.submit(_ping).result()
                except BrokenProcessPool:
                    pool.shutdown(wait=False, cancel_futures=True)
                    self.workers = 0
                    self.fallback = "render workers could not start; rendering in this process"
                    raise _NoWorkers from None
            self._pool = pool
        return self._pool

    def _restart(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=False, cancel_futures=True)
        self._pool = None
        self._generation += 1
