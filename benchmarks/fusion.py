"""Fusion settings for hybrid search: RRF k and per-source weights, chosen with `docrag eval` on a tuning split,
scored on the held-out split.

`docrag eval build --split 0.5` makes one evaluation set from born-digital pages of real manuals: half the pages
are test pages (held out), the other half, in `train/`, tune. One eval index holds every source given (BM25
always; `--text-encoder` adds the dense text vector, `--encoder` the visual one), and both splits are scored on
it: fusion settings are query-time only (`rrf_k`, `weight_*`, Qdrant's weighted RRF in one query), so the grid
costs queries, not re-indexing. Every single source and a grid of settings are scored by nDCG@5; the best
setting on the tuning split is reported with its held-out score, next to the RRF paper's k=60 with equal
weights and the best single source; docrag's defaults (app/config.py) are the tuned setting.

    python benchmarks/fusion.py --text-encoder /models/all-MiniLM-L6-v2 --encoder /models/moca-3b   # real models
    python benchmarks/fusion.py --text-encoder /models/all-MiniLM-L6-v2   # BM25 + dense text: the recorded run
    python benchmarks/fusion.py --tiny-text-encoder --json /tmp/fusion-smoke.json   # CPU check, random model
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, device_name, print_table, write_json  # noqa: E402
from benchmarks.ocr import excerpt  # noqa: E402

KS = (1, 2, 5, 10, 30, 60, 100)
WEIGHTS = (0.125, 0.25, 0.5, 1.0, 2.0, 4.0)
WEIGHT_KEYS = {"text": "weight_text", "dense": "weight_dense", "visual": "weight_visual"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", nargs="*", default=["auto-multiple-choice.en.pdf", "reference.pdf.gz",
                                                   "auto-multiple-choice.fr.pdf"],
                    help="file names under .test-data/debian")
    ap.add_argument("--pages", type=int, default=60, help="pages per manual")
    ap.add_argument("--text-encoder", default=None, help="sentence-transformers folder or hub id")
    ap.add_argument("--tiny-text-encoder", action="store_true", help="build a tiny random one (CPU check)")
    ap.add_argument("--encoder", default=None, help="MoCa checkpoint for the visual vector")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()

    work = Path(tempfile.mkdtemp(prefix="docrag-fusion-"))
    try:
        payload = run(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    else:
        write_json("fusion", payload)


def run(args: argparse.Namespace, work: Path) -> dict:
    from app.config import load_config
    from app.evaluation.build import build_eval_set
    from app.evaluation.dataset import load_dataset
    from app.evaluation.runner import EvalRunner
    from app.service import DocRag
    from benchmarks.eval import versions

    docs = [ROOT / ".test-data" / "debian" / d for d in args.docs]
    for d in docs:
        excerpt(d, work / "docs", args.pages, None)
    built = build_eval_set([work / "docs"], work / "set", split=0.5, seed=0)
    held, tune = load_dataset(work / "set"), load_dataset(work / "set" / "train")
    if args.tiny_text_encoder:
        import pymupdf

        from app.textenc import init_tiny_text_encoder

        texts = [p.get_text() for f in sorted((work / "docs").iterdir()) for p in pymupdf.open(f)]
        args.text_encoder = str(init_tiny_text_encoder(work / "tiny-st", texts))
    base = load_config({"index_dir": work / "idx", "text_encoder": args.text_encoder or "none"})
    encoder = args.encoder or "none"

    def score(ds, mode: str, **settings) -> float:
        config = dataclasses.replace(base, **settings)
        result = EvalRunner(ds, config, name="fusion").run([mode], 100, encoder)
        return round(result.modes[mode].metrics["ndcg@5"], 4)

    score(tune, "text")  # builds the shared eval index once
    (index_dir,) = (work / "idx" / "evals").iterdir()
    sources = [m for m in DocRag(index_dir=index_dir).available_modes() if m != "hybrid"]
    rows = [{"setting": f"{m} only", "tune": score(tune, m), "held_out": score(held, m)} for m in sources]
    if len(sources) > 1:
        paper = {"rrf_k": 60, **{WEIGHT_KEYS[s]: 1.0 for s in sources}}
        rows.append({"setting": "hybrid k=60, weights 1 (the RRF paper's)", "tune": score(tune, "hybrid", **paper),
                     "held_out": score(held, "hybrid", **paper)})
        best = None
        for k in KS:
            for ws in itertools.product(WEIGHTS, repeat=len(sources) - 1):  # BM25's fixed at 1: only ratios matter
                weights = {WEIGHT_KEYS[s]: w for s, w in zip(sources, (1.0, *ws), strict=True)}
                s = score(tune, "hybrid", rrf_k=k, **weights)
                if best is None or s > best[0] + 1e-9:
                    best = (s, k, weights)
        s, k, weights = best
        shown = ", ".join(f"{key.removeprefix('weight_')} {w:g}" for key, w in weights.items())
        rows.append({"setting": f"hybrid tuned: k={k}, {shown}", "tune": s,
                     "held_out": score(held, "hybrid", rrf_k=k, **weights)})
    print_table(rows, ["setting", "tune", "held_out"])
    return {"benchmark": "fusion", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
               "command": "python benchmarks/fusion.py " + " ".join(sys.argv[1:]), "device": device_name(),
               "versions": versions(), "load_average": [round(x, 2) for x in os.getloadavg()],
               "docs": [d.name for d in docs], "pages_per_doc": args.pages, "pages": built.pages,
               "tune_queries": len(tune.queries), "held_out_queries": len(held.queries),
               "text_encoder": "tiny (random init)" if args.tiny_text_encoder else args.text_encoder,
               "encoder": args.encoder, "rows": rows}


if __name__ == "__main__":
    main()
