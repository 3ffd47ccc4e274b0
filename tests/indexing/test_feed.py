"""indexing.feed: chunks submitted ahead across files, results in plan order, re-planned when the plan was wrong."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import badfiles
import pytest

from indexing.extract import ExtractSettings
from indexing.feed import ChunkFeed, chunks_of
from indexing.render import DocumentError, make_renderer
from indexing.workers import RenderPool

SETTINGS = ExtractSettings(dpi=36, page_store="none")


@pytest.fixture
def files(debian_pdfs: dict[str, Path]) -> dict[str, tuple[str, int]]:
    """name -> (path, page count) of three real PDFs."""
    renderer = make_renderer(dpi=36)
    names = ("sample-plain.pdf", "sample-amc.pdf", "sample-separate.pdf")
    return {n: (str(debian_pdfs[n]), renderer.page_count(debian_pdfs[n])) for n in names}


def _chunks(files, name: str, start: int = 1, total: int | None = None, step: int = 4):
    path, pages = files[name]
    return chunks_of(path, "h-" + name, start, pages if total is None else total, step)


def _take(feed: ChunkFeed, chunks) -> list[int]:
    feed.open_file(chunks)
    numbers = []
    for _ in chunks:
        chunk, result = feed.next_result()
        assert chunk.path == chunks[0].path
        numbers += [p.number for p in result.pages]
    return numbers


def test_chunks_cover_the_pages_once_in_order():
    chunks = chunks_of("a.pdf", "h", 3, 12, 4)
    assert [(c.start, c.stop) for c in chunks] == [(3, 7), (7, 11), (11, 13)]
    assert chunks_of("a.pdf", "h", 5, 4, 4) == []


def test_workers_render_the_next_file_while_this_one_is_taken(files):
    feed = ChunkFeed(RenderPool(SETTINGS, 2))
    a, b = _chunks(files, "sample-amc.pdf"), _chunks(files, "sample-plain.pdf")
    feed.plan(a)
    feed.plan(b)
    try:
        feed.fill()
        assert feed.in_flight == (a + b)[: feed.pool.window]
        feed.open_file(a)
        for _ in a:
            feed.next_result()
        # a's last result is taken: b's first chunks are already submitted (no idle workers at the boundary)
        assert feed.in_flight == b[: feed.pool.window]
        assert _take(feed, b) == list(range(1, files["sample-plain.pdf"][1] + 1))
    finally:
        feed.close()
        feed.pool.close()


def test_a_file_skipped_since_planning_is_dropped_and_a_wrong_estimate_is_planned_again(files):
    feed = ChunkFeed(RenderPool(SETTINGS, 0))
    pages = files["sample-plain.pdf"][1]
    feed.plan(_chunks(files, "sample-amc.pdf"))
    feed.plan(_chunks(files, "sample-separate.pdf"))  # skipped: never opened
    feed.plan(_chunks(files, "sample-plain.pdf", total=5))  # the plan guessed 5 pages (a .pdf.gz estimate)
    feed.fill()
    assert _take(feed, _chunks(files, "sample-amc.pdf")) == list(range(1, files["sample-amc.pdf"][1] + 1))
    assert _take(feed, _chunks(files, "sample-plain.pdf", start=3)) == list(range(3, pages + 1))
    assert feed.in_flight == []


def test_an_unplanned_file_comes_first_and_the_plan_goes_on_after_it(files):
    feed = ChunkFeed(RenderPool(SETTINGS, 2))
    try:
        feed.plan(_chunks(files, "sample-plain.pdf"))
        feed.fill()
        assert _take(feed, _chunks(files, "sample-amc.pdf", step=16)) == list(
            range(1, files["sample-amc.pdf"][1] + 1))
        assert _take(feed, _chunks(files, "sample-plain.pdf")) == list(range(1, files["sample-plain.pdf"][1] + 1))
    finally:
        feed.close()
        feed.pool.close()


def test_discard_drops_the_rest_of_a_failed_file(files, tmp_path: Path):
    bad = tmp_path / "bad.pdf"
    bad.write_bytes(b"%PDF-1.4 not really")
    feed = ChunkFeed(RenderPool(SETTINGS, 0))
    broken = chunks_of(str(bad), "h-bad", 1, 8, 4)
    feed.plan(broken)
    feed.plan(_chunks(files, "sample-amc.pdf"))
    feed.open_file(broken)
    with pytest.raises(DocumentError):
        feed.next_result()
    feed.discard(str(bad), "h-bad")
    assert all(c.path != str(bad) for c in feed.in_flight)
    assert _take(feed, _chunks(files, "sample-amc.pdf")) == list(range(1, files["sample-amc.pdf"][1] + 1))


def test_a_file_that_kills_its_worker_fails_alone_and_the_next_file_is_whole(files, tmp_path: Path):
    killer = tmp_path / f"{badfiles.KILLS_WORKER}.pdf"
    shutil.copy(files["sample-amc.pdf"][0], killer)
    pool = RenderPool(SETTINGS, 2, task=badfiles.render_or_crash)
    feed = ChunkFeed(pool)
    bad = chunks_of(str(killer), "h-killer", 1, files["sample-amc.pdf"][1], 4)
    good = _chunks(files, "sample-plain.pdf")
    feed.plan(bad)
    feed.plan(good)
    try:
        feed.open_file(bad)
        with pytest.raises(DocumentError) as e:
            feed.next_result()
        assert e.value.reason == "the renderer crashed on pages 1-4 (worker process died)"
        feed.discard(str(killer), "h-killer")
        # chunks of the next file that were in flight in the dead pool are rendered again, in order
        assert _take(feed, good) == list(range(1, files["sample-plain.pdf"][1] + 1))
    finally:
        feed.close()
        pool.close()


STDIN_INDEXER = """
import sys
from indexing.pipeline import Events, Indexer, IndexOptions

class Say(Events):
    def message(self, text):
        print("message:", text)

report = Indexer(sys.argv[1], None, IndexOptions(dpi=36, workers=2), events=Say()).sync([sys.argv[2]])
print("pages:", report.pages, "failed:", report.failed)
"""


def test_workers_that_cannot_start_render_here_and_say_so(tmp_path: Path, files):
    # A main script read from stdin cannot be re-imported by a spawned worker: the pool cannot start.
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(files["sample-amc.pdf"][0], docs)
    out = subprocess.run([sys.executable, "-", str(tmp_path / "idx"), str(docs)], input=STDIN_INDEXER, text=True,
                         capture_output=True, timeout=300, cwd=Path(__file__).resolve().parents[2])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert "message: render workers could not start; rendering in this process" in lines
    assert f"pages: {files['sample-amc.pdf'][1]} failed: 0" in lines
