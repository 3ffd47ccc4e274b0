"""Indexing, second pass: hostile file names, a lock that never starves searches, progress counted up front,
fsync before the manifest, one open per .pdf.gz. Real PDFs, the real Qdrant Edge engine, real subprocesses."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import badfiles
import numpy as np
import pytest

from indexing.manifest import Manifest
from indexing.pipeline import Events, Indexer, IndexOptions
from indexing.render import PyMuPDFRenderer
from indexing.scan import sha256_file
from indexing.store import open_store

ROOT = Path(__file__).resolve().parents[2]


def _opts(**kw) -> IndexOptions:
    return IndexOptions(dpi=48, batch_pages=kw.pop("batch_pages", 8), page_format="jpeg",
                        page_store=kw.pop("page_store", "full"), **kw)


class Recorder(Events):
    """Every event, in order."""

    def __init__(self) -> None:
        self.log: list[tuple] = []

    def files(self, total):
        self.log.append(("files", total))

    def pages_total(self, total):
        self.log.append(("pages_total", total))

    def file_started(self, path, pages):
        self.log.append(("file_started", path, pages))

    def pages_done(self, n):
        self.log.append(("pages_done", n))

    def file_finished(self, path, status):
        self.log.append(("file_finished", path, status))

    def problem(self, path, reason):
        self.log.append(("problem", path, reason))

    def of(self, kind: str) -> list[tuple]:
        return [e for e in self.log if e[0] == kind]


# ---------------------------------------------------------------------------------------------- hostile names


def test_a_non_utf8_file_name_fails_alone_in_one_line(tmp_path, debian_pdfs):
    docs = tmp_path / "docs"
    docs.mkdir()
    badfiles.text_pdf(docs / "fine.pdf", ["a good page"])
    shutil.copy(debian_pdfs["sample-plain.pdf"], docs / "sample-plain.pdf")
    hostile = os.path.join(os.fsencode(docs), b"r\xe9sum\xe9.pdf")  # a Latin-1 name, not valid UTF-8
    badfiles.text_pdf(tmp_path / "latin.pdf", ["latin one"])
    os.rename(os.fsencode(tmp_path / "latin.pdf"), hostile)
    assert len(os.listdir(docs)) == 3
    recorder = Recorder()
    idx = tmp_path / "idx"
    report = Indexer(idx, None, _opts(), events=recorder).sync([docs])
    assert (report.new, report.failed) == (2, 1) and report.pages == 31
    ((where, reason),) = report.problems
    assert where == f"{docs}/r\\xe9sum\\xe9.pdf" and "not valid UTF-8" in reason and "\n" not in where + reason
    where.encode("utf-8")  # printable anywhere, and JSON-safe
    json.dumps(report.as_dict(), ensure_ascii=False).encode("utf-8")
    assert recorder.of("problem") == [("problem", where, reason)]
    # Later runs go on too: the good files are unchanged, the hostile one fails alone again.
    again = Indexer(idx, None, _opts()).sync([docs])
    assert (again.unchanged, again.failed, again.new) == (2, 1, 0)


# ---------------------------------------------------------------------------------------------- the lock


class SlowEmbedder:
    """A real Embedder: a page's mean colour per channel, after `seconds` of "thinking" per batch (a CPU encoder
    at ~0.5 s a page)."""

    name = "slow-mean-colour"
    dim = 3

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.busy = threading.Event()  # set while a batch is being encoded

    def encode_documents(self, images):
        self.busy.set()
        try:
            time.sleep(self.seconds)
            vecs = np.stack([np.asarray(im.convert("RGB"), dtype=np.float32).mean(axis=(0, 1)) + 1.0 for im in images])
            return vecs / np.linalg.norm(vecs, axis=1, keepdims=True)
        finally:
            self.busy.clear()


SEARCH = """
import json, sys, time
sys.path.insert(0, sys.argv[1])
from indexing.store import locked_store
t0 = time.monotonic()
with locked_store(sys.argv[2], None, command="docrag search", timeout_s=float(sys.argv[3])) as store:
    hits = store.query(text="page", mode="text", top_k=3)
