"""Fixtures shared by every test package: real Debian PDFs, the offline processor cache."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
TEST_DATA = ROOT / ".test-data"

# Build the offline tokenizer once per machine, not once per test session.
os.environ.setdefault("DOCRAG_CACHE", str(TEST_DATA / "cache"))
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Tests index thousands of pages; the built-in dense text model (~60 ms a page here) is tested where it is the
# subject (tests/app/test_builtin_text_encoder.py, which builds `Config` itself or clears this), not everywhere.
os.environ.setdefault("DOCRAG_TEXT_ENCODER", "none")


@pytest.fixture(scope="session")
def debian_pdf_dir() -> Path:
    """Real PDFs from Debian documentation packages (installed by `make test-data`)."""
    d = TEST_DATA / "debian"
    if not d.is_dir() or not any(d.iterdir()):
        pytest.fail(f"{d} is empty: run `make test-data` (installs Debian PDF documentation packages)")
    return d


@pytest.fixture(scope="session")
def debian_pdfs(debian_pdf_dir: Path) -> dict[str, Path]:
    """name -> path of each Debian PDF (e.g. 'sample-plain.pdf': 30 pages, 'reference.pdf.gz': 95)."""
    return {p.name: p for p in sorted(debian_pdf_dir.iterdir())}


@pytest.fixture(scope="session")
def processor():
    """The offline Qwen2.5-VL processor at a small resolution (fast tests)."""
    from moca_train.processing import load_processor

    return load_processor(min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
