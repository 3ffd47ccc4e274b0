"""The multi-process model, with real processes: a held index makes others wait a bounded time, then fail with
IndexBusy naming the holder; a SIGKILLed holder frees the index; a held Edge shard is IndexBusy, not a traceback."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from indexing.lock import IndexBusy, IndexLock, describe_holder, read_holder
from indexing.store import EdgeStore, PagePoint, locked_store

ROOT = Path(__file__).resolve().parents[2]


def spawn(code: str) -> subprocess.Popen[str]:
    """A Python child running `code`; it must print READY once it holds what the test needs."""
    env = {**os.environ, "PYTHONPATH": str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        env=env,
    )


def wait_for_line(proc: subprocess.Popen[str], expected: str, timeout_s: float = 20.0) -> None:
    assert proc.stdout is not None
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], max(0.0, deadline - time.monotonic()))
        if not ready:
            break
        line = proc.stdout.readline()
        if not line:  # child exited
            break
        if line.strip() == expected:
            return
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"child never printed {expected!r}; stderr:\n{err}")


def sigkill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)
    assert proc.returncode == -signal.SIGKILL


@pytest.fixture
def children() -> Iterator[list[subprocess.Popen[str]]]:
    procs: list[subprocess.Popen[str]] = []
    yield procs
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.communicate()


HOLD_LOCK = """
    import time
    from indexing.lock import IndexLock
    lock = IndexLock({d!r}, command="docrag index").acquire(timeout_s=5)
    print("READY", flush=True)
    time.sleep(60)
"""


def test_second_process_gets_index_busy_naming_the_holder(tmp_path: Path, children: list) -> None:
    holder = spawn(HOLD_LOCK.format(d=str(tmp_path)))
    children.append(holder)
    wait_for_line(holder, "READY")

    t0 = time.monotonic()
    with pytest.raises(IndexBusy) as err:
        IndexLock(tmp_path, command="docrag search").acquire(timeout_s=0.5)
    waited = time.monotonic() - t0
    assert 0.4 <= waited < 3.0  # bounded wait: the timeout, not forever, not at once
    msg = str(err.value)
    assert msg.startswith(f"index {tmp_path} is busy: ")
    assert "`docrag index`" in msg and f"pid {holder.pid}" in msg and " since " in msg
    assert err.value.info is not None and err.value.info["pid"] == holder.pid

    # and from a separate process too, which reports the same holder
    probe = spawn(
        f"""
        from indexing.lock import IndexBusy, IndexLock
        try:
            IndexLock({str(tmp_path)!r}).acquire(timeout_s=0.3)
            print("ACQUIRED")
        except IndexBusy as exc:
            print("BUSY", exc)
        """
    )
    out, err_text = probe.communicate(timeout=20)
    assert out.startswith("BUSY") and f"pid {holder.pid}" in out, err_text


def test_sigkilled_holder_frees_the_lock(tmp_path: Path, children: list) -> None:
    holder = spawn(HOLD_LOCK.format(d=str(tmp_path)))
    children.append(holder)
    wait_for_line(holder, "READY")
    with pytest.raises(IndexBusy):
        IndexLock(tmp_path).acquire(timeout_s=0.1)
    sigkill(holder)
    assert read_holder(tmp_path)["pid"] == holder.pid  # the dead holder's info is left behind ...
    t0 = time.monotonic()
    with IndexLock(tmp_path, command="after-kill") as lock:  # ... but the flock died with the process
        assert lock.held
        assert time.monotonic() - t0 < 1.0
        assert read_holder(tmp_path)["pid"] == os.getpid()
        assert "`after-kill`" in describe_holder(tmp_path)
    assert read_holder(tmp_path) is None


def test_waiter_gets_the_lock_when_holder_releases_within_timeout(tmp_path: Path, children: list) -> None:
    holder = spawn(
        f"""
        import time
        from indexing.lock import IndexLock
        lock = IndexLock({str(tmp_path)!r}, command="short batch").acquire()
        print("READY", flush=True)
        time.sleep(0.5)
        lock.release()
        time.sleep(30)
        """
    )
    children.append(holder)
    wait_for_line(holder, "READY")
    t0 = time.monotonic()
    with IndexLock(tmp_path).acquire(timeout_s=10):
        assert 0.2 < time.monotonic() - t0 < 5.0


def test_long_lived_holder_lets_go_when_contended(tmp_path: Path, children: list) -> None:
    holder = spawn(
        f"""
        import time
        from indexing.lock import IndexLock
        lock = IndexLock({str(tmp_path)!r}, command="docrag ui").acquire()
        print("READY", flush=True)
        deadline = time.monotonic() + 30
        while not lock.contended() and time.monotonic() < deadline:  # between batches / requests
            time.sleep(0.02)
        lock.release()
        print("RELEASED", flush=True)
        time.sleep(30)
        """
    )
    children.append(holder)
    wait_for_line(holder, "READY")
    lock = IndexLock(tmp_path)
    assert not lock.contended()
    t0 = time.monotonic()
    lock.acquire(timeout_s=10)
    try:
        assert time.monotonic() - t0 < 5.0
        wait_for_line(holder, "RELEASED")
        assert not lock.contended()  # our waiting marker is gone
    finally:
        lock.release()


def test_lock_is_exclusive_within_a_process_and_reentrant_per_instance(tmp_path: Path) -> None:
    a = IndexLock(tmp_path, command="a")
    with a:
        with a:  # re-entrant on the same instance
            assert a.held
        assert a.held
        with pytest.raises(IndexBusy, match="`a`"):
            IndexLock(tmp_path).acquire(timeout_s=0)
    assert not a.held
    a.release()  # releasing an unheld lock is a no-op
    with IndexLock(tmp_path).acquire(timeout_s=0):
        pass


HOLD_SHARD = """
    import time
    from indexing.store import EdgeStore, PagePoint
    s = EdgeStore({path!r}, 4)
    s.upsert([PagePoint("h", "/d.pdf", n, text=f"page {{n}}") for n in (1, 2, 3)])
    print("READY", flush=True)
    time.sleep(60)