print(json.dumps({"hits": len(hits), "waited": time.monotonic() - t0}))
"""


def test_a_search_gets_in_while_the_indexer_encodes(tmp_path, debian_pdfs):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(debian_pdfs["sample-plain.pdf"], docs / "sample-plain.pdf")
    idx = tmp_path / "idx"
    embedder = SlowEmbedder(seconds=4.0)  # each batch encodes for longer than the search will wait
    indexer = Indexer(idx, embedder, _opts(batch_pages=10))
    result: dict = {}
    thread = threading.Thread(target=lambda: result.update(report=indexer.sync([docs])), daemon=True)
    thread.start()
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not _pages_recorded(idx):
            time.sleep(0.05)
        assert _pages_recorded(idx), "the first batch was never written"
        assert embedder.busy.wait(30), "the indexer never started encoding its second batch"
        out = subprocess.run([sys.executable, "-c", SEARCH, str(ROOT), str(idx), "3"], capture_output=True,
                             text=True, timeout=120)
        assert out.returncode == 0, out.stderr  # old code: "index ... is busy" after 3 s
        assert thread.is_alive(), "the search only got in after indexing ended"
        got = json.loads(out.stdout)
        assert got["hits"] >= 1 and got["waited"] < 3
    finally:
        thread.join(timeout=300)
    assert result["report"].pages == 30 and result["report"].failed == 0


def _pages_recorded(idx: Path) -> bool:
    if not (idx / "manifest.sqlite").exists():
        return False
    try:
        with Manifest(idx) as m:
            return any(r.pages > 0 for r in m.documents())
    except Exception:
        return False


# ---------------------------------------------------------------------------------------------- progress


def test_pages_are_counted_before_the_first_one_renders(tmp_path, debian_pdfs):
    docs = tmp_path / "docs"
    docs.mkdir()
    for name in ("sample-plain.pdf", "sample-amc.pdf", "reference.pdf.gz"):
        shutil.copy(debian_pdfs[name], docs / name)
    shutil.copy(debian_pdfs["sample-plain.pdf"], docs / "copy of sample-plain.pdf")  # same content: counted once
    recorder = Recorder()
    report = Indexer(tmp_path / "idx", None, _opts(), events=recorder).sync([docs])
    assert report.new == 4 and report.failed == 0
    log = recorder.log
    first_total = log.index(next(e for e in log if e[0] == "pages_total"))
    first_page = log.index(next(e for e in log if e[0] == "pages_done"))
    assert first_total < first_page and log[first_total - 1] == ("files", 4)
    totals = [e[1] for e in recorder.of("pages_total")]
    plain = 30 + PyMuPDFRenderer().page_count(docs / "sample-amc.pdf")
    # Plain PDFs are counted exactly; the .pdf.gz is estimated from its size until it is opened, then corrected.
    assert totals[0] > plain and abs(totals[0] - (plain + 95)) < 95
    assert totals[-1] == report.pages_rendered == plain + 95
    assert sum(e[1] for e in recorder.of("pages_done")) == report.pages_rendered


def test_plain_pdfs_give_the_exact_total_at_once(tmp_path, debian_pdfs):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(debian_pdfs["sample-plain.pdf"], docs / "a.pdf")
    badfiles.text_pdf(docs / "b.pdf", ["one", "two"])
    recorder = Recorder()
    Indexer(tmp_path / "idx", None, _opts(), events=recorder).sync([docs])
    assert [e[1] for e in recorder.of("pages_total")] == [32]


# ---------------------------------------------------------------------------------------------- durability, waste


def test_page_images_are_fsynced_before_the_manifest_counts_them(tmp_path, debian_pdfs, monkeypatch):
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(debian_pdfs["sample-plain.pdf"], docs / "sample-plain.pdf")
    idx = tmp_path / "idx"
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd):
        synced.append(os.readlink(f"/proc/self/fd/{fd}"))
        return real_fsync(fd)

    checked: list[tuple[int, int, list[str], bool]] = []
    real_progress = Manifest.progress

    def progress(self, path, *, pages, next_page, **kw):
        digest = self.get(path).sha256
        folder = idx / "pages" / digest[:2] / digest
        # the pages this call records (the next batch's first images may be on disk already: that is fine)
        images = sorted(p for p in folder.glob("*.jpg") if int(p.stem) < next_page)
        # Each image is fsynced under its temporary name (.00001.<pid>.<rand>.tmp), then renamed into place.
        synced_names = {Path(s).name for s in synced if Path(s).parent == folder}
        missing = [p.name for p in images if not any(n.startswith(f".{p.stem}.") for n in synced_names)]
        folders_synced = str(folder) in synced and str(folder.parent) in synced  # the renames, the new folder
        checked.append((next_page - 1, len(images), missing, folders_synced))
        return real_progress(self, path, pages=pages, next_page=next_page, **kw)

    import indexing.pages

    monkeypatch.setattr(os, "fsync", spy)
    monkeypatch.setattr(indexing.pages, "_fsync_file", spy)  # page images: fdatasync where there is one
    monkeypatch.setattr(Manifest, "progress", progress)
    report = Indexer(idx, None, _opts(batch_pages=8)).sync([docs])
    assert report.pages == 30, report.problems
    assert checked == [(n, n, [], True) for n in (8, 16, 24, 30)]


def test_a_pdf_gz_is_inflated_once(tmp_path, debian_pdfs, monkeypatch):
    import indexing.render.mupdf as mupdf

    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(debian_pdfs["reference.pdf.gz"], docs / "reference.pdf.gz")
    inflated: list[Path] = []
    real = mupdf._gunzip_into

    def counting(path, out, limit=None):
        inflated.append(Path(path))
        return real(path, out, limit)

    monkeypatch.setattr(mupdf, "_gunzip_into", counting)
    report = Indexer(tmp_path / "idx", None, _opts()).sync([docs])
    assert report.pages == 95
    assert inflated == [docs / "reference.pdf.gz"]  # not for the page count, the title and the pages apart
    with Manifest(tmp_path / "idx") as m:
        (record,) = m.documents()
    assert record.title and record.title != "reference"  # the title still comes from the document
    assert record.sha256 == sha256_file(docs / "reference.pdf.gz")


@pytest.mark.parametrize("fmt", ["jpeg", "webp"])
def test_page_format_option_reaches_the_page_store(tmp_path, fmt):
    docs = tmp_path / "docs"
    docs.mkdir()
    badfiles.text_pdf(docs / "a.pdf", ["one", "two", "three"])
    idx = tmp_path / "idx"
    report = Indexer(idx, None, IndexOptions(dpi=48, page_store="full", page_format=fmt, workers=2)).sync([docs])
    assert report.pages == 3
    ext = {"jpeg": "jpg", "webp": "webp"}[fmt]
    assert len(list((idx / "pages").rglob(f"*.{ext}"))) == 3
    store = open_store(idx, None)
    try:
        hits = store.query(text="three", mode="text", top_k=1)
    finally:
        store.close()
    assert hits[0].image_path.endswith(f"00003.{ext}") and (idx / hits[0].image_path).is_file()
