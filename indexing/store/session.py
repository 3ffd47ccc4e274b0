"""Opening a store: the backend factory, and the process model around it.

A Qdrant Edge shard admits one process at a time (see `indexing.lock`), so every Edge open happens under
the index's `IndexLock`:

* readers (`locked_store`): lock, open, query, close, unlock;
* the indexer (`StoreSession.writing()`): takes the lock and opens the shard to write a batch. Between
  batches (rendering, page-image encoding, the vision encoder) it keeps the shard open only while nobody
  waits: a watcher thread checks `IndexLock.contended()` every `WATCH_S` and, as soon as a reader waits,
  closes the shard and releases the lock (after the write in progress, if any). So a search waits at most
  one batch write plus one close, however slow the encoder or large the batch; and an uncontended run does
  not pay an open and a close per batch (measured ~75 ms and ~165 ms per batch here on a loaded machine,
  which at 16 pages a batch would cost more than the pages themselves);
* one indexing run per index folder (`WriterLock`, its own lock file, never waited for).

A server (qdrant-client backend) arbitrates concurrent clients itself: no lock is taken for it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from indexing.lock import DEFAULT_TIMEOUT_S, IndexBusy, IndexLock

from .base import DEFAULT_COLLECTION, Store
from .edge import EdgeStore
from .points import PagePoint
from .server import QdrantClientStore

WRITER_LOCK = ".writer.lock"
# A never-optimized Edge shard gets slower to open as it grows: optimize every this many pages.
OPTIMIZE_EVERY_PAGES = 4096
# How often the indexer looks for a waiting reader while it is not writing.
WATCH_S = 0.05


def open_store(
    index_dir: Path | str,
    dim: int | None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    *,
    language: str | None = None,
    open_timeout_s: float = 0.0,
    hnsw: bool = False,
) -> Store:
    """The index's store: Qdrant Edge under `index_dir/qdrant`, or the `collection` on `qdrant_url`.

    `qdrant_url=":memory:"` gives qdrant-client's in-memory mode (scratch runs); `file:/some/dir` its local,
    on-disk mode (the client code path without a server, for tests; one process at a time, brute force).
    `hnsw` only matters when an Edge shard is created (see `EdgeStore`).
    """
    if qdrant_url:
        if qdrant_url == ":memory:":
            return QdrantClientStore(location=":memory:", collection=collection, dim=dim, language=language)
        if qdrant_url.startswith("file:"):
            local = qdrant_url.removeprefix("file://") if qdrant_url.startswith("file://") else qdrant_url[5:]
            return QdrantClientStore(path=local, collection=collection, dim=dim, language=language)
        return QdrantClientStore(qdrant_url, api_key=api_key, collection=collection, dim=dim, language=language)
    return EdgeStore(Path(index_dir) / "qdrant", dim, language=language, open_timeout_s=open_timeout_s, hnsw=hnsw)


@contextlib.contextmanager
def locked_store(
    index_dir: Path | str,
    dim: int | None,
    qdrant_url: str | None = None,
    api_key: str | None = None,
    collection: str = DEFAULT_COLLECTION,
    *,
    command: str | None = None,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    language: str | None = None,
) -> Iterator[Store]:
    """`with locked_store(d, dim, command="docrag search") as s:` — lock, open, use, close, unlock.

    The lock is taken only for the Edge backend (a server arbitrates concurrent clients itself).
    Raises `IndexBusy` after `timeout_s` when another process holds the index.
    """
    lock = None if qdrant_url else IndexLock(index_dir, command=command, timeout_s=timeout_s)
    if lock is not None:
        lock.acquire()
    try:
        store = open_store(index_dir, dim, qdrant_url, api_key, collection, language=language, open_timeout_s=timeout_s)
        try:
            yield store
        finally:
            store.close()
    finally:
        if lock is not None:
            lock.release()


@dataclass(frozen=True)
class StoreSettings:
    """Where a store lives and how long to wait for it: what `open_store` and the lock need."""

    qdrant_url: str | None = None
    api_key: str | None = None
    collection: str = DEFAULT_COLLECTION
    command: str | None = None
    lock_timeout_s: float = DEFAULT_TIMEOUT_S
    language: str | None = None  # BM25 language of a new index (an existing one keeps its recorded one)


class WriterBusy(IndexBusy):
    pass


class WriterLock:
    """One indexing run per index folder: an `IndexLock` on its own file, not waited for."""

    def __init__(self, index_dir: Path, command: str = "docrag index") -> None:
        self._lock = IndexLock(index_dir, name=WRITER_LOCK, command=command, timeout_s=0)

    def __enter__(self) -> WriterLock:
        try:
            self._lock.acquire()
        except IndexBusy as e:
            raise WriterBusy(e.index_dir, f"another indexing run is writing to it: {e.holder}", e.info) from None
        return self

    def __exit__(self, *exc) -> None:
        self._lock.release()


class StoreSession:
    """The indexer's store: `with session.writing() as store:` for each write; the lock is free between writes
    whenever a reader waits (see the module docstring).

    A server backend takes no lock, so its client simply stays open for the whole session.
    """

    def __init__(self, index_dir: Path, settings: StoreSettings, dim: int | None) -> None:
        self.index_dir, self.settings, self.dim = index_dir, settings, dim
        self._lock = None if settings.qdrant_url else IndexLock(index_dir, command=settings.command,
                                                                 timeout_s=settings.lock_timeout_s)
        self._store: Store | None = None
        self._since_optimize = 0
        self._touched = False  # whether any block ran: only then does the end of the run optimize
        self._mutex = threading.Lock()  # a write and the watcher's close never overlap
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.yielded = 0  # how many times a waiting reader was let in

    @contextlib.contextmanager
    def writing(self) -> Iterator[Store]:
        """The open store, under the index lock (Edge), for one write."""
        with self._mutex:
            if self._store is None:
                if self._lock is not None:
                    self._lock.acquire()
                try:
                    s = self.settings
                    self._store = open_store(self.index_dir, self.dim, s.qdrant_url, s.api_key, s.collection,
                                             open_timeout_s=s.lock_timeout_s, language=s.language)
                except BaseException:
                    if self._lock is not None:
                        self._lock.release()
                    raise
            self._touched = True
            try:
                yield self._store
            except BaseException:
                self._release()  # a failed write: don't keep a possibly broken handle (or the lock)
                raise
        if self._lock is not None and self._watcher is None:
            self._watcher = threading.Thread(target=self._watch, name="docrag-lock-watch", daemon=True)
            self._watcher.start()

    @property
    def holds_lock(self) -> bool:
        """Whether this session holds the index lock right now."""
        return self._lock is not None and self._lock.held

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_S):
            if self._store is None or not self._lock.contended():
                continue
            with self._mutex:
                if self._store is not None:
                    self._release()
                    self.yielded += 1

    def _release(self) -> None:
        store, self._store = self._store, None
        try:
            if store is not None:
                store.close()
        finally:
            if store is not None and self._lock is not None:
                self._lock.release()

    def upsert(self, points: list[PagePoint]) -> None:
        with self.writing() as store:
            store.upsert(points)
            self._since_optimize += len(points)
            if self._since_optimize >= OPTIMIZE_EVERY_PAGES:
                store.optimize()  # keeps the opens of a growing shard cheap
                self._since_optimize = 0

    def close(self, optimize: bool = False) -> None:
        """End of the run: optimize (if asked and anything was written) and release everything."""
        try:
            if optimize and self._touched:
                with self.writing() as store:
                    store.optimize()
        finally:
            self._stop.set()
            if self._watcher is not None:
                self._watcher.join()
                self._watcher = None
            with self._mutex:
                self._release()
