"""Visual vectors for pages indexed without an encoder: a later ``docrag index --encoder DIR`` adds them.

The page images come from `indexing.page_images` (a stored full image, the cache, or a fresh rendering from
the source when it still matches the manifest; never a thumbnail). A document whose source changed or vanished
keeps its pages without visual vectors and is reported in one line; the next run tries again.
"""

from __future__ import annotations

from collections.abc import Callable

from .manifest import COMPLETE, DocumentRecord, Manifest
from .page_images import PageImages, PageUnavailable
from .run import Embedder, Events
from .store import StoreSession


def backfill_visual(manifest: Manifest, session: StoreSession, embedder: Embedder, images: PageImages,
                    batch_pages: int, events: Events, more_pages: Callable[[int], None],
                    fail: Callable[[str, str], None]) -> int:
    """Embed the pages of complete documents that lack a visual vector; returns how many were added.

    ``more_pages(n)`` grows the run's page total, ``fail(path, reason)`` reports a document that cannot be done.
    """
    todo: dict[str, DocumentRecord] = {}
    for r in manifest.documents(COMPLETE):
        if r.visual_pages < r.pages:
            todo.setdefault(r.sha256, r)
    if not todo:
        return 0
    added = 0
    events.message(f"adding visual vectors to {len(todo)} document(s) indexed without them")
    for digest, record in todo.items():
        with session.writing() as store:
            missing = store.pages_missing_visual(limit=100_000, doc_hash=digest)
        more_pages(len(missing))
        events.file_started(record.path, len(missing))
        for i in range(0, len(missing), batch_pages):
            chunk = missing[i : i + batch_pages]
            try:
                batch = [images.load(digest, page, rel) for _, page, rel in chunk]
            except PageUnavailable as e:  # those pages keep no visual vector until the source is back
                fail(record.path, f"cannot add visual vectors: {e}")
                break
            vectors = embedder.encode_documents(batch)  # without the lock
            with session.writing() as store:
                store.set_visual(digest, {page: vec for (_, page, _), vec in zip(chunk, vectors, strict=True)})
            added += len(chunk)
            events.pages_done(len(chunk))
        else:
            manifest.set_visual(digest, record.pages, embedder.name)
            events.file_finished(record.path, "visual vectors added")
    return added
