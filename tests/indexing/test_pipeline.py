"""The indexing pipeline on real PDFs and the real Qdrant Edge engine."""

from __future__ import annotations

import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import badfiles
import numpy as np
import pytest
from PIL import Image

from indexing.manifest import COMPLETE, Manifest
from indexing.pipeline import Events, Indexer, IndexOptions
from indexing.render import PyMuPDFRenderer
from indexing.scan import sha256_file
from indexing.store import WriterBusy, open_store

ROOT = Path(__file__).resolve().parents[2]


class HistogramEmbedder:
    """A real (if weak) page embedder: colour histogram of a thumbnail. Implements the Embedder protocol."""

    name = "histogram"
    dim = 48

    def __init__(self) -> None:
        self.pages = 0

    def encode_documents(self, images):
        self.pages += len(images)
        out = []
        for im in images:
            small = np.asarray(im.convert("RGB").resize((32, 32)), dtype=np.float32)
            hist = np.concatenate([np.histogram(small[..., c], bins=16, range=(0, 255))[0] for c in range(3)])
            vec = hist.astype(np.float32) + 1e-3
            out.append(vec / np.linalg.norm(vec))
        return np.stack(out)


class CountingRenderer(PyMuPDFRenderer):
    """The real renderer, counting the pages it renders and the documents it opens."""

    def __init__(self, **kw) -> None:
        super().__init__(dpi=48, **kw)
        self.rendered = 0
        self.opened: list[Path] = []

    def open(self, path):
        doc = super().open(path)
        self.opened.append(Path(path))
        inner = doc.render

        def render(pages=None, on_problem=None):
            for page in inner(pages, on_problem):
                self.rendered += 1
                yield page

        doc.render = render
        return doc


class Recorder(Events):
    def __init__(self) -> None:
        self.finished: dict[str, str] = {}
        self.problems: list[tuple[str, str]] = []

    def file_finished(self, path, status):
        self.finished[path] = status

    def problem(self, path, reason):
        self.problems.append((path, reason))


def _opts(**kw) -> IndexOptions:
    # These tests check the full page store (written, fsynced, resumed, removed); the default is tested in
    # test_page_images.py.
    return IndexOptions(dpi=48, batch_pages=kw.pop("batch_pages", 8), page_format="png",
                        page_store=kw.pop("page_store", "full"), **kw)


def _pages_by_doc(index_dir: Path, qdrant_url: str | None = None) -> dict[str, int]:
    store = open_store(index_dir, None, qdrant_url)
    try:
        return store.document_page_counts()
    finally:
        store.close()


@pytest.fixture()
def corpus(tmp_path, debian_pdfs) -> Path:
    d = tmp_path / "docs"
    (d / "sub dir").mkdir(parents=True)
    shutil.copy(debian_pdfs["sample-plain.pdf"], d / "sample-plain.pdf")
    shutil.copy(debian_pdfs["reference.pdf.gz"], d / "sub dir" / "reference.pdf.gz")
    badfiles.text_pdf(d / "Bericht über Äpfel 2024.pdf", ["Äpfel und Birnen im Jahr 2024", "zweite Seite"])
    return d


@pytest.fixture(params=["edge", "qdrant-client"])
def backend(request, tmp_path) -> str | None:
    """Both store backends: embedded Qdrant Edge, and qdrant-client (its local mode stands in for a server)."""
    return None if request.param == "edge" else f"file:{tmp_path / 'client-store'}"


def test_first_run_indexes_everything_then_rerun_is_a_no_op(tmp_path, corpus, backend):
    renderer = CountingRenderer()
    idx = tmp_path / "idx"
    first = Indexer(idx, HistogramEmbedder(), _opts(qdrant_url=backend), renderer=renderer).sync([corpus])
    assert (first.new, first.failed) == (3, 0)
    assert first.pages == 30 + 95 + 2 == renderer.rendered
    counts = _pages_by_doc(idx, backend)
    assert sorted(counts.values()) == [2, 30, 95]
    assert (idx / "qdrant").exists() == (backend is None)

    renderer.rendered = 0
    embedder = HistogramEmbedder()
    again = Indexer(idx, embedder, _opts(qdrant_url=backend), renderer=renderer).sync([corpus])
    assert (again.new, again.changed, again.unchanged) == (0, 0, 3)
    assert renderer.rendered == 0 and embedder.pages == 0
    assert _pages_by_doc(idx, backend) == counts


