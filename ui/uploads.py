"""Uploads: accepted by content (magic bytes, not the name), size-limited, stored under the index folder
with a sanitised name, so that no upload can land anywhere else or pass for another type.

The stored name's extension comes from the detected type: an executable renamed `x.pdf` is refused, a PDF
named `report.exe` is stored as `report.pdf`.
"""

from __future__ import annotations

import gzip
import hashlib
import re
import shutil
import unicodedata
from dataclasses import dataclass
from pathlib import Path

UPLOADS_DIR = "uploads"
MAX_NAME = 100

# (extension, test on the first bytes). Only the types the indexer reads (indexing.scan.SUPPORTED_SUFFIXES).
_SIGNATURES: tuple[tuple[str, object], ...] = (
    (".pdf", lambda b: b"%PDF-" in b[:1024]),
    (".png", lambda b: b.startswith(b"\x89PNG\r\n\x1a\n")),
    (".jpg", lambda b: b.startswith(b"\xff\xd8\xff")),
    (".webp", lambda b: b[:4] == b"RIFF" and b[8:12] == b"WEBP"),
    (".tiff", lambda b: b[:4] in (b"II*\x00", b"MM\x00*")),
)


class UploadRefused(ValueError):
    """One line: the file's (original) name and why it was refused."""


@dataclass(frozen=True)
class StoredUpload:
    original_name: str
    path: Path
    kind: str  # the detected extension: .pdf, .pdf.gz, .png, ...
    size: int


def detect_type(path: Path) -> str | None:
    """The file's type by content (an extension from `_SIGNATURES`, or `.pdf.gz`), None when not accepted."""
    with open(path, "rb") as f:
        head = f.read(1024)
    if head.startswith(b"\x1f\x8b"):  # gzip: accepted only around a PDF
        try:
            with gzip.open(path, "rb") as g:
                inner = g.read(1024)
        except (OSError, EOFError):
            return None
        return ".pdf.gz" if b"%PDF-" in inner else None
    for ext, test in _SIGNATURES:
        if test(head):  # type: ignore[operator]
            return ext
    return None


def sanitise_name(name: str, kind: str) -> str:
    """A safe file name: the last path component only, ASCII letters/digits/`._-`, no leading dot, bounded
    length, ending with the detected type's extension."""
    base = re.split(r"[\\/]", name or "")[-1]
    base = unicodedata.normalize("NFKD", base).encode("ascii", "ignore").decode("ascii")
    lowered = base.lower()
    for ext in (".pdf.gz", ".pdf", ".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff", ".gz"):
        if lowered.endswith(ext):
            base = base[: -len(ext)]
            break
    stem = re.sub(r"[^A-Za-z0-9._-]+", "_", base).strip("._-")[: MAX_NAME]
    return (stem or "upload") + kind


def store_upload(src: Path | str, original_name: str, index_dir: Path, max_bytes: int) -> StoredUpload:
    """Check `src` (a file the web server received) and copy it to `index_dir/uploads/<safe name>`.

    Raises `UploadRefused` naming the file and the reason. Same name with other content gets a short
    content-hash suffix, so an upload never overwrites a different document.
    """
    src = Path(src)
    shown = re.split(r"[\\/]", original_name or src.name)[-1] or "upload"
    try:
        size = src.stat().st_size
    except OSError as e:
        raise UploadRefused(f"{shown}: cannot read the upload ({e.strerror})") from None
    if size > max_bytes:
        raise UploadRefused(f"{shown}: {size / 2**20:.1f} MB is over the upload limit of {max_bytes / 2**20:g} MB")
    if size == 0:
        raise UploadRefused(f"{shown}: empty file")
    kind = detect_type(src)
    if kind is None:
        raise UploadRefused(f"{shown}: not a PDF or an image (PNG, JPEG, WebP, TIFF) by its content")
    folder = (index_dir / UPLOADS_DIR).resolve()
    folder.mkdir(parents=True, exist_ok=True)
    name = sanitise_name(original_name or src.name, kind)
    dest = folder / name
    digest = _sha256(src)
    if dest.exists() and _sha256(dest) != digest:
        dest = folder / (name[: -len(kind)] + "-" + digest[:8] + kind)
    if dest.resolve().parent != folder:  # belt and braces: sanitise_name cannot produce this
        raise UploadRefused(f"{shown}: unsafe file name")
    if not dest.exists():
        tmp = dest.with_name(dest.name + ".part")
        shutil.copyfile(src, tmp)
        tmp.replace(dest)
    return StoredUpload(shown, dest, kind, size)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()
