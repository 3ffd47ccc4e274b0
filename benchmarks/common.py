"""Shared bits of the benchmark scripts: page images, PDFs, tables, JSON results, the device's name.

torch is imported where it is used, so scripts whose children only render or index (index.py, render_floor.py)
can import this module without its ~200 MB of RSS."""

from __future__ import annotations

import gzip
import json
import platform
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
PEAK_BF16_FLOPS = 790e12  # measured bf16 matmul ceiling on the H100/H200 machines


def device_name(cpu: bool = False) -> str:
    """The GPU's name, or the CPU's (also with ``cpu``: a run kept on the CPU beside a GPU)."""
    import torch

    if torch.cuda.is_available() and not cpu:
        return torch.cuda.get_device_name(0)
    return f"CPU ({platform.processor() or platform.machine()}, {torch.get_num_threads()} threads)"


def open_pdf(path: Path | str):
    """A PyMuPDF document from a PDF, or from a gzipped one (Debian ships some manuals as .pdf.gz)."""
    import pymupdf

    if str(path).endswith(".gz"):
        with gzip.open(path, "rb") as f:
            return pymupdf.open(stream=f.read(), filetype="pdf")
    return pymupdf.open(path)


def a4_pages(n: int, dpi: int = 144) -> list:
    """n real-looking A4 pages at ``dpi``: the example PDFs, then Debian PDFs if present, rendered."""
    import pymupdf
    from PIL import Image

    sources = sorted((ROOT / "examples").glob("*.pdf")) + sorted((ROOT / ".test-data" / "debian").glob("*.pdf"))
    pages = []
    for src in sources:
        with pymupdf.open(src) as doc:
            for page in doc:
                pix = page.get_pixmap(dpi=dpi)
                pages.append(Image.frombytes("RGB", (pix.width, pix.height), pix.samples))
                if len(pages) == n:
                    return pages
    while len(pages) < n:  # too few sources: repeat what we have
        pages.append(pages[len(pages) % max(1, len(sources))].copy())
    return pages


def print_table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max(len(c), *(len(_fmt(r.get(c))) for r in rows)) for c in columns}
    print("  ".join(c.ljust(widths[c]) for c in columns))
    print("  ".join("-" * widths[c] for c in columns))
    for r in rows:
        print("  ".join(_fmt(r.get(c)).ljust(widths[c]) for c in columns))


def _fmt(v) -> str:
    if isinstance(v, float):
        return f"{v:.3g}" if abs(v) < 100 else f"{v:.0f}"
    return "" if v is None else str(v)


def write_json(name: str, payload: dict) -> Path:
    return write_json_to(RESULTS / f"{name}.json", payload)


def write_json_to(path: Path | str, payload: dict, quiet: bool = False) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")  # a reader (or a kill mid-write) never sees half a file
    tmp.write_text(json.dumps(payload, indent=2) + "\n")
    tmp.replace(path)
    if not quiet:
        print(f"\nwrote {path}")
    return path
