"""The parts of `benchmarks/gpu_check.py` that are its own code, each run in a child process of it:

    python benchmarks/gpu_parts.py encoder --out F.json [--preset 3b --device cuda --pages 64 --precision-pages 8]
    python benchmarks/gpu_parts.py index --out F.json --pdfs DIR [--preset 3b --device cuda --pages 200]

``encoder``: a random encoder of the preset's shape in bf16 with sdpa: pages/s and MFU (`benchmarks/encode.py`'s
measurement); the same pages and queries in float32 (cosine to the bf16 embeddings); flash-attention 2 where
`import flash_attn` works (throughput, and its cosine to sdpa). ``index``: `docrag index` of real pages with a random
encoder of the preset's shape (`benchmarks/index.py`'s run: pages/s, the encoder's busy share). The JSON is rewritten
after every sub-result, so a crash or a kill keeps what was measured before it.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import PEAK_BF16_FLOPS, a4_pages, device_name, open_pdf, write_json_to  # noqa: E402

PRECISION_MIN_COS = 0.99  # bf16 vs float32 embeddings of the same inputs must agree at least this well
ROOT = Path(__file__).resolve().parents[1]


def default_pdf_dir() -> Path:
    """The Debian PDFs when they are here (`make test-data`, or carried to a GPU machine), else examples/."""
    debian = ROOT / ".test-data" / "debian"
    return debian if debian.is_dir() and any(debian.glob("*.pdf*")) else ROOT / "examples"


def one_line(e: BaseException) -> str:
    """An exception as the one line a result file records."""
    text = str(e).strip().splitlines()
    return f"{type(e).__name__}: {text[0] if text else ''}"[:300]


def free_cuda() -> None:
    import torch

    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


def cosines(a, b) -> dict[str, float]:
    """Row-wise cosine of two embedding matrices: min and mean."""
    import numpy as np

    cos = (a * b).sum(1) / (np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1))
    return {"min_cos": float(cos.min()), "mean_cos": float(cos.mean())}


# ---- encoder ---------------------------------------------------------------------------------------------------


def precision(enc, pages: list, queries: list[str]) -> tuple[dict[str, Any], Any]:
    """The same pages and queries through ``enc`` in bf16 and in float32 (same weights: bf16 widens exactly)."""
    import torch

    t0 = time.perf_counter()
    bf_pages, bf_queries = enc.encode_documents(pages), enc.encode_queries(queries)
    enc.model.float()
    try:
        fp_pages, fp_queries = enc.encode_documents(pages), enc.encode_queries(queries)
    finally:
        enc.model.to(torch.bfloat16)  # back for the flash-attention run (float32 -> bf16 is exact here)
        free_cuda()
    p, q = cosines(bf_pages, fp_pages), cosines(bf_queries, fp_queries)
    worst = min(p["min_cos"], q["min_cos"])
    return {"pages": len(pages), "queries": len(queries), "pages_min_cos": p["min_cos"],
            "pages_mean_cos": p["mean_cos"], "queries_min_cos": q["min_cos"], "queries_mean_cos": q["mean_cos"],
            "min_cos": worst, "threshold": PRECISION_MIN_COS, "pass": worst >= PRECISION_MIN_COS,
            "seconds": time.perf_counter() - t0}, bf_pages


def flash(enc, pages: list, label: str, sdpa_pages, n_check: int) -> dict[str, Any]:
    """flash-attention 2 throughput on ``pages``, and its cosine to sdpa's embeddings of the first ``n_check``."""
    from benchmarks.encode import page_rows

    if enc.device.type != "cuda":
        return {"skipped": "flash-attention needs a CUDA device"}
    try:
        import flash_attn
    except ImportError as e:
        return {"skipped": f"`import flash_attn` fails ({one_line(e)}): carry a flash-attn wheel to measure it"}
    enc.model.set_attn_implementation("flash_attention_2")
    out: dict[str, Any] = {"flash_attn": getattr(flash_attn, "__version__", "?")}
    out.update(cosines(sdpa_pages, enc.encode_documents(pages[:n_check])))
    out["rows"] = page_rows(enc, pages, label, modes=("token-budget batches",))
    return out


