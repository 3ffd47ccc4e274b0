"""PageStore: layout, formats, atomic writes (even under kill -9), deletion and orphan listing."""

from __future__ import annotations

import hashlib
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from PIL import Image, ImageChops

from indexing.pages import PageStore
from indexing.render import PyMuPDFRenderer

H1 = hashlib.sha256(b"document one").hexdigest()
H2 = hashlib.sha256(b"document two").hexdigest()
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def page_image(debian_pdfs) -> Image.Image:
    (page,) = PyMuPDFRenderer(dpi=72).render(debian_pdfs["sample-plain.pdf"], pages=[1])
    return page.image


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


@pytest.mark.parametrize("fmt", ["webp", "png"])
def test_save_layout_and_round_trip(tmp_path, page_image, fmt):
    store = PageStore(tmp_path, fmt=fmt)
    rel = store.save(H1, 7, page_image)
    assert rel == f"pages/{H1[:2]}/{H1}/00007.{fmt}"
    assert _files(tmp_path) == [rel]  # no temporary file left behind
    with Image.open(store.path(rel)) as saved:
        assert saved.format == fmt.upper() and saved.size == page_image.size
        diff = ImageChops.difference(saved.convert("RGB"), page_image)
        if fmt == "png":
            assert diff.getbbox() is None  # lossless
        else:
            assert max(hi for _lo, hi in diff.getextrema()) < 160  # lossy but the same page
    assert store.path(rel) == tmp_path / rel


def test_jpeg_format_is_written_by_pillow(tmp_path, page_image):
    store = PageStore(tmp_path, fmt="jpg")
    assert store.fmt == "jpeg"
    rel = store.save(H1, 3, page_image)
    assert rel == f"pages/{H1[:2]}/{H1}/00003.jpg" and store.exists(H1, 3) and store.pages(H1) == [3]
    with Image.open(store.path(rel)) as saved:
        assert saved.format == "JPEG" and saved.size == page_image.size


def test_webp_method_trades_size_for_time(tmp_path, page_image):
    fast = PageStore(tmp_path / "m0", webp_method=0)
    slow = PageStore(tmp_path / "m4", webp_method=4)
    assert PageStore(tmp_path).webp_method == 0  # the default: the fastest effort
    fast_bytes = fast.path(fast.save(H1, 1, page_image)).stat().st_size
    assert fast_bytes > slow.path(slow.save(H1, 1, page_image)).stat().st_size


def test_webp_is_smaller_than_png(tmp_path, page_image):
    webp = PageStore(tmp_path / "w", fmt="webp").save(H1, 1, page_image)
    png = PageStore(tmp_path / "p", fmt="png").save(H1, 1, page_image)
    assert (tmp_path / "w" / webp).stat().st_size < (tmp_path / "p" / png).stat().st_size


def test_quality_changes_webp_size(tmp_path, page_image):
    low = PageStore(tmp_path / "lo", quality=20)
    high = PageStore(tmp_path / "hi", quality=95)
    assert low.path(low.save(H1, 1, page_image)).stat().st_size < high.path(high.save(H1, 1, page_image)).stat().st_size


def test_overwrite_replaces_the_file(tmp_path):
    store = PageStore(tmp_path, fmt="png")
    store.save(H1, 1, Image.new("RGB", (30, 20), "red"))
    rel = store.save(H1, 1, Image.new("RGB", (40, 10), "blue"))
    with Image.open(store.path(rel)) as im:
        assert im.size == (40, 10) and im.getpixel((0, 0)) == (0, 0, 255)
    assert len(_files(tmp_path)) == 1


def test_non_rgb_images_are_stored(tmp_path):
    store = PageStore(tmp_path)
    rel = store.save(H1, 1, Image.new("RGBA", (10, 10), (0, 255, 0, 128)))
    with Image.open(store.path(rel)) as im:
        assert im.mode == "RGB"


def test_files_get_normal_permissions(tmp_path, page_image):
    old = os.umask(0o022)
    try:
        rel = PageStore(tmp_path).save(H1, 1, page_image)
    finally:
        os.umask(old)
    assert (tmp_path / rel).stat().st_mode & 0o777 == 0o644  # readable by a web server, unlike mkstemp's 0600


def test_exists_and_pages(tmp_path, page_image):
    store = PageStore(tmp_path)
    assert not store.exists(H1, 1) and store.pages(H1) == []
    for n in (3, 1, 12):
        store.save(H1, n, page_image)
    assert store.exists(H1, 1) and store.exists(H1, 12) and not store.exists(H1, 2) and not store.exists(H2, 1)
    assert store.pages(H1) == [1, 3, 12]
    assert not PageStore(tmp_path, fmt="png").exists(H1, 1)  # exists() is per format


