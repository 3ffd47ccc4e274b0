"""Real bad inputs, written into a folder, for renderer and pipeline tests (a helper module, not tests).

Every function writes one file (or link, or folder) into `folder` and returns its path. `BAD_DOCUMENTS`
maps a name to (writer, the start of the `DocumentError.reason` both renderers give); the writers that
need a real PDF to damage take it as `source`.
"""

from __future__ import annotations

import gzip
import os
import random
import shutil
from collections.abc import Callable
from pathlib import Path

import pymupdf

NON_ASCII_NAME = "Bericht über Äpfel 2024.pdf"
NON_ASCII_PAGES = ("Quartalsbericht über Äpfel und Birnen 2024", "Zweite Seite: Obstbäume in Größe")
ENCRYPTED_SECRET = "Geheimnis hinter Passwort"


def build_pdf(objects: list[bytes]) -> bytes:
    """A PDF from raw object bodies (object i+1 = objects[i], object 1 the catalog), with a correct xref."""
    out = bytearray(b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for number, body in enumerate(objects, 1):
        offsets.append(len(out))
        out += b"%d 0 obj\n%s\nendobj\n" % (number, body)
    xref = len(out)
    out += b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1)
    for off in offsets:
        out += b"%010d 00000 n \n" % off
    out += b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref)
    return bytes(out)


def _stream(data: bytes) -> bytes:
    return b"<< /Length %d >>\nstream\n%s\nendstream" % (len(data), data)


def text_pdf(path: Path, pages: tuple[str, ...] | list[str], size: tuple[float, float] = (595, 842)) -> Path:
    """A valid PDF with one line of `pages[i]` on page i (PyMuPDF-generated, with a text layer)."""
    doc = pymupdf.open()
    for text in pages:
        page = doc.new_page(width=size[0], height=size[1])
        page.insert_text((72, 100), text, fontsize=14)
        page.draw_rect(pymupdf.Rect(60, 80, size[0] - 60, 120), color=(0, 0, 0), width=1)
    doc.save(path)
    doc.close()
    return path


def encrypted_pdf(folder: Path) -> Path:
    """AES-256 with a user password: nothing can be read without it."""
    path = folder / "encrypted.pdf"
    doc = pymupdf.open()
    doc.new_page().insert_text((72, 100), ENCRYPTED_SECRET)
    doc.save(path, encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="user-secret", owner_pw="owner-secret")
    doc.close()
    return path


def corrupt_pdf(folder: Path) -> Path:
    """A PDF header followed by random bytes (seeded: the same file every run)."""
    path = folder / "corrupt.pdf"
    path.write_bytes(b"%PDF-1.7\n" + random.Random(1234).randbytes(8000))
    return path


def truncated_pdf(folder: Path, source: Path) -> Path:
    """The first 30% of a real PDF: what an interrupted download leaves."""
    data = source.read_bytes()
    path = folder / "truncated.pdf"
    path.write_bytes(data[: int(len(data) * 0.3)])
    return path


def zero_page_pdf(folder: Path) -> Path:
    """A well-formed PDF whose page tree is empty (/Kids [] /Count 0)."""
    path = folder / "zero-pages.pdf"
    path.write_bytes(build_pdf([b"<< /Type /Catalog /Pages 2 0 R >>", b"<< /Type /Pages /Kids [] /Count 0 >>"]))
    return path


def text_file_named_pdf(folder: Path) -> Path:
    path = folder / "x.pdf"
    path.write_text("This is a plain text file that only pretends to be a PDF.\n" * 5)
    return path


def html_named_pdf(folder: Path) -> Path:
    """What a failed download of a PDF link often saves."""
    path = folder / "download.pdf"
    path.write_text("<!DOCTYPE html>\n<html><body>403 Forbidden</body></html>\n")
    return path


def empty_file_pdf(folder: Path) -> Path:
    path = folder / "empty.pdf"
    path.write_bytes(b"")
    return path


def not_gzip_pdf_gz(folder: Path) -> Path:
    path = folder / "plain-bytes.pdf.gz"
    path.write_bytes(b"%PDF-1.7\nnot gzip at all\n")
    return path


