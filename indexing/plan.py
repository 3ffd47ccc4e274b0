"""Planning an indexing run: which scanned files need work, and how many pages the run will render.

Done for every file before the first page renders, so that progress (`Events.pages_total`) covers the whole
run from the start: unchanged files are recognised by size + mtime (then by content hash, when only the mtime
moved), and the pages of the rest are counted with a cheap open (PDFs and images) or estimated (``.pdf.gz``:
counting would inflate it a second time; the estimate is corrected when the file is opened for indexing).
"""

from __future__ import annotations

from dataclasses import dataclass

from .manifest import COMPLETE, PENDING, DocumentRecord, Manifest
from .render import Renderer
from .scan import SourceFile, sha256_file

# Compressed bytes per page assumed for a .pdf.gz when the run has no plain PDF to learn the ratio from.
GZ_BYTES_PER_PAGE = 8_000


@dataclass
class Work:
    """A file that needs (re)indexing: its content hash, its manifest record, the pages it should render."""

    src: SourceFile
    digest: str
    record: DocumentRecord | None
    expected_pages: int = 0


def needs_work(src: SourceFile, manifest: Manifest) -> Work | None:
    """None when the file is indexed as it is (a touched file's new mtime is recorded); else its `Work`.

    Raises OSError when the file cannot be read for hashing.
    """
    path = str(src.path)
    record = manifest.get(path)
    if record and record.status == COMPLETE and record.size == src.size and record.mtime_ns == src.mtime_ns:
        return None
    digest = sha256_file(src.path)
    if record and record.sha256 == digest and record.status == COMPLETE:
        manifest.touch(path, src.size, src.mtime_ns)  # touched, same content
        return None
    return Work(src, digest, record)


def shared_with(work: Work, manifest: Manifest) -> DocumentRecord | None:
    """A complete record of the same content under another path (its pages are shared, nothing renders)."""
    twin = manifest.complete_with_hash(work.digest)
    return twin if twin is not None and twin.path != str(work.src.path) else None


def estimate_pages(work: list[Work], manifest: Manifest, renderer: Renderer) -> int:
    """Fill each `Work.expected_pages` and return the total; copies of one content count once."""
    seen: set[str] = set()
    gz: list[Work] = []
    plain_bytes = plain_pages = 0
    for w in work:
        if w.digest in seen or shared_with(w, manifest) is not None:
            continue
        seen.add(w.digest)
        rec = w.record
        if rec and rec.sha256 == w.digest and rec.status == PENDING and rec.total_pages:
            w.expected_pages = max(0, rec.total_pages - rec.next_page + 1)  # an interrupted run resumes
        elif w.src.path.name.lower().endswith(".gz"):
            gz.append(w)
        else:
            try:
                w.expected_pages = renderer.page_count(w.src.path)
            except Exception:  # a bad file: reported when it is indexed
                continue
            if w.src.kind == "pdf":
                plain_bytes += w.src.size
                plain_pages += w.expected_pages
    per_page = plain_bytes / plain_pages if plain_pages else GZ_BYTES_PER_PAGE
    for w in gz:
        w.expected_pages = max(1, round(w.src.size / per_page))
    return sum(w.expected_pages for w in work)
