"""Does the contrastive trainer learn? A `tiny` encoder from random init, MoCa's stage 2 on text pairs built from
real PDFs (a query synthesised from a page -> that page's text), scored on held-out pages by `docrag eval`'s runner.

    python benchmarks/learns.py               # ~10 min on 2 cores: the Debian manuals, held-out nDCG@5
    python benchmarks/learns.py --quick       # ~1 min: one manual, fewer steps (the CI test's run)
    python benchmarks/learns.py --ablation    # + CPT (MLM on the same text) vs none, 3 seeds, paired test;
                                              #   + the same run with GradCache: the two loss curves

The evaluation set is `docrag eval build`'s (20% of the pages held out, one query per held-out page, every page
of the manuals in the corpus); the pairs come from the other 80% only (`app.pipeline_data.build_page_pairs`).
The trained folder is the dense text model of a temporary index (`--text-encoder FOLDER`), searched in `dense`
mode: the same code a user's `docrag eval --text-encoder runs/x` runs. Writes benchmarks/results/learns.json
(--quick: learns-quick.json).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ROOT = Path(__file__).resolve().parents[1]
DEBIAN = ROOT / ".test-data" / "debian"
# Copies of one exam (every line repeats): no query can be made from them.
SKIP = ("sample-amc.pdf", "sample-plain.pdf")
QUICK_PDF = "auto-multiple-choice.en.pdf"


@dataclasses.dataclass(frozen=True)
class Budget:
    """One run's size: the contrastive steps and batch, the CPT steps of the ablation, queries per train page."""

    steps: int
    batch: int
    lr: float
    temperature: float
    cpt_steps: int
    per_page: int
    max_text_tokens: int


FULL = Budget(steps=600, batch=32, lr=1e-3, temperature=0.02, cpt_steps=300, per_page=8, max_text_tokens=256)
QUICK = Budget(steps=60, batch=16, lr=1e-3, temperature=0.02, cpt_steps=30, per_page=3, max_text_tokens=128)


def corpus(quick: bool, pdfs: list[Path] | None) -> list[Path]:
    if pdfs:
        return pdfs
    found = [DEBIAN / QUICK_PDF] if quick else sorted(p for p in DEBIAN.glob("*.pdf*") if p.name not in SKIP)
    found = [p for p in found if p.exists()]
    if not found:
        sys.exit(f"no PDFs: pass --pdfs, or run `make test-data` to fill {DEBIAN}")
    return found


def contrastive_config(pairs: Path, out: Path, budget: Budget, seed: int, base: str = "tiny", chunk: int = 0):
    from moca_train.stages.contrastive import ContrastiveConfig

    return ContrastiveConfig.from_dict({
        "base": base, "data": [str(pairs)], "max_text_tokens": budget.max_text_tokens, "pooling": "mean",
        "temperature": budget.temperature, "hard_negatives": 0, "batch_size": budget.batch, "chunk_size": chunk,
        "seed": seed,
        "train": {"out": str(out), "max_steps": budget.steps, "lr": budget.lr, "warmup_ratio": 0.05, "grad_clip": 5.0,
                  "precision": "fp32", "gradient_checkpointing": False, "tensorboard": False, "save_every": 0,
                  "log_every": 1, "prefetch": 2, "seed": seed},
    })


def cpt_text_rows(pairs: Path, out: Path) -> Path:
    """MLM rows: each train page's text once (the positives of the pairs), no images."""
    import json

    seen, rows = set(), []
    for line in pairs.read_text().splitlines():
        row = json.loads(line)
        key = (row["pos_doc"], row["pos_page"])
        if key not in seen:
            seen.add(key)
            rows.append({"text": row["pos"], "images": []})
    out.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return out


