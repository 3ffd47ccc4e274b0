"""A store kept open across queries in a long-running process (the web UI, a retriever in a server).

Opening a Qdrant Edge shard costs tens of milliseconds (see `indexing.lock`), more than a query itself.
A process that answers many queries keeps it open under the index's `IndexLock` instead, and lets go as
soon as another process (or another lock holder in this one, e.g. the UI's own background indexing)
waits for the lock: waiters announce themselves (`IndexLock.contended()`), and a watcher thread checks
for them every `poll_s` seconds, so a writer waits at most about one poll plus a query in progress. The
next query lets the waiter take the lock first (flock is not fair), then takes it again (waiting, at most
`lock_timeout_s`, for the writer to finish its batch) and reopens the shard, so it sees what was written.
With nobody waiting, the store is also closed after `idle_close_s` without a query (a UI left open
overnight holds nothing).

A store behind a Qdrant server needs no lock: it is opened once and kept.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from indexing.lock import IndexLock

from .base import Store
from .session import StoreSettings, open_store

DEFAULT_POLL_S = 0.05
DEFAULT_IDLE_CLOSE_S = 300.0


class SharedStore:
    """`with shared.use() as store:` — the store, opened on first use and kept open while nobody waits.

    Thread-safe: queries from several threads share the one open store (one at a time), and the watcher
    never closes it under a running query.
    """

    def __init__(
        self,
        index_dir: Path | str,
        settings: StoreSettings,
        dim: int | None = None,
        *,
        poll_s: float = DEFAULT_POLL_S,
        idle_close_s: float | None = DEFAULT_IDLE_CLOSE_S,
    ) -> None:
        self.index_dir, self.settings, self.dim = Path(index_dir), settings, dim
        self.poll_s, self.idle_close_s = poll_s, idle_close_s
        self._lock = None if settings.qdrant_url else IndexLock(self.index_dir, command=settings.command,
                                                                 timeout_s=settings.lock_timeout_s)
        self._guard = threading.RLock()
        self._store: Store | None = None
        self._last_used = 0.0
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self.opens = 0  # how many times the store was (re)opened: for tests and benchmarks
        self.yields = 0  # how many times it was released for a waiter

    @property
    def is_open(self) -> bool:
        with self._guard:  # not half-way through a release: closed means the lock is free too
            return self._store is not None

    @contextlib.contextmanager
    def use(self) -> Iterator[Store]:
        with self._guard:
            if self._store is not None and self._lock is not None and self._lock.contended():
                self._release(yielded=True)  # a waiter goes first; we queue up behind it
            if self._store is None:
                self._open()
            try:
                yield self._store
            finally:
                self._last_used = time.monotonic()

    def _open(self) -> None:
        if self._lock is not None:
            self._let_waiters_in()
            self._lock.acquire()
        try:
            s = self.settings
            self._store = open_store(self.index_dir, self.dim, s.qdrant_url, s.api_key, s.collection,
                                     open_timeout_s=s.lock_timeout_s)
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise
        self.opens += 1
        self._last_used = time.monotonic()
        if self._lock is not None and (self._watcher is None or not self._watcher.is_alive()):
            self._stop.clear()
            self._watcher = threading.Thread(target=self._watch, name="docrag-shared-store", daemon=True)
            self._watcher.start()

    def _let_waiters_in(self) -> None:
        """flock is not fair: a waiter polls, and we would take the lock straight back between its polls.
        So while someone waits, wait (at most the lock timeout) until it has taken the lock (its marker goes)."""
        deadline = time.monotonic() + self.settings.lock_timeout_s
        while self._lock.contended() and time.monotonic() < deadline:
            time.sleep(self.poll_s)

    def _release(self, yielded: bool = False) -> None:
        store = self._store
        if store is None:
            return
        try:
            store.close()
        finally:
            if self._lock is not None:
                self._lock.release()
            self._store = None
            if yielded:
                self.yields += 1

    def _watch(self) -> None:
        # Runs until close(); cheap when the store is closed (one flag check per tick).
        while not self._stop.wait(self.poll_s):
            if self._store is None:
                continue
            if not self._guard.acquire(blocking=False):
                continue  # a query is running: never wait on it here, look again at the next tick
            try:
                if self._store is None:
                    continue
                idle = self.idle_close_s is not None and time.monotonic() - self._last_used > self.idle_close_s
                if idle or self._lock.contended():
                    self._release(yielded=not idle)
            finally:
                self._guard.release()

    def close(self) -> None:
        """Close the store and release the lock (idempotent); a later `use()` reopens it."""
        self._stop.set()
        with self._guard:
            self._release()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=1.0)

    def __enter__(self) -> SharedStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