"""


def test_edge_shard_open_elsewhere_is_index_busy_and_freed_by_sigkill(tmp_path: Path, children: list) -> None:
    shard = tmp_path / "qdrant"
    holder = spawn(HOLD_SHARD.format(path=str(shard)))
    children.append(holder)
    wait_for_line(holder, "READY")

    with pytest.raises(IndexBusy, match="is busy: the Qdrant shard is open in another process"):
        EdgeStore(shard)
    t0 = time.monotonic()
    with pytest.raises(IndexBusy):
        EdgeStore(shard, open_timeout_s=0.3)  # retried for the timeout, then IndexBusy
    assert time.monotonic() - t0 >= 0.3

    sigkill(holder)  # the WAL's lock goes with the process; the WAL keeps the unflushed writes
    with EdgeStore(shard) as s:
        assert s.count() == 3 and s.dim == 4


def test_locked_store_in_another_process_reports_its_holder(tmp_path: Path, children: list) -> None:
    holder = spawn(
        f"""
        import time
        from indexing.store import locked_store
        with locked_store({str(tmp_path)!r}, 4, command="docrag index") as s:
            print("READY", flush=True)
            time.sleep(60)
        """
    )
    children.append(holder)
    wait_for_line(holder, "READY")
    with pytest.raises(IndexBusy) as err:
        with locked_store(tmp_path, 4, command="docrag search", timeout_s=0.3):
            pass
    assert "`docrag index`" in str(err.value) and f"pid {holder.pid}" in str(err.value)
    # bypassing the lock still gives IndexBusy (with the holder's info), never a raw engine error
    with pytest.raises(IndexBusy, match="`docrag index`"):
        EdgeStore(tmp_path / "qdrant")
    sigkill(holder)
    with locked_store(tmp_path, 4, timeout_s=2) as s:
        s.upsert([PagePoint("h", "/d.pdf", 1, text="after the holder died")])
        assert s.count() == 1
