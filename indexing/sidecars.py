"""What the indexer keeps per page beside the Qdrant points: thumbnails and word boxes, and the word boxes'
back-fill for pages indexed before them.

Both are written by `put` before the manifest counts the pages (the same order as stored page images), and
deleted with the document. A page whose words are unknown (pdf2image gives none) gets no row; the back-fill
(`backfill_words`) fills such pages from the source's text layer on a later run, without rendering anything,
when the source still has the content hash the manifest recorded. Pages whose text came from OCR are left to
their next OCR (the engine's words are what their boxes must come from).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

from .extract import ExtractedPage
from .manifest import COMPLETE, Manifest
from .ocr import SOURCE_OCR, PageText
from .scan import file_kind, sha256_file
from .store import StoreSession
from .thumbnails import ThumbnailStore
from .words import WordStore, encode_words

WORDS_META = "word_boxes"  # manifest meta: "complete" once every layer page has its row (the back-fill is done)


class PageSidecars:
    """The thumbnail and word-box stores of one indexing run."""

    def __init__(self, index_dir: Path, thumbnails: bool) -> None:
        self.thumbs = ThumbnailStore(index_dir, create=thumbnails)
        self.words = WordStore(index_dir)
        self.pages_without_words = 0

    def put(self, digest: str, pages: Sequence[ExtractedPage], texts: Sequence[PageText]) -> None:
        self.thumbs.put(digest, [(p.number, p.thumbnail) for p in pages if p.thumbnail])
        rows = []
        for p, t in zip(pages, texts, strict=True):
            if t.source == SOURCE_OCR:
                data = encode_words(t.text, t.words) if t.words is not None else None
            else:
                data = p.words
            if data is None:
                self.pages_without_words += 1
            else:
                rows.append((p.number, data))
        self.words.put(digest, rows)

    def delete_document(self, digest: str) -> None:
        self.thumbs.delete_document(digest)
        self.words.delete_document(digest)

    def close(self) -> None:
        self.thumbs.close()
        self.words.close()


def backfill_words(manifest: Manifest, session: StoreSession, words: WordStore,
                   fail: Callable[[str, str], None]) -> int:
    """Give the text-layer pages of complete documents that have no word-box row their boxes; returns pages done.

    Runs once per index (then `WORDS_META` says so) and again after a run stored pages without words.
    """
    from .render.mupdf import open_pdf_pages

    if manifest.get_meta(WORDS_META) == COMPLETE:
        return 0
    added, left = 0, False
    seen: set[str] = set()
    for record in manifest.documents(COMPLETE):
        if record.sha256 in seen:
            continue
        seen.add(record.sha256)
        have = words.pages(record.sha256)
        if len(have) >= record.pages:
            continue
        with session.writing() as store:
            texts = store.page_texts(record.sha256)
        todo = {page: text for page, text, source in texts if page not in have and source != SOURCE_OCR}
        if not todo:
            continue
        path = Path(record.path)
        if file_kind(path) != "pdf":
            continue  # an image file has no text layer: its words come from OCR
        try:
            same = path.is_file() and sha256_file(path) == record.sha256
        except OSError:
            same = False
        if not same:  # never boxes from other content: the pages keep none until the source is back
            fail(record.path, "no word boxes for its pages: the source changed or is missing since it was indexed")
            left = True
            continue
        rows = [(page, encode_words(text, page_words)) for page, text, page_words in open_pdf_pages(path, todo)]
        words.put(record.sha256, rows)
        added += len(rows)
    if not left:
        manifest.set_meta(WORDS_META, COMPLETE)
    return added
