"""What indexing could cost: the PyMuPDF floor per page, step by step, in 1 and N processes (issue #16).

    python benchmarks/render_floor.py              # all Debian PDFs (.test-data/debian), 1 and all-CPU processes
    python benchmarks/render_floor.py --workers 1,2,4

Each step is a plain loop over every page of every PDF, without docrag: what `docrag index` would cost if it did
only that. Steps, each a superset of the one before where it says so:

- ``text``: ``page.get_text()`` only (what `page_store = "none"` with no encoder needs);
- ``thumb``: text + a pixmap at 256 px on the long side + WebP encoding (what `"thumbnail"` adds);
- ``render``: text + a pixmap at 144 dpi (the floor the issue quotes; what an encoder or OCR needs);
- ``full``: render + WebP method 0 encoding of that pixmap (what `"full"`, today's store, adds).

The N-process runs split the pages across a spawn pool, one task per (file, page range), so each worker keeps
its document open, as a parallel indexer would. Prints a table and writes benchmarks/results/render-floor.json
with the bytes per page of each stored form, so the page_store default can be chosen by measurement.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from importlib.metadata import version
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import open_pdf  # noqa: E402
from indexing.cpus import available_cpus

STEPS = ("text", "thumb", "render", "full")
THUMB_PX = 256
DPI = 144
CHUNK = 32  # pages per task: enough to amortise opening the document in the worker


def _work(task: tuple[str, str, int, int]) -> tuple[int, int]:
    """Run one step over pages [start, stop) of one file; returns (pages, stored bytes)."""
    import pymupdf

    step, path, start, stop = task
    stored = 0
    with open_pdf(path) as doc:
        for n in range(start, stop):
            page = doc[n]
            page.get_text()
            if step == "thumb":
                scale = THUMB_PX / max(page.rect.width, page.rect.height)
                pix = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale))
                stored += len(pix.pil_tobytes("WEBP", quality=80, method=0))
            elif step in ("render", "full"):
                pix = page.get_pixmap(dpi=DPI)
                if step == "full":
                    stored += len(pix.pil_tobytes("WEBP", quality=80, method=0))
    return stop - start, stored


def tasks(step: str, paths: list[str]) -> list[tuple[str, str, int, int]]:
    out = []
    for path in paths:
        with open_pdf(path) as doc:
            count = doc.page_count
        out += [(step, path, s, min(s + CHUNK, count)) for s in range(0, count, CHUNK)]
    return out


def measure(step: str, paths: list[str], workers: int) -> dict[str, Any]:
    todo = tasks(step, paths)
    t0 = time.perf_counter()
    if workers == 1:
        results = [_work(t) for t in todo]
    else:
        import multiprocessing as mp

        # spawn, as the indexer must (a fork would inherit the index's flock); the pool start is timed too.
        with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
            results = list(pool.map(_work, todo))
    seconds = time.perf_counter() - t0
    pages = sum(p for p, _ in results)
    stored = sum(b for _, b in results)
    return {"step": step, "workers": workers, "pages": pages, "seconds": round(seconds, 3),
            "pages_per_s": round(pages / seconds, 1),
            "stored_bytes_per_page": round(stored / pages) if step in ("thumb", "full") else 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", default=f"1,{available_cpus()}", help="comma-separated process counts")
    parser.add_argument("--steps", default=",".join(STEPS))
    args = parser.parse_args()
    from benchmarks.common import device_name, write_json
    from benchmarks.index import corpus

    paths = corpus(None, Path())["paths"]  # None: the PDFs as they are, nothing written
    counts = sorted({int(w) for w in args.workers.split(",")})
    rows = [measure(step, paths, w) for step in args.steps.split(",") for w in counts]
    print(f"{'step':8} {'workers':>7} {'pages':>6} {'s':>7} {'pages/s':>8} {'bytes/page':>10}")
    for r in rows:
        print(f"{r['step']:8} {r['workers']:>7} {r['pages']:>6} {r['seconds']:>7} {r['pages_per_s']:>8} "
              f"{r['stored_bytes_per_page']:>10}")
    payload = {"benchmark": "render-floor", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": "python benchmarks/render_floor.py " + " ".join(sys.argv[1:]),
               "device": device_name(), "load_average": list(os.getloadavg()),
               "versions": {"pymupdf": version("pymupdf")}, "dpi": DPI, "thumbnail_px": THUMB_PX, "rows": rows}
    write_json("render-floor", payload)


if __name__ == "__main__":
    main()