def truncated_pdf_gz(folder: Path, source: Path) -> Path:
    """Half of a gzipped real PDF."""
    data = gzip.compress(source.read_bytes())
    path = folder / "truncated.pdf.gz"
    path.write_bytes(data[: len(data) // 2])
    return path


def directory_named_pdf(folder: Path) -> Path:
    path = folder / "folder.pdf"
    path.mkdir()
    return path


def broken_symlink_pdf(folder: Path) -> Path:
    path = folder / "dangling.pdf"
    path.symlink_to(folder / "does-not-exist.pdf")
    return path


def non_ascii_named_pdf(folder: Path) -> Path:
    """A valid 2-page PDF whose name has spaces and umlauts and whose pages carry distinctive German text."""
    return text_pdf(folder / NON_ASCII_NAME, NON_ASCII_PAGES)


def unreadable_pdf(folder: Path) -> Path:
    """A valid PDF with mode 000. As root it is still readable: callers must check `is_readable`."""
    path = text_pdf(folder / "unreadable.pdf", ["You should not be able to read this"])
    path.chmod(0)
    return path


def is_readable(path: Path) -> bool:
    """Whether this process can actually open the file (root ignores mode bits)."""
    try:
        with open(path, "rb"):
            return True
    except OSError:
        return False


def page_tree_cycle_pdf(folder: Path) -> Path:
    """Two pages listed, the second a loop back to the page tree: page 1 renders, page 2 cannot."""
    font = b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>"
    content = _stream(b"BT /F1 24 Tf 72 700 Td (First page survives) Tj ET")
    page = (
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R"
        b" /Resources << /Font << /F1 5 0 R >> >> >>"
    )
    path = folder / "page-tree-cycle.pdf"
    path.write_bytes(
        build_pdf(
            [
                b"<< /Type /Catalog /Pages 2 0 R >>",
                b"<< /Type /Pages /Kids [3 0 R 2 0 R] /Count 2 >>",
                page,
                content,
                font,
            ]
        )
    )
    return path


def poster_pdf(folder: Path, side_pt: float = 5000) -> Path:
    """One huge square page (5000 pt ~ 1.76 m): 100 Mpx at 144 dpi if nothing caps it."""
    path = folder / "poster.pdf"
    doc = pymupdf.open()
    page = doc.new_page(width=side_pt, height=side_pt)
    page.insert_text((100, 300), "Poster headline", fontsize=200)
    page.draw_rect(pymupdf.Rect(50, 50, side_pt - 50, side_pt - 50), color=(1, 0, 0), width=20)
    doc.save(path)
    doc.close()
    return path


def gzipped(source: Path, folder: Path) -> Path:
    """A .pdf.gz copy of a PDF."""
    path = folder / (source.name + ".gz")
    with open(source, "rb") as src, gzip.open(path, "wb") as dst:
        shutil.copyfileobj(src, dst)
    return path


Writer = Callable[[Path, Path], Path]

# name -> (writer(folder, source_pdf) -> path, how DocumentError.reason starts, the same for both renderers)
BAD_DOCUMENTS: dict[str, tuple[Writer, str]] = {
    "encrypted": (lambda d, s: encrypted_pdf(d), "encrypted PDF (password required)"),
    "corrupt": (lambda d, s: corrupt_pdf(d), "corrupt or truncated PDF: "),
    "truncated": (truncated_pdf, "corrupt or truncated PDF: "),
    "zero_pages": (lambda d, s: zero_page_pdf(d), "PDF has no pages"),
    "text_named_pdf": (lambda d, s: text_file_named_pdf(d), "not a PDF (file starts with 'This is a plain"),
    "html_named_pdf": (lambda d, s: html_named_pdf(d), "not a PDF (file starts with '<!DOCTYPE html>"),
    "empty_file": (lambda d, s: empty_file_pdf(d), "empty file (0 bytes)"),
    "not_gzip": (lambda d, s: not_gzip_pdf_gz(d), "not a gzip file"),
    "truncated_gz": (truncated_pdf_gz, "truncated gzip file"),
    "directory": (lambda d, s: directory_named_pdf(d), "cannot read file: Is a directory"),
    "broken_symlink": (lambda d, s: broken_symlink_pdf(d), "cannot read file: No such file or directory"),
}


def write_bad_documents(folder: Path, source: Path) -> dict[str, tuple[Path, str]]:
    """Write every BAD_DOCUMENTS entry into its own sub-folder: name -> (path, expected reason prefix)."""
    out = {}
    for name, (writer, reason) in BAD_DOCUMENTS.items():
        sub = folder / name
        sub.mkdir(parents=True, exist_ok=True)
        out[name] = (writer(sub, source), reason)
    return out


def make_fifo_pdf(folder: Path) -> Path | None:
    """A named pipe called pipe.pdf (reading it would block forever); None where FIFOs do not exist."""
    if not hasattr(os, "mkfifo"):
        return None
    path = folder / "pipe.pdf"
    os.mkfifo(path)
    return path


# ---- a render worker that crashes like MuPDF on a hostile file --------------------------------------------
KILLS_WORKER = "kills-the-renderer"


def render_or_crash(settings, chunk):
    """A render worker's task (`RenderPool(task=...)`): dies of SIGSEGV on a file whose name holds
    `KILLS_WORKER`, as a MuPDF crash would; renders any other file as the real worker does."""
    import signal

    from indexing.extract import extract_chunk

    if KILLS_WORKER in Path(chunk.path).name:
        os.kill(os.getpid(), signal.SIGSEGV)
    return extract_chunk(settings, chunk)
