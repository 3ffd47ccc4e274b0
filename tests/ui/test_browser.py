"""The web UI in real headless Chromium (Debian's, driven by Playwright): upload a real Debian PDF, wait for
background indexing, search, open a thumbnail, ask (streamed answer from the LLM test double) and open a
citation. A screenshot is saved to .test-artifacts/ui-browser.png."""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path
from urllib.parse import unquote, urlparse

import numpy as np
import pytest
from gradio_client import Client
from PIL import Image

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
ARTIFACTS = ROOT / ".test-artifacts"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def _served_path(src: str) -> str:
    """The file path behind a Gradio file URL (…/gradio_api/file=/abs/path)."""
    return unquote(urlparse(src).path).split("file=", 1)[-1]


@pytest.mark.slow
def test_upload_search_open_ask_cite(served, llm_double, debian_pdfs, tmp_path):
    if not Path(CHROMIUM).exists():
        pytest.fail("Debian chromium is missing: run scripts/system-deps.sh")
    from playwright.sync_api import expect, sync_playwright

    pdf = tmp_path / "sample-plain.pdf"
    shutil.copy(debian_pdfs["sample-plain.pdf"], pdf)
    outside: list[str] = []
    with sync_playwright() as p:
        # Playwright gives the browser a fresh user-data dir itself (and runs it headless).
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        own = (served.url, "data:", "blob:")
        page.on("request", lambda r: None if r.url.startswith(own) else outside.append(r.url))
        client = Client(served.url, verbose=False)
        docs_before = client.predict(api_name="/status")["documents"]
        page.goto(served.url)
        expect(page.locator("#status")).to_contain_text(f"Documents {docs_before} ", timeout=30_000)

        # Upload: indexed in the background with a progress bar, through the same pipeline as the CLI.
        page.locator("#upload input[type=file]").set_input_files(str(pdf))
        status = page.locator("#index-status")
        expect(status.locator("progress")).to_be_attached(timeout=30_000)
        expect(status).to_contain_text("30/30 pages", timeout=90_000)
        expect(status).to_contain_text("done", timeout=30_000)
        expect(page.locator("#status")).to_contain_text(f"Documents {docs_before + 1} ", timeout=30_000)
        assert (served.index_dir / "uploads" / "sample-plain.pdf").is_file()

        # Search with the text mode and a document filter; the gallery shows document, page and score.
        page.locator("#query textarea").fill("answer sheet")
        page.locator("#mode").get_by_text("text", exact=True).click()
        page.locator("#search-btn").click()
        thumbs = page.locator("#gallery img")
        expect(thumbs.first).to_be_visible(timeout=30_000)
        expect(page.locator("#gallery")).to_contain_text("sample-plain.pdf · p.")
        rows = client.predict("answer sheet", 5, "text", "", api_name="/search")
        assert thumbs.count() == len(rows) == 5

        # A thumbnail opens the full page, served from the index's page store.
        thumbs.nth(0).click()
        view = page.locator("#page-view img")
        expect(view).to_be_visible(timeout=30_000)
        # Rendered on demand into the index's page cache, the matched terms highlighted over it: marker yellow
        # (blue well below red) inside each highlight box, the page's grey elsewhere.
        expect(page.locator("#page-caption")).to_contain_text(f"page {rows[0]['page']}")
        expect(page.locator("#page-caption")).to_contain_text("highlighted")
        assert rows[0]["highlights"]
        with Image.open(_served_path(view.get_attribute("src"))) as shown:
            pixels = np.asarray(shown.convert("RGB"), dtype=float)
        with Image.open(rows[0]["image"]) as raw:
            assert raw.size == shown.size
        h, w = pixels.shape[:2]
        for hl in rows[0]["highlights"]:
            x0, y0, x1, y1 = hl["box"]
            box = pixels[round(y0 * h) : round(y1 * h), round(x0 * w) : round(x1 * w)]
            assert box[..., 0].mean() - box[..., 2].mean() > 40, f"no highlight drawn at {hl}"
        assert abs(pixels[..., 0].mean() - pixels[..., 2].mean()) < 10  # the rest of the page is untouched
        ARTIFACTS.mkdir(exist_ok=True)
        page.locator("#page-view").screenshot(path=str(ARTIFACTS / "ui-highlights.png"))

        # Ask: the answer streams in (the double sends a chunk every 0.6 s), then citations appear.
        asked = len(llm_double.requests)
        page.locator("#ask-btn").click()
        answer = page.locator("#answer")
        expect(answer).to_contain_text("The answer sheet", timeout=30_000)
        partial = answer.inner_text()
        expect(answer).to_contain_text("the cover on [1].", timeout=30_000)
        assert "[1]." not in partial  # seen before the end arrived: streamed, not all at once
        assert len(llm_double.requests) == asked + 1
        sent = llm_double.requests[-1]["messages"][1]["content"]
        assert sum(part["type"] == "image_url" for part in sent) == 5  # the top-k pages, as images
        cites = page.locator("#citations label")
        expect(cites).to_have_count(2, timeout=30_000)
        cited = page.locator("#citations").get_by_text(re.compile(r"^\[2\] "))
        cited.click()
        expect(page.locator("#page-caption")).to_contain_text("(cited [2])", timeout=30_000)
        expect(page.locator("#page-caption")).to_contain_text(f"page {rows[1]['page']}")
        # [2] is the second retrieved page (the same bytes: Gradio may serve a copy of the cached rendering)
        assert Path(_served_path(view.get_attribute("src"))).read_bytes() == Path(rows[1]["image"]).read_bytes()

        # An executable renamed .pdf is refused by its content, with one line.
        fake = tmp_path / "invoice.pdf"
        fake.write_bytes(Path("/bin/true").read_bytes())
        page.locator("#upload input[type=file]").set_input_files(str(fake))
        expect(status).to_contain_text("refused invoice.pdf: not a PDF or an image", timeout=30_000)
        assert not (served.index_dir / "uploads" / "invoice.pdf").exists()
        assert "cannot read" not in status.inner_text()  # the earlier upload is not handed over again

        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "ui-browser.png"), full_page=True)
        time.sleep(0.2)
        browser.close()
    assert not outside, f"the UI reached outside its own server: {outside[:5]}"