def test_changed_file_replaces_exactly_its_pages(tmp_path, corpus, backend):
    idx = tmp_path / "idx"
    Indexer(idx, None, _opts(qdrant_url=backend)).sync([corpus])
    target = corpus / "Bericht über Äpfel 2024.pdf"
    old_hash = sha256_file(target)
    before = _pages_by_doc(idx, backend)
    badfiles.text_pdf(target, ["neue Fassung", "Seite zwei", "Seite drei"])
    recorder = Recorder()
    report = Indexer(idx, None, _opts(qdrant_url=backend), events=recorder).sync([corpus])
    assert (report.changed, report.unchanged, report.new) == (1, 2, 0)
    assert recorder.finished[str(target)] == "changed"
    after = _pages_by_doc(idx, backend)
    new_hash = sha256_file(target)
    assert old_hash not in after and after[new_hash] == 3
    assert {h: n for h, n in after.items() if h != new_hash} == {h: n for h, n in before.items() if h != old_hash}
    assert not (idx / "pages" / old_hash[:2] / old_hash).exists()


def test_prune_and_delete(tmp_path, corpus, backend):
    idx = tmp_path / "idx"
    Indexer(idx, None, _opts(qdrant_url=backend)).sync([corpus])
    gone = corpus / "sample-plain.pdf"
    gone_hash = sha256_file(gone)
    gone.unlink()
    kept = Indexer(idx, None, _opts(qdrant_url=backend)).sync([corpus])
    assert kept.removed == 0 and gone_hash in _pages_by_doc(idx, backend)  # without --prune nothing is dropped
    pruned = Indexer(idx, None, _opts(qdrant_url=backend)).sync([corpus], prune=True)
    assert pruned.removed == 1 and gone_hash not in _pages_by_doc(idx, backend)

    ref = corpus / "sub dir" / "reference.pdf.gz"
    assert Indexer(idx, None, _opts(qdrant_url=backend)).delete(ref) == 95
    assert sorted(_pages_by_doc(idx, backend).values()) == [2]
    with pytest.raises(KeyError, match="not in the index"):
        Indexer(idx, None, _opts(qdrant_url=backend)).delete(ref)


def test_same_content_under_two_paths_is_stored_once(tmp_path, corpus):
    shutil.copy(corpus / "sample-plain.pdf", corpus / "copy.pdf")
    idx = tmp_path / "idx"
    report = Indexer(idx, None, _opts()).sync([corpus])
    assert report.new == 4 and report.pages == 30 + 95 + 2
    digest = sha256_file(corpus / "copy.pdf")
    assert _pages_by_doc(idx)[digest] == 30
    # Deleting one of the two paths keeps the shared pages for the other.
    assert Indexer(idx, None, _opts()).delete(corpus / "copy.pdf") == 0
    assert _pages_by_doc(idx)[digest] == 30


FILE_LEVEL_FAILURES = ("encrypted", "corrupt", "truncated", "zero_pages", "text_named_pdf", "html_named_pdf",
                       "empty_file", "not_gzip", "truncated_gz")


def test_bad_inputs_are_reported_and_the_rest_goes_on(tmp_path, corpus, debian_pdfs):
    bad = badfiles.write_bad_documents(corpus / "bad", debian_pdfs["sample-plain.pdf"])
    idx = tmp_path / "idx"
    recorder = Recorder()
    report = Indexer(idx, None, _opts(), events=recorder).sync([corpus])
    assert report.new == 3
    reasons = {p: r for p, r in report.problems}
    for name in FILE_LEVEL_FAILURES:
        path, prefix = bad[name]
        assert reasons[str(path)].startswith(prefix), (name, reasons.get(str(path)))
    assert report.failed == len(report.problems) >= len(FILE_LEVEL_FAILURES)
    assert all("\n" not in r for r in reasons.values())
    assert recorder.problems == report.problems
    # The failures did not cost what was indexed; a re-run reports them again without re-indexing.
    again = Indexer(idx, None, _opts()).sync([corpus])
    assert again.failed == report.failed and again.unchanged == 3
    assert sorted(_pages_by_doc(idx).values()) == [2, 30, 95]


def test_a_page_that_fails_is_skipped_not_the_document(tmp_path):
    docs = tmp_path / "docs"
    docs.mkdir()
    cyclic = badfiles.page_tree_cycle_pdf(docs)
    report = Indexer(tmp_path / "idx", None, _opts()).sync([docs])
    assert report.new == 1 and report.failed == 0
    assert [p for p, _ in report.problems] == [f"{cyclic} page 2"]
    assert list(_pages_by_doc(tmp_path / "idx").values()) == [1]


