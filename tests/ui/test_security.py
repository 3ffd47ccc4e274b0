"""Security of the web UI: uploads by content, size limit, sanitised names under the index folder, files
served only from the page store, authentication, the warning for a non-local address without --auth."""

from __future__ import annotations

import gzip
import shutil
import time
from pathlib import Path

import httpx
import pytest
from gradio_client import Client
from served_app import UPLOAD_MAX_MB, Server

from ui.uploads import UploadRefused, detect_type, sanitise_name, store_upload

ROOT = Path(__file__).resolve().parents[2]
EXECUTABLE = Path("/bin/true")


def _tree(root: Path, skip: Path | None = None) -> set[str]:
    return {str(p.relative_to(root)) for p in root.rglob("*") if skip is None or not p.is_relative_to(skip)}


@pytest.mark.parametrize("name", ["../../../etc/evil.pdf", "..\\..\\evil.pdf", "/abs/evil.pdf", ".hidden.pdf",
                                  "ev il;rm -rf ~.pdf", "\u00e9vil\u202e.pdf", "evil.exe"])
def test_names_are_sanitised_into_the_uploads_folder(tmp_path, debian_pdfs, name):
    idx = tmp_path / "root" / "index"
    idx.mkdir(parents=True)
    src = tmp_path / "incoming.bin"
    shutil.copy(debian_pdfs["sample-plain.pdf"], src)
    before = _tree(tmp_path, skip=idx)
    stored = store_upload(src, name, idx, max_bytes=10 * 2**20)
    assert stored.path.parent == (idx / "uploads").resolve() and stored.path.suffix == ".pdf"
    assert not stored.path.name.startswith(".") and "/" not in stored.path.name and " " not in stored.path.name
    assert _tree(tmp_path, skip=idx) == before  # nothing written outside the index folder


def test_refused_by_content_and_size(tmp_path, debian_pdfs):
    idx = tmp_path / "index"
    exe = tmp_path / "invoice.pdf"
    shutil.copy(EXECUTABLE, exe)
    with pytest.raises(UploadRefused, match=r"^invoice.pdf: not a PDF or an image"):
        store_upload(exe, "invoice.pdf", idx, max_bytes=10 * 2**20)
    gz = tmp_path / "x.pdf.gz"
    gz.write_bytes(gzip.compress(EXECUTABLE.read_bytes()))
    assert detect_type(gz) is None  # gzip is accepted only around a PDF
    big = tmp_path / "big.pdf"
    big.write_bytes(b"%PDF-1.4\n" + b"0" * (2 * 2**20))
    with pytest.raises(UploadRefused, match=r"^big.pdf: 2.0 MB is over the upload limit of 1 MB"):
        store_upload(big, "big.pdf", idx, max_bytes=2**20)
    assert not (idx / "uploads").exists() or not any((idx / "uploads").iterdir())
    misnamed = tmp_path / "scan.jpg"  # named .jpg, a PDF by content: stored as what it is
    misnamed.write_bytes((ROOT / "examples" / "visitors-chart.pdf").read_bytes())
    assert store_upload(misnamed, "scan.jpg", idx, max_bytes=2**20).path.name == "scan.pdf"
    assert sanitise_name("a.pdf.gz", ".pdf.gz") == "a.pdf.gz"


@pytest.mark.parametrize(("fmt", "ext"), [("PNG", ".png"), ("JPEG", ".jpg"), ("WEBP", ".webp"), ("TIFF", ".tiff")])
def test_images_are_accepted_by_content(tmp_path, fmt, ext):
    from PIL import Image

    src = tmp_path / "photo.pdf"  # the name lies; the content decides
    Image.new("RGB", (32, 32), "white").save(src, format=fmt)
    stored = store_upload(src, "photo.pdf", tmp_path / "index", max_bytes=2**20)
    assert stored.kind == ext and stored.path.name == "photo" + ext


def test_same_name_other_content_never_overwrites(tmp_path, debian_pdfs):
    idx = tmp_path / "index"
    a, b = tmp_path / "a", tmp_path / "b"
    shutil.copy(debian_pdfs["sample-plain.pdf"], a)
    shutil.copy(debian_pdfs["sample-amc.pdf"], b)
    first = store_upload(a, "doc.pdf", idx, 10 * 2**20)
    second = store_upload(b, "doc.pdf", idx, 10 * 2**20)
    assert first.path != second.path and first.path.read_bytes() == a.read_bytes()
    assert store_upload(a, "doc.pdf", idx, 10 * 2**20).path == first.path  # same content: same file


def test_server_serves_only_page_images_and_keeps_uploads_inside(served, ui_root):
    idx = served.index_dir
    page = next((idx / "cache").rglob("*.webp"), None) or next((idx / "pages").rglob("*.webp"))
    get = lambda p: httpx.get(f"{served.url}/gradio_api/file={p}", timeout=10, trust_env=False)  # noqa: E731
    assert get(page).status_code == 200
    source_pdf = ui_root / "docs" / "revenue-table.pdf"
    for forbidden in ("/etc/passwd", idx / "manifest.sqlite", ROOT / "README.md", source_pdf):
        assert get(forbidden).status_code in (403, 404), forbidden
    before = _tree(ui_root, skip=idx)
    pdf = (ROOT / "examples" / "revenue-table.pdf").read_bytes()
    r = httpx.post(f"{served.url}/gradio_api/upload", files=[("files", ("../../evil.pdf", pdf, "application/pdf"))],
                   timeout=30, trust_env=False)
    assert r.status_code == 200
    landed = Path(r.json()[0])
    assert landed.resolve().is_relative_to((idx / ".gradio-tmp").resolve()) and landed.name == "evil.pdf"
    oversize = b"%PDF-1.4\n" + b"0" * int(1.5 * UPLOAD_MAX_MB * 2**20)
    r = httpx.post(f"{served.url}/gradio_api/upload", files=[("files", ("big.pdf", oversize, "application/pdf"))],
                   timeout=30, trust_env=False)
    assert r.status_code == 413
    time.sleep(0.5)
    assert not any(p.name == "big.pdf" for p in idx.rglob("*"))
    assert _tree(ui_root, skip=idx) == before  # nothing written outside the index folder


def test_wrong_auth_is_refused(tmp_path):
    idx = tmp_path / "index"
    server = Server(idx, tmp_path / "auth.log", "--auth", "alice:s3cret").wait_ready()
    try:
        assert httpx.get(f"{server.url}/config", timeout=10, trust_env=False).status_code == 401
        bad = httpx.post(f"{server.url}/login", data={"username": "alice", "password": "nope"}, timeout=10,
                         trust_env=False)
        assert bad.status_code in (400, 401)
        with pytest.raises(Exception, match="(?i)login|auth|credential|401"):
            Client(server.url, auth=("alice", "nope"), verbose=False)
        good = Client(server.url, auth=("alice", "s3cret"), verbose=False)
        assert good.predict(api_name="/status")["documents"] == 0
    finally:
        server.stop()
    assert "warning" not in (tmp_path / "auth.log").read_text()


def test_non_local_address_without_auth_warns(tmp_path):
    server = Server(tmp_path / "index", tmp_path / "open.log", "--host", "0.0.0.0")
    try:
        deadline = time.monotonic() + 60
        while "warning:" not in server.log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        server.stop()
    lines = [line for line in server.log.read_text().splitlines() if "warning:" in line]
    assert len(lines) == 1 and "0.0.0.0 without --auth" in lines[0]