def test_delete_document(tmp_path, page_image):
    store = PageStore(tmp_path)
    for n in (1, 2, 3):
        store.save(H1, n, page_image)
    PageStore(tmp_path, fmt="png").save(H1, 4, page_image)
    store.save(H2, 1, page_image)
    assert store.document_hashes() == {H1, H2}
    used = store.bytes_used()
    assert used == sum(p.stat().st_size for p in tmp_path.rglob("*") if p.is_file())

    assert store.delete_document(H1) == 4  # every format
    assert not (tmp_path / "pages" / H1[:2]).exists()  # the empty bucket goes too
    assert store.document_hashes() == {H2} and store.exists(H2, 1)
    assert store.bytes_used() < used
    assert store.delete_document(H1) == 0


def test_document_hashes_ignores_strays(tmp_path, page_image):
    store = PageStore(tmp_path)
    assert store.document_hashes() == set() and store.bytes_used() == 0  # nothing yet, no folder
    store.save(H1, 1, page_image)
    (tmp_path / "pages" / "README").write_text("not a document")
    (tmp_path / "pages" / H1[:2] / "not-a-hash").mkdir()
    (tmp_path / "pages" / "zz" / H2).mkdir(parents=True)  # a hash in the wrong bucket
    assert store.document_hashes() == {H1}


@pytest.mark.parametrize("bad", ["../../etc", "ABCDEF0123", "abc", "0123456789abcdef/..", ""])
def test_hashes_must_be_hex(tmp_path, bad):
    with pytest.raises(ValueError, match="document hash"):
        PageStore(tmp_path).relpath(bad, 1)


def test_invalid_arguments(tmp_path):
    store = PageStore(tmp_path)
    with pytest.raises(ValueError, match="page numbers start at 1"):
        store.save(H1, 0, Image.new("RGB", (4, 4)))
    for rel in ["../secret.webp", "/etc/passwd", "other/x.webp", ""]:
        with pytest.raises(ValueError, match="not a page-store path"):
            store.path(rel)
    with pytest.raises(ValueError, match="unknown page image format 'gif'"):
        PageStore(tmp_path, fmt="gif")
    with pytest.raises(ValueError, match="webp_method"):
        PageStore(tmp_path, webp_method=7)
    with pytest.raises(ValueError, match="quality"):
        PageStore(tmp_path, quality=0)
    assert PageStore(tmp_path, fmt=".PNG").fmt == "png"


WRITER = textwrap.dedent(
    """
    import sys
    from PIL import Image
    from indexing.pages import PageStore
    store = PageStore(sys.argv[1], fmt="png")
    noise = Image.effect_noise((1000, 1000), 80).convert("RGB")  # ~0.3 s to encode: kills land mid-write
    n = 0
    while True:
        n += 1
        store.save(sys.argv[2], 1 + n % 3, noise.rotate(n % 360))
        print("saved", flush=True)
    """
)


def test_kill_9_never_leaves_a_half_image(tmp_path):
    """A writer killed mid-write leaves only whole images, plus a hidden .tmp file that is swept."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    store = PageStore(tmp_path, fmt="png")
    stale = 0
    for delay in (0.05, 0.12, 0.2):
        proc = subprocess.Popen([sys.executable, "-c", WRITER, str(tmp_path), H1], stdout=subprocess.PIPE, env=env)
        assert proc.stdout.readline().strip() == b"saved"  # one page is in; the next write has started
        time.sleep(delay)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc.stdout.close()
        assert store.pages(H1)
        for n in store.pages(H1):
            with Image.open(store.path(store.relpath(H1, n))) as im:
                im.load()  # raises on a truncated PNG
                assert im.size == (1000, 1000)
        assert store.document_hashes() == {H1}  # .tmp files are not documents
        stale += store.remove_stale_tmp()
    assert not list(tmp_path.rglob("*.tmp"))
    assert stale >= 1  # the kills did land mid-write, and those writes left no visible page


@pytest.mark.parametrize(("fmt", "limit"), [("webp", 16383), ("jpeg", 65500)])
def test_a_page_taller_than_the_format_allows_is_stored_downscaled(tmp_path, fmt, limit):
    # A long receipt or a strip page: WebP holds at most 16383 px a side, JPEG 65535.
    tall = Image.new("RGB", (40, limit + 5000), "white")
    store = PageStore(tmp_path, fmt=fmt)
    with Image.open(store.path(store.save("ab" * 32, 1, tall))) as im:
        assert max(im.size) <= limit
        assert im.size[0] == round(40 * limit / (limit + 5000))


def test_png_keeps_a_tall_page_whole(tmp_path):
    tall = Image.new("L", (2, 20000), 255)
    store = PageStore(tmp_path, fmt="png")
    with Image.open(store.path(store.save("ab" * 32, 1, tall))) as im:
        assert im.size == (2, 20000)
