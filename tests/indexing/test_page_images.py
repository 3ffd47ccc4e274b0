"""page_store settings, render workers, and page images on demand (indexing.page_images), on real Debian PDFs."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from PIL import Image
from test_pipeline import HistogramEmbedder

from indexing.manifest import Manifest
from indexing.page_images import PageImages, PageUnavailable
from indexing.pipeline import Indexer
from indexing.render import THUMBNAIL_SIDE, make_renderer
from indexing.run import IndexOptions
from indexing.store import locked_store
from indexing.thumbnails import ThumbnailStore


@pytest.fixture
def pdf(tmp_path: Path, debian_pdfs: dict[str, Path]) -> Path:
    src = tmp_path / "docs" / "sample-plain.pdf"
    src.parent.mkdir()
    shutil.copy(debian_pdfs["sample-plain.pdf"], src)
    return src


def _index(idx: Path, docs: Path, **opts) -> None:
    report = Indexer(idx, None, IndexOptions(dpi=72, **opts)).sync([docs])
    assert report.failed == 0 and report.pages > 0, report.problems


def _hash_and_pages(idx: Path) -> tuple[str, int]:
    with Manifest(idx) as m:
        (rec,) = list(m.documents())
    return rec.sha256, rec.pages


@pytest.mark.parametrize("store", ["none", "thumbnail", "full"])
def test_each_page_store_keeps_what_it_says_and_every_page_has_an_image(tmp_path: Path, pdf: Path, store: str):
    idx = tmp_path / "idx"
    _index(idx, pdf.parent, page_store=store, workers=0)
    digest, pages = _hash_and_pages(idx)
    with ThumbnailStore(idx, create=False) as thumbs:
        assert thumbs.count() == (pages if store == "thumbnail" else 0)
    assert (idx / "pages").is_dir() == (store == "full")
    images = PageImages(idx)
    full = images.full(digest, 1)
    with Image.open(full) as im, make_renderer(dpi=72).open(pdf) as doc:
        expected = next(iter(doc.render([1]))).image.size
        assert im.size == expected  # at the index's dpi, not a thumbnail
    with Image.open(images.thumbnail(digest, pages)) as im:
        assert max(im.size) <= THUMBNAIL_SIDE


def test_workers_give_the_same_pages_in_the_same_order_as_one_process(tmp_path: Path, pdf: Path):
    runs = {}
    for workers in (0, 2):
        idx = tmp_path / f"idx{workers}"
        _index(idx, pdf.parent, workers=workers, batch_pages=2)
        with locked_store(idx, None) as store:
            runs[workers] = sorted((int(r["page"]), r["text"]) for r in store._scroll(None, 10_000, ["page", "text"]))
        with Manifest(idx) as m:
            (rec,) = list(m.documents())
        assert rec.status == "complete" and rec.next_page == rec.total_pages + 1
    assert runs[0] == runs[2] and len(runs[0]) > 1


def test_a_changed_source_is_never_rendered_the_stored_thumbnail_is_shown(tmp_path: Path, pdf: Path):
    idx = tmp_path / "idx"
    _index(idx, pdf.parent, workers=0)
    digest, _ = _hash_and_pages(idx)
    pdf.write_bytes(pdf.read_bytes() + b"\n% edited\n")  # other content, same pages
    shown = PageImages(idx).full(digest, 1)
    with Image.open(shown) as im:
        assert max(im.size) <= THUMBNAIL_SIDE  # the stored thumbnail, not a fresh rendering of other content
    with pytest.raises(PageUnavailable, match=r"^source changed since indexing: .*sample-plain\.pdf$"):
        PageImages(idx).load(digest, 1)


def test_without_a_stored_image_a_changed_or_missing_source_is_one_line(tmp_path: Path, pdf: Path):
    idx = tmp_path / "idx"
    _index(idx, pdf.parent, page_store="none", workers=0)
    digest, _ = _hash_and_pages(idx)
    pdf.write_bytes(pdf.read_bytes() + b"\n% edited\n")
    with pytest.raises(PageUnavailable, match="^source changed since indexing: "):
        PageImages(idx).full(digest, 1)
    pdf.unlink()
    with pytest.raises(PageUnavailable, match=r"^source missing: .*sample-plain\.pdf$") as e:
        PageImages(idx).full(digest, 1)
    assert "\n" not in str(e.value)


def test_a_touched_source_with_the_same_content_still_renders(tmp_path: Path, pdf: Path):
    idx = tmp_path / "idx"
    _index(idx, pdf.parent, page_store="none", workers=0)
    digest, _ = _hash_and_pages(idx)
    pdf.touch()  # mtime moves, the bytes do not: the hash check lets it render
    assert PageImages(idx).full(digest, 1).is_file()


def test_the_cache_stays_under_its_cap_least_recently_used_first(tmp_path: Path, pdf: Path):
    idx = tmp_path / "idx"
    _index(idx, pdf.parent, page_store="none", workers=0)
    digest, pages = _hash_and_pages(idx)
    assert pages >= 3
    one = PageImages(idx).full(digest, 1).stat().st_size
    shutil.rmtree(idx / "cache")
    images = PageImages(idx, cache_bytes=int(one * 2.5))
    first = images.full(digest, 1)
    images.full(digest, 2)
    images.full(digest, 1)  # used again: now page 2 is the oldest
    images.full(digest, 3)
    assert first.is_file() and not images._cache_path("pages", digest, 2).is_file()
    assert images.cache_bytes_used() <= images.cache_bytes + max(f.stat().st_size for f in [first])


def test_deleting_a_document_removes_its_thumbnails_and_cache(tmp_path: Path, pdf: Path):
    idx = tmp_path / "idx"
    _index(idx, pdf.parent, workers=0)
    digest, _ = _hash_and_pages(idx)
    PageImages(idx).full(digest, 1)
    Indexer(idx, None, IndexOptions(dpi=72)).delete(pdf)
    with ThumbnailStore(idx, create=False) as thumbs:
        assert thumbs.count() == 0
    assert not (idx / "cache" / "pages" / digest[:2] / digest).exists()


class SizeRecordingEmbedder(HistogramEmbedder):
    """The histogram embedder, noting the size of each image it is given."""

    def __init__(self) -> None:
        super().__init__()
        self.sizes: set[tuple[int, int]] = set()

    def encode_documents(self, images):
        self.sizes |= {im.size for im in images}
        return super().encode_documents(images)


def test_a_text_only_index_gets_visual_vectors_from_the_sources_and_a_changed_one_is_skipped(
        tmp_path: Path, pdf: Path, debian_pdfs: dict[str, Path]):
    other = tmp_path / "other" / "sample-amc.pdf"
    other.parent.mkdir()
    shutil.copy(debian_pdfs["sample-amc.pdf"], other)
    idx = tmp_path / "idx"
    _index(idx, pdf.parent, workers=0)  # the default page_store: thumbnails only
    _index(idx, other.parent, workers=0)
    other.write_bytes(other.read_bytes() + b"\n% edited\n")
    embedder = SizeRecordingEmbedder()
    report = Indexer(idx, embedder, IndexOptions(dpi=72, workers=0)).sync([pdf.parent])
    _, pages = next((r.sha256, r.pages) for r in _records(idx) if r.path == str(pdf))
    assert report.visual_added == embedder.pages == pages
    with make_renderer(dpi=72).open(pdf) as doc:
        assert next(iter(doc.render([1]))).image.size in embedder.sizes  # rendered at the index dpi
    assert all(max(s) > THUMBNAIL_SIDE for s in embedder.sizes)  # never a thumbnail
    assert report.problems == [(str(other), f"cannot add visual vectors: source changed since indexing: {other}")]
    with locked_store(idx, None) as store:
        assert store.count_with_visual() == pages
    assert not (idx / "pages").exists()


def _records(idx: Path):
    with Manifest(idx) as m:
        return list(m.documents())
