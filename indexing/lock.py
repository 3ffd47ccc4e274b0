"""The multi-process model of an index folder: one exclusive `flock` on `index_dir/.lock`, held briefly.

Why: a Qdrant Edge shard admits one process at a time (a second `EdgeShard.load` of the same folder fails at
once with "failed to open WAL ... WouldBlock"), and the CLI (`docrag index`, `docrag search`), the web UI and
evaluation runs all want the same index. Rather than a resident server, every process opens the shard for a
short while under this lock and closes it again:

* readers (`docrag search`, one UI request) take the lock, open the shard, query, close, release;
* the writer (the indexer) never needs the lock to render and encode (the slow part: rendering, page-image
  encoding and the vision encoder); it takes the lock to write a batch. A search therefore waits at most one
  batch write plus one open/close, never a whole indexing run, however slow the encoder;
* a long-lived holder that wants to keep the shard open across batches (it saves the open and close cost)
  may do so while `IndexLock.contended()` is False, and must close and release as soon as it turns True:
  waiters announce themselves with a marker file in `index_dir/.lock.waiting/`. The indexer does exactly
  that, with a watcher thread that checks between (and after) its writes (`store.session.StoreSession`).

Measured on 2 CPU cores (benchmarks/store_query.py; 10k pages with ~250-word texts; results/store_query.json):
opening the shard takes ~45-80 ms once optimized (dim 64 and 2048 alike; up to ~170 ms in noisier runs) and
~110-260 ms for a shard never optimized (its appendable segment is rebuilt at load); closing ~10-30 ms; a
whole per-batch cycle (open, upsert 32 pages, close) ~75-85 ms. Against the seconds a vision encoder spends
on a batch of pages that is a few percent, and a search that has to wait for a batch write waits < 0.1 s
plus its own open: per-batch opens are the default process model, no resident server needed. The writer
calls `optimize()` at the end of a run (~1 s for 10k pages with the default exact dense search; HNSW would
take ~35 s and hold the lock all that time, see `EdgeStore`), which also keeps later opens cheap; a long
first run should also optimize every few thousand pages, since the open cost of an unoptimized shard grows
with it. A store behind a Qdrant server (`qdrant_url`) needs no lock: the server arbitrates.

`flock` belongs to the open file description, so the lock goes away with its process however it dies
(SIGKILL included), and the file descriptor is not inherited by child processes. The holder writes
`index_dir/.lock.info` (pid, command, start time) so that a waiter that gives up can say who holds the
index: "index /x/.docrag is busy: `docrag index` (pid 1234) since 12:01:03".
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import os
import socket
import sys
import threading
import time
import uuid
from datetime import UTC, datetime
from pathlib import Path
from types import TracebackType
from typing import Any

LOCK_NAME = ".lock"
DEFAULT_TIMEOUT_S = 10.0


class IndexBusy(RuntimeError):
    """The index folder is held by another process (or another lock holder in this one)."""

    def __init__(self, index_dir: Path | str, holder: str, info: dict[str, Any] | None = None) -> None:
        self.index_dir = Path(index_dir)
        self.holder = holder
        self.info = info
        super().__init__(f"index {self.index_dir} is busy: {holder}")


def read_holder(index_dir: Path | str, name: str = LOCK_NAME) -> dict[str, Any] | None:
    """The holder's `<name>.info` (pid, command, started_at, host), or None when absent or unreadable."""
    try:
        data = json.loads((Path(index_dir) / f"{name}.info").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


def describe_holder(index_dir: Path | str, name: str = LOCK_NAME) -> str:
    """One human line about who holds the index, e.g. "`docrag index` (pid 1234) since 12:01:03"."""
    info = read_holder(index_dir, name)
    if not info:
        return f"held by another process (it left no {name}.info)"
    command = info.get("command") or "unknown command"
    parts = [f"`{command}`"]
    if info.get("pid") is not None:
        host = info.get("host")
        pid = f"pid {info['pid']}" + (f" on {host}" if host and host != socket.gethostname() else "")
        parts.append(f"({pid})")
    started = info.get("started_at")
    if started:
        try:
            local = datetime.fromisoformat(started).astimezone()
            same_day = local.date() == datetime.now().astimezone().date()
            parts.append("since " + local.strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S"))
        except ValueError:
            parts.append(f"since {started}")
    return " ".join(parts)


def _default_command() -> str:
    prog = Path(sys.argv[0]).name if sys.argv and sys.argv[0] else "python"
    cmd = " ".join([prog, *sys.argv[1:]])
    return cmd if len(cmd) <= 120 else cmd[:117] + "..."


def pid_alive(pid: Any) -> bool:
    """Whether a process with this pid exists on this machine (False for a missing or bad pid)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class IndexLock:
    """Exclusive, bounded-wait lock on an index folder; re-entrant within one instance.

    Use as `with IndexLock(d, command="docrag search"):` (waits up to `timeout_s`), or call
    `acquire(timeout_s=...)` / `release()`. Raises `IndexBusy` naming the holder when the wait runs out.
    """

    def __init__(
        self,
        index_dir: Path | str,
        *,
        command: str | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        poll_s: float = 0.05,
        name: str = LOCK_NAME,
    ) -> None:
        self.index_dir = Path(index_dir)
        self.name = name  # the lock file; `<name>.info` and `<name>.waiting/` sit beside it
        self.command = command or _default_command()
        self.timeout_s = timeout_s
        self.poll_s = poll_s
        self._fd: int | None = None
        self._depth = 0
        self._guard = threading.Lock()

    @property
    def path(self) -> Path:
        return self.index_dir / self.name

    @property
    def held(self) -> bool:
        """Whether this instance holds the lock now."""
        return self._fd is not None

    def _try_lock(self) -> bool:
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        self._fd = fd
        return True

    def _write_info(self) -> None:
        info = {
            "pid": os.getpid(),
            "command": self.command,
            "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": socket.gethostname(),
        }
        tmp = self.index_dir / f"{self.name}.info.{os.getpid()}.tmp"
        tmp.write_text(json.dumps(info), encoding="utf-8")
        os.replace(tmp, self.index_dir / f"{self.name}.info")

    def acquire(self, timeout_s: float | None = None) -> IndexLock:
        """Take the lock, polling for at most `timeout_s` seconds (default: the instance's); returns self."""
        timeout = self.timeout_s if timeout_s is None else timeout_s
        with self._guard:
            if self._fd is not None:
                self._depth += 1
                return self
            self.index_dir.mkdir(parents=True, exist_ok=True)
            deadline = time.monotonic() + max(0.0, timeout)
            marker: Path | None = None
            try:
                while not self._try_lock():
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        info = read_holder(self.index_dir, self.name)
                        raise IndexBusy(self.index_dir, describe_holder(self.index_dir, self.name), info)
                    if marker is None:
                        marker = self._announce_waiting()
                    time.sleep(min(self.poll_s, remaining))
            finally:
                if marker is not None:
                    with contextlib.suppress(OSError):
                        marker.unlink()
            self._depth = 1
            try:
                self._write_info()
            except OSError:
                pass  # the lock itself is what matters; the info file only improves error messages
            return self

    def release(self) -> None:
        """Release one level; the lock goes when the outermost holder releases. No-op when not held."""
        with self._guard:
            if self._fd is None:
                return
            self._depth -= 1
            if self._depth > 0:
                return
            info = read_holder(self.index_dir, self.name)
            if info and info.get("pid") == os.getpid():
                with contextlib.suppress(OSError):
                    (self.index_dir / f"{self.name}.info").unlink()
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)

    def _announce_waiting(self) -> Path | None:
        waiting = self.index_dir / f"{self.name}.waiting"
        try:
            waiting.mkdir(exist_ok=True)
            marker = waiting / f"{os.getpid()}.{uuid.uuid4().hex[:12]}"
            marker.touch()
            return marker
        except OSError:
            return None

    def contended(self) -> bool:
        """Whether another process (or lock instance) is waiting for this index right now.

        A holder that keeps the shard open across batches checks this between batches and lets go when True.
        Markers left by waiters that died are removed on the way.
        """
        waiting = self.index_dir / f"{self.name}.waiting"
        try:
            names = os.listdir(waiting)
        except OSError:
            return False
        for name in names:
            try:
                pid = int(name.split(".", 1)[0])
            except ValueError:
                continue
            if pid_alive(pid):
                return True
            with contextlib.suppress(OSError):
                (waiting / name).unlink()
        return False

    def __enter__(self) -> IndexLock:
        return self.acquire()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.release()

    def __del__(self) -> None:
        fd = getattr(self, "_fd", None)
        if fd is not None:
            with contextlib.suppress(OSError):
                os.close(fd)
