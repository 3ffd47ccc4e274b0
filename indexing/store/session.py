"""Opening a store: the backend factory, and the process model around it.

A Qdrant Edge shard admits one process at a time (see `indexing.lock`), so every Edge open happens under
the index's `IndexLock`:

* readers (`locked_store`): lock, open, query, close, unlock;
* the indexer (`StoreSession`): opens on demand, keeps the store open across its writes while nobody else
  waits, and closes it for a waiting reader (`yield_if_wanted`);
* one indexing run per index folder (`WriterLock`, its own lock file, never waited for).

A server (qdrant-client backend) arbitrates concurrent clients itself: no lock is taken for it.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from indexing.lock import DEFAULT_TIMEOUT_S, IndexBusy, IndexLock

from .base import DEFAULT_COLLECTION, PagePoint, Store
from .edge import EdgeStore
from .server import QdrantClientStore

WRITER_LOCK = ".writer.lock"
# A never-optimized Edge shard gets slower to open as it grows: optimize every this many pages.
OPTIMIZE_EVERY_PAGES = 4096


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
    """The store, opened under the index lock on demand and kept open while nobody else waits."""

    def __init__(self, index_dir: Path, settings: StoreSettings, dim: int | None) -> None:
        self.index_dir, self.settings, self.dim = index_dir, settings, dim
        self._lock = None if settings.qdrant_url else IndexLock(index_dir, command=settings.command,
                                                                 timeout_s=settings.lock_timeout_s)
        self._store: Store | None = None
        self._since_optimize = 0

    def upsert(self, points: list[PagePoint]) -> None:
        store = self.get()
        store.upsert(points)
        self._since_optimize += len(points)
        if self._since_optimize >= OPTIMIZE_EVERY_PAGES:
            store.optimize()
            self._since_optimize = 0

    def get(self) -> Store:
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
        return self._store

    def yield_if_wanted(self) -> None:
        """Between batches: let a waiting reader in."""
        if self._store is not None and self._lock is not None and self._lock.contended():
            self.close()

    def close(self, optimize: bool = False) -> None:
        if self._store is not None:
            try:
                if optimize:
                    self._store.optimize()
            finally:
                self._store.close()
                self._store = None
                if self._lock is not None:
                    self._lock.release()
