"""A rich progress display for indexing: files, pages, pages/s; problems as one line each."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from indexing.pipeline import Events


class RichIndexEvents(Events):
    def __init__(self, quiet: bool = False) -> None:
        self.console = Console(stderr=True)
        # No live bar when output is not a terminal (CI logs, pipes): just the one-line problems.
        self.live = not quiet and self.console.is_terminal
        self.progress = Progress(
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
            TextColumn("{task.fields[rate]}"), TimeElapsedColumn(), TimeRemainingColumn(),
            console=self.console, disable=not self.live,
        )
        self._files = self._pages = self._ocr = None

    def __enter__(self) -> RichIndexEvents:
        self.progress.__enter__()
        return self

    def __exit__(self, *exc) -> None:
        self.progress.__exit__(*exc)

    def files(self, total: int) -> None:
        self._files = self.progress.add_task("files", total=total, rate="")
        self._pages = self.progress.add_task("pages", total=0, rate="")

    def pages_total(self, total: int) -> None:
        # Counted before the first page renders, so the bar and its ETA cover the whole run from the start.
        if self._pages is not None:
            self.progress.update(self._pages, total=total)

    def pages_done(self, n: int) -> None:
        self.progress.advance(self._pages, n)
        speed = self.progress.tasks[self._pages].speed
        self.progress.update(self._pages, rate=f"{speed:.1f} pages/s" if speed else "")

    def ocr_pages(self, queued: int = 0, done: int = 0) -> None:
        if self._ocr is None:
            self._ocr = self.progress.add_task("ocr", total=0, rate="")
        task = self.progress.tasks[self._ocr]
        self.progress.update(self._ocr, total=(task.total or 0) + queued, advance=done)
        speed = self.progress.tasks[self._ocr].speed
        self.progress.update(self._ocr, rate=f"{speed:.1f} pages/s" if speed else "")

    def file_finished(self, path: str, status: str) -> None:
        if self._files is not None and status != "removed":
            self.progress.advance(self._files)
        if status == "removed":
            self.console.print(f"removed {escape(path)}", highlight=False, soft_wrap=True)

    def problem(self, path: str, reason: str) -> None:
        # soft_wrap: one problem is one line, whatever the width (logs and grep read it; rich would wrap at 80
        # columns when stderr is not a terminal).
        self.console.print(f"[red]failed[/red] {escape(path)}: {escape(reason)}", highlight=False, soft_wrap=True)

    def message(self, text: str) -> None:
        self.console.print(escape(text), highlight=False, soft_wrap=True)


