"""OCR fallback: speed per engine on 2 workers, and `docrag eval` quality on an image-only copy of real manuals.

For each manual, `--pages` pages are copied twice: born-digital (the original pages, with their text layer) and
image-only (each page rasterised at `--scan-dpi` and put back as a picture: no text layer at all, like a scan).
`docrag eval build` makes one evaluation set from the born-digital copy (every page a test page, one hard
synthetic query each); the image-only set is the same queries and judgements with its corpus rows pointing at
the scanned copy. Each condition is `docrag eval` (app.evaluation.EvalRunner: a fresh eval index, then BM25
text search over every query):

- born-digital, text layer (`--ocr never`): the reference;
- image-only without OCR (`--ocr never`): what docrag did before (nothing to search);
- image-only with OCR (`--ocr auto`), per engine: nDCG@5, and OCR pages/s = OCR'd pages / the seconds the OCR
  added to indexing (the same run without OCR subtracted). RapidOCR is slow on CPU: it runs on `--rapid-pages`.

Goal (issue 10): OCR within 0.03 nDCG@5 of the born-digital text layer.

    python benchmarks/ocr.py                       # writes benchmarks/results/ocr.json
    python benchmarks/ocr.py --pages 10 --engines tesseract --json /tmp/ocr-smoke.json
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, device_name, print_table, write_json  # noqa: E402

DEFAULT_DOCS = ["auto-multiple-choice.en.pdf", "reference.pdf.gz"]
FIRST_PAGE = 9  # past covers and tables of contents
METRICS = ("ndcg@5", "recall@5", "mrr@10")


def excerpt(src: Path, out_dir: Path, n: int, scan_dpi: int | None) -> Path:
    """Pages FIRST_PAGE.. of `src` as a PDF in `out_dir`; with `scan_dpi`, as pictures only (no text layer)."""
    import pymupdf

    name = src.name.removesuffix(".gz")
    out_dir.mkdir(parents=True, exist_ok=True)
    with pymupdf.open(src) as doc, pymupdf.open() as out:
        last = min(doc.page_count, FIRST_PAGE + n) - 1
        if scan_dpi is None:
            out.insert_pdf(doc, from_page=FIRST_PAGE, to_page=last)
        else:
            for i in range(FIRST_PAGE, last + 1):
                page = doc[i]
                new = out.new_page(width=page.rect.width, height=page.rect.height)
                new.insert_image(new.rect, stream=page.get_pixmap(dpi=scan_dpi, colorspace="gray").tobytes("png"))
        out.save(out_dir / name)
    return out_dir / name


def build_sets(docs: list[Path], n: int, scan_dpi: int, work: Path) -> tuple[Path, Path]:
    """(born-digital eval set, the same set over the image-only copies)."""
    from app.evaluation.build import build_eval_set

    for d in docs:
        excerpt(d, work / "digital", n, None)
        excerpt(d, work / "scanned", n, scan_dpi)
    build_eval_set([work / "digital"], work / "set", split=1.0, seed=0)
    shutil.copytree(work / "set", work / "set-scan")
    corpus = work / "set-scan" / "corpus.jsonl"
    rows = [json.loads(line) for line in corpus.read_text().splitlines()]
    for r in rows:
        r["pdf"] = str(Path("..") / "scanned" / Path(r["pdf"]).name)
    corpus.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return work / "set", work / "set-scan"


def run_condition(dataset: Path, index_dir: Path, **config) -> dict:
    """`docrag eval DATASET --encoder none --mode text` with these settings, in a fresh eval index."""
    from app.config import load_config
    from app.evaluation.dataset import load_dataset
    from app.evaluation.runner import EvalRunner

    cfg = load_config({"index_dir": index_dir, "ocr_workers": 2, **config})
    t0, cpu0 = time.perf_counter(), _cpu_seconds()
    result = EvalRunner(load_dataset(dataset), cfg, temporary=True).run(["text"], 100, "none")
    seconds, cpu = time.perf_counter() - t0, _cpu_seconds() - cpu0
    m = result.modes["text"].metrics
    ix = result.indexing
    return {"pages": ix["indexed_pages"], "queries": m["n_queries"], "ocr_pages": ix["ocr_pages"],
            "pages_without_text": ix["pages_without_text"],
            **{k: round(m[k], 4) for k in METRICS}, "index_seconds": ix["seconds"],
            "seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2)}


def _cpu_seconds() -> float:
    """CPU time of this process and its finished children (the tesseract processes): load-independent cost."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def evaluate(docs: list[Path], n: int, scan_dpi: int, engines: list[str], lang: str, work: Path) -> list[dict]:
    born, scan = build_sets(docs, n, scan_dpi, work)
    rows = []

    def row(condition: str, result: dict, **extra) -> dict:
        r = {"condition": condition, "pages_per_doc": n, **result, **extra}
        rows.append(r)
        print(f"  {condition}: {r}", flush=True)
        return r

    ref = row("born-digital text layer", run_condition(born, work / "idx", ocr="never", ocr_lang=lang))
    no_ocr = row("image-only, no OCR", run_condition(scan, work / "idx", ocr="never", ocr_lang=lang))
    for engine in engines:
        r = run_condition(scan, work / "idx", ocr="auto", ocr_engine=engine, ocr_lang=lang)
        ocr_s = max(1e-6, r["index_seconds"] - no_ocr["index_seconds"])
        cpu_per_page = max(1e-6, r["cpu_seconds"] - no_ocr["cpu_seconds"]) / max(1, r["ocr_pages"])
        # pages/s as measured (a shared machine: other jobs take cores), and what 2 idle cores would give
        row(f"image-only, OCR {engine}", r, ocr_pages_per_s=round(r["ocr_pages"] / ocr_s, 3),
            ocr_cpu_s_per_page=round(cpu_per_page, 3), ocr_pages_per_s_2_idle_cores=round(2 / cpu_per_page, 2),
            gap_to_text_layer=round(ref["ndcg@5"] - r["ndcg@5"], 4))
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", nargs="*", default=DEFAULT_DOCS, help="file names under .test-data/debian")
    ap.add_argument("--pages", type=int, default=40, help="pages per manual (Tesseract run)")
    ap.add_argument("--rapid-pages", type=int, default=6, help="pages per manual for the RapidOCR run")
    ap.add_argument("--scan-dpi", type=int, default=150, help="resolution of the image-only copy")
    ap.add_argument("--engines", default="tesseract,rapidocr")
    ap.add_argument("--lang", default="eng")
    ap.add_argument("--json", type=Path, default=None, help="where to write (default benchmarks/results/ocr.json)")
    args = ap.parse_args()

    from benchmarks.eval import versions

    docs = [ROOT / ".test-data" / "debian" / d for d in args.docs]
    engines = [e for e in args.engines.split(",") if e]
    work = Path(tempfile.mkdtemp(prefix="docrag-ocr-bench-"))
    load_before = [round(x, 2) for x in os.getloadavg()]
    rows: list[dict] = []
    try:
        if "tesseract" in engines:
            print(f"tesseract: {args.pages} pages x {len(docs)} manuals", flush=True)
            rows += evaluate(docs, args.pages, args.scan_dpi, ["tesseract"], args.lang, work / "tesseract")
        if "rapidocr" in engines:
            print(f"rapidocr: {args.rapid_pages} pages x {len(docs)} manuals", flush=True)
            rows += evaluate(docs, args.rapid_pages, args.scan_dpi, ["rapidocr"], args.lang, work / "rapidocr")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print()
    print_table(rows, ["condition", "pages", "queries", *METRICS, "gap_to_text_layer", "ocr_pages_per_s",
                       "ocr_cpu_s_per_page", "ocr_pages_per_s_2_idle_cores", "seconds"])
    payload = {"benchmark": "ocr", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": "python benchmarks/ocr.py " + " ".join(sys.argv[1:]), "device": device_name(),
               "versions": {**versions(), "tesseract": _tesseract_version()},
               # other jobs on a shared machine slow OCR down (the CPU seconds per page do not depend on it)
               "load_average_before": load_before, "load_average_after": [round(x, 2) for x in os.getloadavg()],
               "ocr_workers": 2, "scan_dpi": args.scan_dpi, "docs": args.docs, "rows": rows}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    else:
        write_json("ocr", payload)


def _tesseract_version() -> str:
    from indexing.ocr import OcrUnavailable, TesseractEngine

    try:
        return TesseractEngine().name  # "tesseract 5.3.0 (eng)", as recorded per page
    except OcrUnavailable:
        return "not installed"


if __name__ == "__main__":
    main()