def test_text_only_index_gets_visual_vectors_later_without_rerendering(tmp_path, corpus):
    idx = tmp_path / "idx"
    Indexer(idx, None, _opts()).sync([corpus])
    renderer, embedder = CountingRenderer(), HistogramEmbedder()
    report = Indexer(idx, embedder, _opts(), renderer=renderer).sync([corpus])
    assert renderer.rendered == 0 and report.visual_added == embedder.pages == 127
    store = open_store(idx, None)
    try:
        assert store.count_with_visual() == store.count() == 127
        probe = embedder.encode_documents([Image.open(next((idx / "pages").rglob("*.png")))])[0]
        assert store.query(text=None, vector=probe, mode="visual", top_k=1)[0].score > 0.99
    finally:
        store.close()


def test_a_second_writer_is_refused(tmp_path, corpus):
    idx = tmp_path / "idx"
    idx.mkdir()
    holder = subprocess.Popen(
        [sys.executable, "-c", "import sys,time; sys.path.insert(0, sys.argv[1]);"
         "from indexing.store import WriterLock; from pathlib import Path;"
         "l=WriterLock(Path(sys.argv[2])).__enter__(); print('held', flush=True); time.sleep(60)",
         str(ROOT), str(idx)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        with pytest.raises(WriterBusy, match=r"another indexing run is writing to it: `docrag index` \(pid \d+\)"):
            Indexer(idx, None, _opts()).sync([corpus])
    finally:
        holder.kill()
        holder.wait()
    assert Indexer(idx, None, _opts()).sync([corpus]).new == 3


KILLABLE = """
import sys
sys.path.insert(0, sys.argv[1])
from indexing.pipeline import Indexer, IndexOptions
Indexer(sys.argv[2], None, IndexOptions(dpi=48, batch_pages=4, page_format="png", page_store="full",
                                         workers=int(sys.argv[4]))).sync([sys.argv[3]])
"""


def _children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        out += [int(c) for c in (task / "children").read_text().split()]
    return out


def _alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1][0] != "Z"
    except FileNotFoundError:
        return False


def _progress(idx: Path) -> tuple[int, int]:
    """(pages stored so far, documents still pending) from the manifest of a run in progress."""
    try:
        with sqlite3.connect(idx / "manifest.sqlite", timeout=5) as db:
            return db.execute("SELECT COALESCE(SUM(pages), 0), COALESCE(SUM(status != 'complete'), 0) "
                              "FROM documents").fetchone()
    except sqlite3.Error:
        return 0, 0


@pytest.mark.parametrize(("sig", "workers"), [(signal.SIGKILL, 0), (signal.SIGINT, 0), (signal.SIGKILL, 2)])
def test_interrupted_run_resumes_to_the_exact_page_set(tmp_path, corpus, sig, workers):
    idx = tmp_path / "idx"
    proc = subprocess.Popen([sys.executable, "-c", KILLABLE, str(ROOT), str(idx), str(corpus), str(workers)],
                            stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 60
    # Interrupt mid-document: 20 pages in and a file pending (on a busy machine a poll can land between two
    # files, when every started file is complete and the next one has not started).
    while (p := _progress(idx))[0] < 20 or not p[1]:
        if time.monotonic() > deadline or proc.poll() is not None:
            break
        time.sleep(0.02)
    assert proc.poll() is None, "the run finished before it could be interrupted"
    children = _children(proc.pid)
    assert len(children) >= workers
    os.kill(proc.pid, sig)
    proc.wait(timeout=30)
    deadline = time.monotonic() + 30  # its render workers notice and exit: none is left behind
    while (alive := [c for c in children if _alive(c)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not alive, f"render workers left running after the indexer died: {alive}"
    with Manifest(idx) as manifest:
        interrupted = [r for r in manifest.documents() if r.status != COMPLETE]
    assert interrupted, "the interruption left nothing to resume"

    renderer = CountingRenderer()
    report = Indexer(idx, None, _opts(), renderer=renderer).sync([corpus])
    assert report.failed == 0
    assert renderer.rendered < 127  # resumed, not restarted
    expected = {sha256_file(p): n for p, n in ((corpus / "sample-plain.pdf", 30),
                                                (corpus / "sub dir" / "reference.pdf.gz", 95),
                                                (corpus / "Bericht über Äpfel 2024.pdf", 2))}
    assert _pages_by_doc(idx) == expected
    store = open_store(idx, None)
    try:
        assert store.count() == 127  # no duplicates
    finally:
        store.close()
    with Manifest(idx) as manifest:
        assert all(r.status == COMPLETE for r in manifest.documents())
