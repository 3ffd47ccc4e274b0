"""Background indexing for the web UI: uploads go to one worker thread that runs `DocRag.index` (the same
incremental pipeline as `docrag index`), one batch of files after another; pages show up in search as
soon as each batch is written. Progress is read from `snapshot()` by whoever displays it."""

from __future__ import annotations

import queue
import threading
from dataclasses import dataclass, field
from pathlib import Path

from app import DocRag
from indexing.pipeline import Events


@dataclass
class Progress:
    files_total: int = 0
    files_done: int = 0
    pages_total: int = 0
    pages_done: int = 0
    running: bool = False
    queued: int = 0
    problems: list[str] = field(default_factory=list)
    last_summary: str = ""

    @property
    def fraction(self) -> float:
        if self.pages_total:
            return min(1.0, self.pages_done / self.pages_total)
        return 1.0 if not self.running else 0.0


class _Counting(Events):
    def __init__(self, progress: Progress, guard: threading.Lock) -> None:
        self.p, self.guard = progress, guard

    def files(self, total: int) -> None:
        with self.guard:
            self.p.files_total += total

    def file_started(self, path: str, pages: int) -> None:
        with self.guard:
            self.p.pages_total += pages

    def pages_done(self, n: int) -> None:
        with self.guard:
            self.p.pages_done += n

    def file_finished(self, path: str, status: str) -> None:
        with self.guard:
            self.p.files_done += 1

    def problem(self, path: str, reason: str) -> None:
        with self.guard:
            self.p.problems.append(f"{Path(path).name}: {reason}")


class IndexingJobs:
    """`submit(paths)` queues files for indexing; `snapshot()` is the progress so far (thread-safe)."""

    def __init__(self, rag: DocRag) -> None:
        self.rag = rag
        self._queue: queue.Queue[list[Path]] = queue.Queue()
        self._guard = threading.Lock()
        self._progress = Progress()
        self._idle = threading.Event()
        self._idle.set()
        self._worker = threading.Thread(target=self._run, name="docrag-ui-indexing", daemon=True)
        self._worker.start()

    def submit(self, paths: list[Path]) -> None:
        if not paths:
            return
        with self._guard:
            if not self._progress.running and self._queue.empty():
                self._progress = Progress()  # a new run of uploads: the bar starts again
            self._progress.queued += 1
            self._progress.running = True
            self._idle.clear()
        self._queue.put(list(paths))

    def snapshot(self) -> Progress:
        with self._guard:
            p = self._progress
            return Progress(p.files_total, p.files_done, p.pages_total, p.pages_done, p.running, p.queued,
                            list(p.problems), p.last_summary)

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every submitted file is indexed (for tests and scripts)."""
        return self._idle.wait(timeout)

    def _run(self) -> None:
        while True:
            paths = self._queue.get()
            try:
                report = self.rag.index(paths, events=_Counting(self._progress, self._guard))
                summary = (f"{report.new} new, {report.changed} changed, {report.unchanged} unchanged, "
                           f"{report.failed} failed; {report.pages_rendered} pages in {report.seconds:.1f} s")
            except Exception as e:  # one line for the UI; the index itself stays consistent
                summary = f"indexing failed: {str(e).splitlines()[0] if str(e) else type(e).__name__}"
                with self._guard:
                    self._progress.problems.append(summary)
            with self._guard:
                self._progress.queued -= 1
                self._progress.last_summary = summary
                if self._queue.empty() and self._progress.queued == 0:
                    self._progress.running = False
                    self._idle.set()