def run_cpt_text(rows: Path, out: Path, budget: Budget, seed: int) -> Path:
    from moca_train.stages.cpt import CPTConfig, run_cpt

    run_cpt(CPTConfig.from_dict({
        "base": "tiny", "data": [str(rows)], "max_len": budget.max_text_tokens, "mlm_ratio": 0.4, "seed": seed,
        "token_budget": budget.batch * budget.max_text_tokens, "pool_rows": 64,
        "train": {"out": str(out), "max_steps": budget.cpt_steps, "lr": 2e-3, "warmup_ratio": 0.05,
                  "precision": "fp32", "gradient_checkpointing": False, "tensorboard": False, "save_every": 0,
                  "log_every": 10, "prefetch": 2, "seed": seed},
    }))
    return out


def evaluate(evalset: Path, text_encoder: str, work: Path):
    """`docrag eval`'s runner over the evaluation set, dense mode with ``text_encoder`` (plus BM25)."""
    from app.config import Config
    from app.evaluation.dataset import load_dataset
    from app.evaluation.runner import EvalRunner

    config = dataclasses.replace(Config(), index_dir=work, encoder="none", text_encoder=text_encoder)
    return EvalRunner(load_dataset(evalset), config, temporary=True).run(modes=["text", "dense"])


def train_and_score(pairs: Path, evalset: Path, out: Path, budget: Budget, seed: int, base: str = "tiny",
                    chunk: int = 0) -> dict:
    from moca_train.stages.contrastive import run_contrastive
    from moca_train.trainer import read_train_log

    t0 = time.perf_counter()
    run_contrastive(contrastive_config(pairs, out, budget, seed, base, chunk))
    train_s = time.perf_counter() - t0
    result = evaluate(evalset, str(out), out.parent)
    dense = result.modes["dense"]
    return {"ndcg@5": float(dense.metrics["ndcg@5"]), "ndcg@10": float(dense.metrics["ndcg@10"]),
            "recall@5": float(dense.metrics["recall@5"]), "mrr@10": float(dense.metrics["mrr@10"]),
            "bm25_ndcg@5": float(result.modes["text"].metrics["ndcg@5"]),
            "per_query": {q: s["ndcg@5"] for q, s in dense.per_query.items()},
            "losses": [r["loss"] for r in read_train_log(out)], "train_s": round(train_s, 1),
            "queries": int(dense.metrics["n_queries"])}


