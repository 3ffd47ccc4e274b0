"""Find the documents to index: walk files and folders, never raise on a bad path, hash files by streaming.

Everything that goes wrong while scanning (a missing path, an unreadable folder, a broken link, an
explicitly named file of an unsupported type) becomes a `ScanProblem` that the caller reports; one bad
path must never stop an indexing run over thousands of good ones.
"""

from __future__ import annotations

import errno
import hashlib
import os
import stat
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

SUPPORTED_SUFFIXES: tuple[str, ...] = (".pdf", ".pdf.gz", ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")
PDF_SUFFIXES: tuple[str, ...] = (".pdf", ".pdf.gz")
IMAGE_SUFFIXES: tuple[str, ...] = tuple(s for s in SUPPORTED_SUFFIXES if s not in PDF_SUFFIXES)

# Folder names never walked into besides hidden ones (.git, .venv, ...): the default index folder. An index
# folder with another name is kept out with `scan(..., exclude=[index_dir])`.
SKIPPED_DIR_NAMES = frozenset({".docrag"})


@dataclass(frozen=True)
class SourceFile:
    """One document found by `scan`: `path` is absolute and resolved, `kind` is "pdf" or "image"."""

    path: Path
    kind: str
    size: int
    mtime_ns: int


@dataclass(frozen=True)
class ScanProblem:
    """A path that could not be taken, with a one-line human reason."""

    path: Path
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


def file_kind(path: str | Path) -> str | None:
    """The kind ("pdf", "image") or None (unsupported), from the file name alone, case-insensitively."""
    name = Path(path).name.lower()
    if name.endswith(PDF_SUFFIXES):
        return "pdf"
    if name.endswith(IMAGE_SUFFIXES):
        return "image"
    return None


def display_path(path: str | Path) -> str:
    """A path as one printable line: bytes that are not UTF-8 (os.fsdecode's surrogate escapes) shown as \\xNN."""
    return os.fsencode(str(path)).decode("utf-8", "backslashreplace")


def utf8_name(path: str | Path) -> bool:
    """Whether the path is valid UTF-8 (the manifest, the store's JSON payloads and terminals need it)."""
    try:
        str(path).encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _reason(err: OSError) -> str:
    return err.strerror or err.__class__.__name__


def _stat_reason(path: Path, err: OSError) -> str:
    if err.errno == errno.ELOOP:
        return "symbolic link loop"
    if path.is_symlink():
        return "broken symbolic link"
    return _reason(err)


class _Scanner:
    def __init__(self, exclude: Iterable[str | Path] = ()) -> None:
        self.files: list[SourceFile] = []
        self.problems: list[ScanProblem] = []
        self._seen_files: set[Path] = set()
        self._seen_dirs: set[tuple[int, int]] = set()
        for folder in exclude:  # marking them as seen is all it takes never to enter them
            try:
                st = Path(folder).expanduser().stat()
            except OSError:
                continue
            self._seen_dirs.add((st.st_dev, st.st_ino))

    def problem(self, path: Path, reason: str) -> None:
        self.problems.append(ScanProblem(path, reason))

    def add_file(self, path: Path, st: os.stat_result, explicit: bool) -> None:
        try:
            resolved = path.resolve(strict=True)
        except (OSError, RuntimeError) as e:  # RuntimeError: symlink loop on older Pythons
            self.problem(path, f"cannot resolve path: {_reason(e) if isinstance(e, OSError) else e}")
            return
        kind = file_kind(resolved)
        if kind is not None and not utf8_name(resolved):
            # A Latin-1 name (b"caf\xe9.pdf") cannot go into the manifest or a payload: this file alone is refused.
            self.problem(path, "file name is not valid UTF-8 (rename the file to index it)")
            return
        if kind is None:
            if explicit:
                self.problem(path, f"unsupported file type (supported: {', '.join(SUPPORTED_SUFFIXES)})")
            return
        if not stat.S_ISREG(st.st_mode):
            # A FIFO or device named x.pdf would block or stream forever when read.
            self.problem(path, "not a regular file")
            return
        if resolved in self._seen_files:
            return
        if not os.access(resolved, os.R_OK):
            self.problem(path, "cannot read file: Permission denied")
            return
        self._seen_files.add(resolved)
        self.files.append(SourceFile(path=resolved, kind=kind, size=st.st_size, mtime_ns=st.st_mtime_ns))

    def take(self, raw: str | Path) -> None:
        if not str(raw).strip():  # Path("") would silently mean the current folder
            self.problem(Path(str(raw)), "empty path")
            return
        path = Path(os.path.abspath(Path(raw).expanduser()))
        try:
            st = path.stat()
        except OSError as e:
            self.problem(path, _stat_reason(path, e))
            return
        if stat.S_ISDIR(st.st_mode):
            self.walk(path, st)
        else:
            self.add_file(path, st, explicit=True)

    def walk(self, folder: Path, st: os.stat_result) -> None:
        key = (st.st_dev, st.st_ino)
        if key in self._seen_dirs:  # a symlink loop, or the same folder named twice
            return
        self._seen_dirs.add(key)
        try:
            with os.scandir(folder) as it:
                entries = sorted(it, key=lambda e: e.name)
        except OSError as e:
            self.problem(folder, f"cannot read folder: {_reason(e)}")
            return
        for entry in entries:
            if entry.name.startswith(".") or entry.name in SKIPPED_DIR_NAMES:
                continue  # hidden folders (.git, .docrag) and hidden files (._x.pdf, .~lock.x.pdf#)
            child = Path(entry.path)
            try:
                child_st = entry.stat(follow_symlinks=True)
            except OSError as e:
                if file_kind(entry.name) is not None:  # a dangling link the user expected to be indexed
                    self.problem(child, _stat_reason(child, e))
                continue
            if stat.S_ISDIR(child_st.st_mode):
                self.walk(child, child_st)
            elif file_kind(entry.name) is not None or (entry.is_symlink() and file_kind(child.resolve()) is not None):
                self.add_file(child, child_st, explicit=False)


def scan(paths: Iterable[str | Path], exclude: Iterable[str | Path] = ()) -> tuple[list[SourceFile], list[ScanProblem]]:
    """Files given explicitly are taken by name; folders are walked recursively in sorted order.

    Hidden entries and `.docrag` folders are skipped, symlinked folders are followed once (loops end),
    and a file reached twice (two names, two links) is listed once. Never raises for a bad path.
    `exclude` names folders never to enter: pass the index folder, wherever it is, so that its own page
    images are never indexed.
    """
    scanner = _Scanner(exclude)
    for raw in paths:
        scanner.take(raw)
    return scanner.files, scanner.problems


def sha256_file(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex SHA-256 of a file's bytes, streamed: the identity of a document across renames and moves."""
    h = hashlib.sha256()
    buf = bytearray(chunk)
    view = memoryview(buf)
    with open(path, "rb", buffering=0) as f:
        while n := f.readinto(buf):
            h.update(view[:n])
    return h.hexdigest()
