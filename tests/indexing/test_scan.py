"""scan(): which files an indexing run sees, and that no bad path ever raises."""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

import badfiles
import pytest

from indexing.scan import SUPPORTED_SUFFIXES, ScanProblem, SourceFile, file_kind, scan, sha256_file


def _touch(path: Path, data: bytes = b"%PDF-1.7\n") -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


@pytest.fixture()
def tree(tmp_path: Path) -> Path:
    """A folder with documents, look-alikes and places scan must not enter."""
    root = tmp_path / "docs"
    for rel in [
        "b.pdf",
        "a.PDF",
        "sub/deeper/c.pdf.gz",
        "sub/scan.JPG",
        "sub/photo.jpeg",
        "sub/fig.png",
        "sub/x.webp",
        "sub/fax.TIF",
        "sub/fax2.tiff",
        "notes.txt",
        "archive.gz",
        ".hidden.pdf",
        ".git/objects/blob.pdf",
        ".docrag/pages/ab/page.png",
        "nested/.docrag/x.pdf",
    ]:
        _touch(root / rel)
    return root


def test_folder_walk_is_recursive_sorted_and_skips_hidden(tree: Path):
    files, problems = scan([tree])
    assert problems == []
    rel = [f.path.relative_to(tree.resolve()).as_posix() for f in files]
    assert rel == [
        "a.PDF",
        "b.pdf",
        "sub/deeper/c.pdf.gz",
        "sub/fax.TIF",
        "sub/fax2.tiff",
        "sub/fig.png",
        "sub/photo.jpeg",
        "sub/scan.JPG",
        "sub/x.webp",
    ]
    kinds = {f.path.name: f.kind for f in files}
    assert kinds["c.pdf.gz"] == "pdf" and kinds["a.PDF"] == "pdf" and kinds["scan.JPG"] == "image"


def test_scan_is_deterministic(tree: Path):
    assert scan([tree]) == scan([tree])


def test_source_file_fields_match_the_file(tmp_path: Path, debian_pdfs: dict[str, Path]):
    pdf = shutil.copy(debian_pdfs["sample-plain.pdf"], tmp_path / "s.pdf")
    os.utime(pdf, ns=(1_600_000_000_123_456_789, 1_600_000_000_123_456_789))
    files, problems = scan([pdf])
    assert problems == []
    (f,) = files
    assert f == SourceFile(path=Path(pdf).resolve(), kind="pdf", size=132167, mtime_ns=1_600_000_000_123_456_789)
    assert f.path.is_absolute()


def test_relative_paths_become_absolute(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    _touch(tmp_path / "d" / "r.pdf")
    monkeypatch.chdir(tmp_path)
    files, _ = scan(["d", "d/r.pdf"])
    assert [f.path for f in files] == [(tmp_path / "d" / "r.pdf").resolve()]


def test_explicit_unsupported_file_is_a_problem_but_in_folders_it_is_ignored(tree: Path):
    files, problems = scan([tree / "notes.txt", tree / "archive.gz"])
    assert files == []
    assert [p.path.name for p in problems] == ["notes.txt", "archive.gz"]
    assert all(p.reason.startswith("unsupported file type") for p in problems)
    assert "\n" not in problems[0].reason


def test_explicit_hidden_file_is_taken(tree: Path):
    files, problems = scan([tree / ".hidden.pdf"])
    assert [f.path.name for f in files] == [".hidden.pdf"] and problems == []


def test_missing_paths_are_problems_not_exceptions(tmp_path: Path):
    files, problems = scan([tmp_path / "nope.pdf", tmp_path / "nope-dir", ""])
    assert files == []
    assert [p.reason for p in problems] == ["No such file or directory"] * 2 + ["empty path"]
    assert isinstance(problems[0], ScanProblem)
    assert str(problems[0]) == f"{tmp_path / 'nope.pdf'}: No such file or directory"


def test_same_file_reached_many_ways_is_listed_once(tmp_path: Path):
    real = _touch(tmp_path / "docs" / "report.pdf")
    (tmp_path / "docs" / "alias.pdf").symlink_to(real)
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "docs-link").symlink_to(tmp_path / "docs", target_is_directory=True)
    files, problems = scan([real, tmp_path / "docs", tmp_path, str(real), tmp_path / "elsewhere"])
    assert problems == []
    assert [f.path for f in files] == [real.resolve()]


