"""Does CPT help? A `small` encoder trained from random init on real PDF pages, with and without MoCa's
stage 1 (MLM + MAE continual pre-training), at the same contrastive budget; nDCG@5 on held-out pages.

    python benchmarks/cpt_ablation.py            # GPU: small preset, the Debian PDFs (< 10 min on an H100)
    python benchmarks/cpt_ablation.py --quick    # CPU smoke run: tiny preset, 30 pages, a few steps

Both variants are `docrag train pipeline` runs with the same seed, hence the same random init, the same
held-out split (test pages are never trained on), the same pairs and the same contrastive steps; only
``--steps-cpt`` differs (N vs 0). Writes benchmarks/results/cpt_ablation.json (--quick: cpt_ablation-quick.json).
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT / ".test-data" / "debian"
# Copies of one exam (every line repeats): no query can be made from them, they only add distractors.
REPEATS = ("sample-amc.pdf", "sample-plain.pdf")


def _corpus(args, folder: Path) -> list[Path]:
    """The PDFs to train and evaluate on; --pages keeps that many pages of each (a real-page subset)."""
    import pymupdf

    if args.pdfs:
        sources = args.pdfs
    elif args.quick:
        sources = [DEBIAN / "auto-multiple-choice.en.pdf"]
    else:
        sources = sorted(p for p in DEBIAN.glob("*.pdf*") if p.name not in REPEATS)
    if not sources:
        sys.exit(f"no PDFs: pass --pdfs, or run `make test-data` to fill {DEBIAN}")
    if not args.pages:
        return list(sources)
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for src in sources:
        with pymupdf.open(src) as doc:
            first = min(args.skip_pages, max(0, doc.page_count - 1))
            doc.select(range(first, min(doc.page_count, first + args.pages)))
            name = src.name.removesuffix(".gz")
            doc.save(folder / name)
            out.append(folder / name)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="CPU smoke run: tiny preset, 30 pages, few steps")
    ap.add_argument("--pdfs", type=Path, nargs="*", default=None, help="PDFs (default: .test-data/debian)")
    ap.add_argument("--pages", type=int, default=None, help="keep this many pages of each PDF (default: all)")
    ap.add_argument("--skip-pages", type=int, default=None, help="from this page on (default 9 with --quick)")
    ap.add_argument("--steps-cpt", type=int, default=None)
    ap.add_argument("--steps-cl", type=int, default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="result file (default: benchmarks/results/cpt_ablation"
                                                            "[-quick].json)")
    args = ap.parse_args()
    if args.quick:
        args.pages = args.pages or 30
        args.skip_pages = 9 if args.skip_pages is None else args.skip_pages  # past the title and contents pages
        preset, base = "tiny", "tiny"
        steps_cpt, steps_cl = args.steps_cpt or 20, args.steps_cl or 20
        extra = {"dpi": 36, "min_pixels": 16 * 28 * 28, "max_pixels": 64 * 28 * 28}
    else:
        args.skip_pages = args.skip_pages or 0
        preset, base = "small", "small"
        steps_cpt, steps_cl = args.steps_cpt or 400, args.steps_cl or 400
        extra = {}

    from app.train_pipeline import PipelineOptions, run_pipeline
    from benchmarks.common import device_name, print_table, write_json, write_json_to
    from benchmarks.eval import versions

    tmp = None
    workdir = args.workdir
    if workdir is None:
        tmp = tempfile.TemporaryDirectory(prefix="docrag-bench-cpt-")
        workdir = Path(tmp.name)
    rows, data = [], {}
    started = time.perf_counter()
    try:
        pdfs = _corpus(args, workdir / "pdfs")
        for label, cpt in (("with CPT", steps_cpt), ("without CPT", 0)):
            t0 = time.perf_counter()
            options = PipelineOptions(pdfs=pdfs, base=base, out=workdir / label.replace(" ", "-"), preset=preset,
                                      steps_cpt=cpt, steps_cl=steps_cl, seed=args.seed, **extra)
            result = run_pipeline(options)
            ev = result.eval
            data = ev["data"]
            rows.append({"variant": label, "steps_cpt": cpt, "steps_cl": steps_cl,
                         "before_ndcg@5": ev["before"]["ndcg@5"], "after_ndcg@5": ev["after"]["ndcg@5"],
                         "after_ndcg@10": ev["after"]["ndcg@10"], "after_recall@5": ev["after"]["recall@5"],
                         "after_mrr@10": ev["after"]["mrr@10"], "bm25_ndcg@5": ev["bm25"]["ndcg@5"],
                         "queries": ev["after"]["n_queries"], "seconds": round(time.perf_counter() - t0, 1)})
    finally:
        if tmp is not None:
            tmp.cleanup()
    device = device_name()
    delta = rows[0]["after_ndcg@5"] - rows[1]["after_ndcg@5"]
    print(f"\n== CPT ablation ({preset} preset, random init): {data.get('train_pages')} train pages, "
          f"{data.get('test_pages')} held-out pages, {data.get('test_queries')} queries, {device} ==")
    print_table(rows, ["variant", "steps_cpt", "steps_cl", "before_ndcg@5", "after_ndcg@5", "after_ndcg@10",
                       "after_recall@5", "after_mrr@10", "bm25_ndcg@5", "queries", "seconds"])
    print(f"\nnDCG@5 with CPT - without: {delta:+.3f}")
    payload = {
        "benchmark": "cpt_ablation",
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/cpt_ablation.py " + " ".join(sys.argv[1:]),
        "device": device,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": versions(),
        "preset": preset, "base": f"{base} (random init, seed {args.seed})",
        "pdfs": [p.name for p in pdfs], "data": data,
        "ndcg5_delta_cpt": delta,
        "total_s": round(time.perf_counter() - started, 1),
        "rows": rows,
    }
    if args.json:
        write_json_to(args.json, payload)
    else:
        write_json("cpt_ablation-quick" if args.quick else "cpt_ablation", payload)


if __name__ == "__main__":
    main()
