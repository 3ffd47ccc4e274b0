"""`docrag eval` on real PDFs: retrieval quality (nDCG@5/10, Recall@1/5/10, MRR@10, per query type), indexing
pages/s and query latency, on a synthetic evaluation set that `docrag eval build` makes from the Debian PDFs.

    python benchmarks/eval.py                        # all Debian PDFs, BM25 + a tiny random encoder (noise)
    python benchmarks/eval.py --encoder runs/moca-3b # visual and hybrid with a real checkpoint (GPU)
    python benchmarks/eval.py --quick                # smoke run: one 101-page PDF

Every page is a test page (``--split 1``), one query per page. The default encoder is the `tiny` preset with
random weights at a low resolution: its visual and hybrid numbers are noise, recorded only to show the code
path runs; BM25 (text) is the meaningful number on CPU. Writes benchmarks/results/eval.json
(--quick: eval-quick.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT / ".test-data" / "debian"
PACKAGES = ("torch", "transformers", "qdrant-edge-py", "pymupdf", "pytrec-eval-terrier")


def versions(packages: tuple[str, ...] = PACKAGES) -> dict[str, str]:
    out = {}
    for p in packages:
        try:
            out[p] = version(p)
        except PackageNotFoundError:
            out[p] = "not installed"
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="smoke run: one 101-page PDF")
    ap.add_argument("--pdfs", type=Path, nargs="*", default=None, help="PDFs or folders (default: .test-data/debian)")
    ap.add_argument("--encoder", default=None, help="checkpoint for visual/hybrid (default: tiny random init)")
    ap.add_argument("--queries-per-page", type=int, default=1)
    ap.add_argument("--split", type=float, default=1.0, help="fraction of pages used as test pages")
    ap.add_argument("--top-k", type=int, default=100)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the set and indexes here (default: temp dir)")
    args = ap.parse_args()

    from app.config import load_config
    from app.evaluation.build import build_eval_set
    from app.evaluation.dataset import load_dataset
    from app.evaluation.metrics import METRICS
    from app.evaluation.runner import EvalRunner
    from benchmarks.common import device_name, print_table, write_json

    pdfs = args.pdfs or ([DEBIAN / "auto-multiple-choice.en.pdf"] if args.quick else [DEBIAN])
    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="docrag-bench-eval-")
        workdir = Path(tmp.name)
    load_before = list(os.getloadavg())
    started = time.perf_counter()
    try:
        t0 = time.perf_counter()
        built = build_eval_set(pdfs, workdir / "set", args.queries_per_page, args.split, args.seed)
        build_s = time.perf_counter() - t0
        ds = load_dataset(workdir / "set")
        encoder, note = args.encoder, "checkpoint"
        if encoder is None:
            from moca_train.presets import init_checkpoint

            encoder = str(init_checkpoint("tiny", workdir / "tiny", seed=0, min_pixels=16 * 28 * 28,
                                          max_pixels=64 * 28 * 28))
            note = "tiny preset, random weights, 16-64 visual tokens per page: visual/hybrid are noise"
        config = load_config({"index_dir": workdir / "idx"})
        runs = []
        for enc, modes, label in (("none", ["text"], "BM25 (text layer)"),
                                  (encoder, ["visual", "hybrid"], note)):
            result = EvalRunner(ds, config).run(modes, args.top_k, enc)
            runs.append({"encoder": "none" if enc == "none" else (args.encoder or "tiny (random init)"),
                         "note": label, "indexing": result.indexing,
                         "modes": {m: {**r.metrics, "latency_ms": r.latency_ms} for m, r in result.modes.items()}})
    finally:
        if tmp is not None:
            tmp.cleanup()
    total_s = time.perf_counter() - started

    rows = []
    for run in runs:
        for mode, m in run["modes"].items():
            rows.append({"encoder": run["encoder"], "mode": mode, **{k: m[k] for k in METRICS},
                         "queries": m["n_queries"], "p50_ms": m["latency_ms"]["p50"], "p95_ms": m["latency_ms"]["p95"],
                         "index_pages_per_s": run["indexing"]["pages_per_s"]})
    device = device_name()
    print(f"\n== docrag eval: {built.pages} pages, {built.test_queries} queries, {device} ==")
    print_table(rows, ["encoder", "mode", *METRICS, "queries", "p50_ms", "p95_ms", "index_pages_per_s"])
    write_json("eval-quick" if args.quick else "eval", {
        "benchmark": "eval",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/eval.py " + " ".join(sys.argv[1:]),
        "device": device,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": versions(),
        "total_s": total_s,
        # On a shared machine these say how far to trust the speed numbers (the metrics do not depend on load).
        "load_average_before": [round(x, 2) for x in load_before],
        "load_average_after": [round(x, 2) for x in os.getloadavg()],
        "dataset": {"pdfs": [str(Path(p).relative_to(ROOT)) if Path(p).is_relative_to(ROOT) else str(p) for p in pdfs],
                    "documents": built.documents, "pages": built.pages, "queries": built.test_queries,
                    "types": built.types, "queries_per_page": args.queries_per_page, "split": args.split,
                    "seed": args.seed, "build_s": build_s},
        "top_k": args.top_k,
        "runs": runs,
        "table": rows,
    })


if __name__ == "__main__":
    main()