def test_symlink_loops_terminate(tmp_path: Path):
    root = tmp_path / "loop"
    _touch(root / "inner" / "doc.pdf")
    (root / "inner" / "back").symlink_to(root, target_is_directory=True)  # loop through the parent
    (root / "self").symlink_to(root / "self")  # a link to itself
    (root / "self.pdf").symlink_to(root / "self.pdf")
    files, problems = scan([root, root / "self.pdf"])
    assert [f.path.name for f in files] == ["doc.pdf"]
    # The looping link named like a document is reported (once walking, once named explicitly).
    assert [(p.path.name, p.reason) for p in problems] == [("self.pdf", "symbolic link loop")] * 2


def test_broken_symlink_named_like_a_document_is_reported(tmp_path: Path):
    link = badfiles.broken_symlink_pdf(tmp_path)
    (tmp_path / "dangling-other").symlink_to(tmp_path / "gone")  # not named like a document: ignored
    files, problems = scan([tmp_path, link])
    assert files == []
    assert [(p.path, p.reason) for p in problems] == [(link, "broken symbolic link")] * 2


def test_fifo_named_pdf_is_a_problem_and_does_not_block(tmp_path: Path):
    fifo = badfiles.make_fifo_pdf(tmp_path)
    if fifo is None:
        pytest.skip("no FIFOs on this platform")
    files, problems = scan([tmp_path, fifo])
    assert files == []
    assert [p.reason for p in problems] == ["not a regular file"] * 2


def test_unreadable_folder(tmp_path: Path):
    locked = tmp_path / "locked"
    _touch(locked / "in.pdf")
    locked.chmod(0)
    try:
        files, problems = scan([tmp_path])
        if os.access(locked, os.R_OK | os.X_OK):  # root ignores mode bits
            assert [f.path.name for f in files] == ["in.pdf"] and problems == []
        else:
            assert files == []
            assert [(p.path, p.reason) for p in problems] == [(locked, "cannot read folder: Permission denied")]
    finally:
        locked.chmod(0o755)


def test_unreadable_file(tmp_path: Path):
    path = badfiles.unreadable_pdf(tmp_path)
    try:
        files, problems = scan([path])
        if badfiles.is_readable(path):
            assert [f.path for f in files] == [path] and problems == []
        else:
            assert files == [] and [p.reason for p in problems] == ["cannot read file: Permission denied"]
    finally:
        path.chmod(0o644)


def test_non_ascii_names(tmp_path: Path):
    path = badfiles.non_ascii_named_pdf(tmp_path)
    files, problems = scan([tmp_path])
    assert problems == [] and [f.path.name for f in files] == ["Bericht über Äpfel 2024.pdf"]
    assert files[0].path == path.resolve()


def test_real_debian_folder(debian_pdf_dir: Path, debian_pdfs: dict[str, Path]):
    files, problems = scan([debian_pdf_dir])
    assert problems == []
    assert [f.path.name for f in files] == sorted(debian_pdfs)
    assert {f.kind for f in files} == {"pdf"}
    assert all(f.size == f.path.stat().st_size > 0 for f in files)


def test_file_kind_covers_every_supported_suffix():
    for suffix in SUPPORTED_SUFFIXES:
        assert file_kind("x" + suffix.upper()) is not None
    assert file_kind("x.pdf.gz") == "pdf" and file_kind("x.gz") is None and file_kind("pdf") is None


def test_sha256_streams_in_chunks(tmp_path: Path, debian_pdfs: dict[str, Path]):
    pdf = debian_pdfs["sample-plain.pdf"]
    expected = hashlib.sha256(pdf.read_bytes()).hexdigest()
    assert sha256_file(pdf) == expected
    assert sha256_file(pdf, chunk=4093) == expected  # a chunk that does not divide the size
    empty = _touch(tmp_path / "empty.pdf", b"")
    assert sha256_file(empty) == hashlib.sha256(b"").hexdigest()
    gz = debian_pdfs["reference.pdf.gz"]
    assert sha256_file(gz) != expected and len(sha256_file(gz)) == 64


def test_exclude_keeps_the_index_folder_out(tmp_path: Path):
    _touch(tmp_path / "docs" / "a.pdf")
    _touch(tmp_path / "docs" / "my-index" / "pages" / "ab" / "abcd" / "00001.png")  # a non-hidden index folder
    files, problems = scan([tmp_path / "docs"], exclude=[tmp_path / "docs" / "my-index", tmp_path / "missing"])
    assert [f.path.name for f in files] == ["a.pdf"] and problems == []
    files, _ = scan([tmp_path / "docs"])
    assert [f.path.name for f in files] == ["a.pdf", "00001.png"]