def random_init_score(evalset: Path, work: Path, seed: int) -> float:
    from moca_train.presets import init_checkpoint

    folder = init_checkpoint("tiny", work / "random-init", seed=seed)
    return float(evaluate(evalset, str(folder), work).modes["dense"].metrics["ndcg@5"])


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="one manual, fewer steps (the CI test)")
    ap.add_argument("--ablation", action="store_true", help="CPT vs none over 3 seeds, and GradCache on/off")
    ap.add_argument("--pdfs", type=Path, nargs="*", default=None)
    ap.add_argument("--steps", type=int, default=None, help="contrastive steps (default 600; --quick 60)")
    ap.add_argument("--lr", type=float, default=None)
    ap.add_argument("--batch", type=int, default=None)
    ap.add_argument("--temperature", type=float, default=None)
    ap.add_argument("--per-page", type=int, default=None, help="queries per train page")
    ap.add_argument("--seeds", type=int, default=3, help="seeds of the ablation")
    ap.add_argument("--workdir", type=Path, default=None, help="keep the runs here (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=None, help="write the results here instead of benchmarks/results")
    args = ap.parse_args(argv)
    budget = QUICK if args.quick else FULL
    for name in ("steps", "lr", "batch", "temperature", "per_page"):
        if getattr(args, name):
            budget = dataclasses.replace(budget, **{name: getattr(args, name)})

    from app.evaluation.build import build_eval_set
    from app.pipeline_data import build_page_pairs
    from benchmarks.common import device_name, print_table, write_json, write_json_to
    from benchmarks.eval import versions

    tmp = None
    work = args.workdir
    if work is None:
        tmp = tempfile.TemporaryDirectory(prefix="docrag-bench-learns-")
        work = Path(tmp.name)
    started = time.perf_counter()
    try:
        pdfs = corpus(args.quick, args.pdfs)
        evalset, pairs = work / "evalset", work / "pairs.jsonl"
        built = build_eval_set(pdfs, evalset, split=0.2, seed=0)
        made = build_page_pairs(pdfs, evalset, None, pairs, budget.per_page, seed=0)
        data = {"pages": built.pages, "test_pages": built.test_pages, "test_queries": built.test_queries,
                "train_pages": made.pages, "pairs": made.rows}
        print(f"{built.pages} pages: {built.test_queries} held-out queries on {built.test_pages} pages, "
              f"{made.rows} pairs from {made.pages} train pages", flush=True)
        before = random_init_score(evalset, work, seed=0)
        main_run = train_and_score(pairs, evalset, work / "cl-seed0", budget, seed=0)
        rows = [{"run": "random init", "ndcg@5": before},
                {"run": f"contrastive {budget.steps} steps", **{k: v for k, v in main_run.items()
                                                                if k not in ("per_query", "losses")}}]
        report: dict = {"random_init_ndcg@5": before, "trained": {k: v for k, v in main_run.items()
                                                                   if k != "per_query"}}
        if args.ablation:
            report["ablation"] = ablation(pairs, evalset, work, budget, args.seeds, main_run, rows)
            cached = train_and_score(pairs, evalset, work / "cl-gradcache", budget, seed=0, chunk=budget.batch // 4)
            gap = max(abs(a - b) for a, b in zip(main_run["losses"], cached["losses"], strict=True))
            report["gradcache"] = {"max_loss_gap": gap, "ndcg@5": cached["ndcg@5"], "losses": cached["losses"]}
            rows.append({"run": f"contrastive, GradCache chunk {budget.batch // 4}", "ndcg@5": cached["ndcg@5"],
                         "max_loss_gap": gap})
    finally:
        if tmp is not None:
            tmp.cleanup()
    device = device_name()
    print(f"\n== learns ({'quick' if args.quick else 'full'}): tiny preset from random init, {device} ==")
    print_table(rows, ["run", "ndcg@5", "ndcg@10", "recall@5", "mrr@10", "bm25_ndcg@5", "train_s", "queries",
                       "p_value", "max_loss_gap"])
    payload = {
        "benchmark": "learns", "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "command": "python benchmarks/learns.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": device,
        "machine": {"cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version()},
        "versions": versions(), "pdfs": [p.name for p in pdfs], "data": data, "budget": dataclasses.asdict(budget),
        "total_s": round(time.perf_counter() - started, 1), "rows": rows, **report,
    }
    if args.json:
        write_json_to(args.json, payload)
    else:
        write_json("learns-quick" if args.quick else "learns", payload)
    return 0


def ablation(pairs: Path, evalset: Path, work: Path, budget: Budget, seeds: int, seed0: dict,
             rows: list[dict]) -> dict:
    """CPT (MLM on the train pages' text) then the same contrastive budget, vs the contrastive stage alone."""
    from app.evaluation.compare import paired_test

    with_cpt, without = {}, {}
    text_rows = cpt_text_rows(pairs, work / "cpt-text.jsonl")
    for seed in range(seeds):
        plain = seed0 if seed == 0 else train_and_score(pairs, evalset, work / f"cl-seed{seed}", budget, seed)
        cpt_dir = run_cpt_text(text_rows, work / f"cpt-seed{seed}", budget, seed)
        cpt = train_and_score(pairs, evalset, work / f"cpt-cl-seed{seed}", budget, seed, base=str(cpt_dir))
        without.update({f"{seed}:{q}": v for q, v in plain["per_query"].items()})
        with_cpt.update({f"{seed}:{q}": v for q, v in cpt["per_query"].items()})
        rows.append({"run": f"seed {seed}: no CPT", "ndcg@5": plain["ndcg@5"]})
        rows.append({"run": f"seed {seed}: CPT {budget.cpt_steps} + contrastive", "ndcg@5": cpt["ndcg@5"]})
    test = paired_test(without, with_cpt)
    rows.append({"run": f"CPT - none over {seeds} seeds", "ndcg@5": test["delta"], "p_value": test["p_value"]})
    return {"seeds": seeds, "cpt_steps": budget.cpt_steps, "paired_test": test}


if __name__ == "__main__":
    sys.exit(main())