def encoder_part(out: Path, preset: str, device: str, n_pages: int, n_precision: int,
                 max_pixels: int | None = None) -> None:
    import torch

    from benchmarks.encode import QUERIES, gpu_encoder, page_rows

    label = f"{preset} (random init)"
    payload: dict[str, Any] = {"benchmark": "gpu_encode", "device": device_name(), "preset": label,
                               "attention": "sdpa", "peak_flops": PEAK_BF16_FLOPS, "torch": torch.__version__}
    enc = gpu_encoder(preset, device=device, dtype=torch.bfloat16, attn="sdpa", max_pixels=max_pixels)
    pages = a4_pages(n_pages)
    payload["sdpa"] = {"rows": page_rows(enc, pages, label)}
    if device == "cuda":
        payload["sdpa"]["peak_mem_gib"] = torch.cuda.max_memory_allocated() / 2**30
    write_json_to(out, payload)
    sdpa_pages = None
    try:
        payload["precision"], sdpa_pages = precision(enc, pages[:n_precision], QUERIES)
    except Exception as e:  # recorded; flash-attention still runs
        payload["precision"] = {"error": one_line(e)}
    write_json_to(out, payload)
    try:
        if sdpa_pages is None:
            sdpa_pages = enc.encode_documents(pages[:n_precision])
        payload["flash"] = flash(enc, pages, label, sdpa_pages, n_precision)
    except Exception as e:
        payload["flash"] = {"error": one_line(e)}
    write_json_to(out, payload)


# ---- docrag index ----------------------------------------------------------------------------------------------


def page_count(folder: Path) -> int:
    total = 0
    for p in sorted(folder.iterdir()):
        if p.name.endswith((".pdf", ".pdf.gz")):
            with open_pdf(p) as doc:
                total += doc.page_count
    return total


def pdf_folder(pdfs: Path, n_pages: int, workdir: Path) -> tuple[Path, int]:
    """``pdfs`` when it holds ``n_pages`` pages, else a copy topped up with a synthetic text PDF (e.g. when only
    examples/'s three one-page PDFs travelled). Returns the folder and the number of synthetic pages."""
    from benchmarks.train_cpt import synthetic_pdf

    have = page_count(pdfs) if pdfs.is_dir() else 0
    if have >= n_pages:
        return pdfs, 0
    folder = workdir / "pdfs"
    folder.mkdir(parents=True, exist_ok=True)
    if pdfs.is_dir():
        for p in pdfs.iterdir():
            if p.name.endswith((".pdf", ".pdf.gz")):
                shutil.copy(p, folder / p.name)
    synthetic_pdf(folder / "zz-synthetic.pdf", n_pages - have)
    return folder, n_pages - have


def index_part(out: Path, preset: str, device: str, n_pages: int, pdfs: Path, n_search: int,
               max_pixels: int | None = None) -> None:
    import tempfile

    import torch

    from benchmarks.index import bench_indexing, corpus
    from moca_train.presets import init_checkpoint, resolve_init_dtype
    from moca_train.processing import MIN_PIXELS

    payload: dict[str, Any] = {"benchmark": "gpu_index", "device": device_name(), "preset": preset,
                               "torch": torch.__version__}
    with tempfile.TemporaryDirectory(prefix="docrag-gpu-index-") as tmp:
        work = Path(tmp)
        folder, synthetic = pdf_folder(pdfs, n_pages, work)
        data = corpus(n_pages, work / "corpus", folder)
        payload.update(pdfs=str(pdfs), documents=data["documents"], synthetic_pages=synthetic)
        t0 = time.perf_counter()
        with torch.device(device):  # the random weights are made on the GPU: seconds, not minutes, for 3B
            ckpt = init_checkpoint(preset, work / preset, max_pixels=max_pixels,
                                   min_pixels=min(MIN_PIXELS, max_pixels) if max_pixels else None)
        free_cuda()  # the indexing children need the GPU memory
        payload["init_checkpoint_s"] = time.perf_counter() - t0
        row = bench_indexing(f"{preset} encoder", data, str(ckpt), work, ["visual", "hybrid"], n_search)
        dtype = str(resolve_init_dtype(preset)).removeprefix("torch.")
        row["encoder"] = f"{preset} (random init, {dtype} weights, run at the device's default dtype)"
        payload["indexing"] = row
    write_json_to(out, payload)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("part", choices=["encoder", "index"])
    ap.add_argument("--out", type=Path, required=True, help="the part's JSON file")
    ap.add_argument("--preset", default="3b")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--pages", type=int, default=None, help="pages to encode (64) or to index (200)")
    ap.add_argument("--precision-pages", type=int, default=8, help="pages compared in bf16 and float32")
    ap.add_argument("--pdfs", type=Path, default=None, help="index: the folder of PDFs to take pages from")
    ap.add_argument("--search", type=int, default=5, help="index: DocRag.search calls per mode")
    ap.add_argument("--max-pixels", type=int, default=None, help="page resolution cap (default MoCa's 1024*28*28)")
    args = ap.parse_args(argv)
    os.environ.setdefault("DOCRAG_TEXT_ENCODER", "none")  # no built-in text model: its package need not travel
    if args.part == "encoder":
        encoder_part(args.out, args.preset, args.device, args.pages or 64, args.precision_pages, args.max_pixels)
    else:
        index_part(args.out, args.preset, args.device, args.pages or 200, args.pdfs or default_pdf_dir(), args.search,
                   args.max_pixels)
    return 0


if __name__ == "__main__":
    sys.exit(main())
