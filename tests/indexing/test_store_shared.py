"""SharedStore: the store kept open between queries, released for a real concurrent `docrag index` process."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from indexing.lock import IndexBusy, IndexLock
from indexing.pipeline import Indexer, IndexOptions
from indexing.store import SharedStore, StoreSettings

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture()
def index_dir(tmp_path) -> Path:
    docs = tmp_path / "docs"
    docs.mkdir()
    shutil.copy(ROOT / "examples" / "solar-maintenance.pdf", docs)
    idx = tmp_path / "idx"
    Indexer(idx, None, IndexOptions(dpi=48)).sync([docs])
    return idx


def _settings(timeout_s: float = 20.0) -> StoreSettings:
    return StoreSettings(command="test (kept open)", lock_timeout_s=timeout_s)


def test_kept_open_between_queries_and_holds_the_lock(index_dir):
    with SharedStore(index_dir, _settings(), poll_s=0.02) as shared:
        for _ in range(5):
            with shared.use() as store:
                assert store.query(text="inverter", mode="text", top_k=1)
        assert shared.opens == 1 and shared.is_open
        with pytest.raises(IndexBusy, match="test \\(kept open\\)"):  # held: a plain reader cannot get in...
            IndexLock(index_dir, timeout_s=0).acquire()
        # ...but one that waits announces itself, and the watcher lets go within a poll or so.
        with IndexLock(index_dir, timeout_s=5):
            assert not shared.is_open and shared.yields == 1
        with shared.use() as store:  # and the next query reopens it
            assert store.count() == 2
        assert shared.opens == 2
    with IndexLock(index_dir, timeout_s=0):  # close() released it
        pass


def test_idle_store_is_closed(index_dir):
    with SharedStore(index_dir, _settings(), poll_s=0.02, idle_close_s=0.2) as shared:
        with shared.use():
            pass
        deadline = time.monotonic() + 5
        while shared.is_open and time.monotonic() < deadline:
            time.sleep(0.02)
        assert not shared.is_open
        with IndexLock(index_dir, timeout_s=0):
            pass


def test_concurrent_docrag_index_process_gets_in_and_queries_see_its_pages(index_dir, debian_pdfs, tmp_path):
    new_docs = tmp_path / "new"
    new_docs.mkdir()
    shutil.copy(debian_pdfs["sample-plain.pdf"], new_docs)
    errors: list[BaseException] = []
    done = threading.Event()
    queries = 0

    with SharedStore(index_dir, _settings(), poll_s=0.02) as shared:
        with shared.use():
            pass  # open and hold it before the writer starts

        def query_loop() -> None:
            nonlocal queries
            while not done.is_set():
                try:
                    with shared.use() as store:
                        store.query(text="inverter", mode="text", top_k=3)
                    queries += 1
                except BaseException as e:  # noqa: BLE001 - any failure fails the test below
                    errors.append(e)
                time.sleep(0.001)  # a busy reader: it must not starve the writer (flock is not fair)

        reader = threading.Thread(target=query_loop)
        reader.start()
        # The writer gives up after 5 s if the kept-open store never lets it in.
        env = {**os.environ, "DOCRAG_LOCK_TIMEOUT_S": "5", "DOCRAG_DPI": "48"}
        result = subprocess.run([sys.executable, "-m", "app.cli", "index", str(new_docs), "--index-dir",
                                 str(index_dir), "--encoder", "none"], capture_output=True, text=True, env=env,
                                cwd=ROOT, timeout=120)
        done.set()
        reader.join()
        assert result.returncode == 0, result.stderr
        assert "1 new" in result.stdout
        assert not errors and queries > 0
        assert shared.yields >= 1
        with shared.use() as store:
            assert store.count() == 2 + 30  # the writer's pages are visible to the kept-open process
            hits = store.query(text="sample", mode="text", top_k=3, doc_filter="sample-plain")
            assert hits and hits[0].doc_path.endswith("sample-plain.pdf")
