"""Contrastive (MoCa stage 2) training-step throughput and MFU, with and without GradCache.

    python benchmarks/train_contrastive.py            # GPU: Qwen2.5-VL-3B shape, random weights, bf16, real PDF pages
    python benchmarks/train_contrastive.py --smoke    # CPU: tiny shape, small pages, 2 steps per mode (checks it runs)

Both modes run the same step of `moca_train.stages.contrastive` (InfoNCE at 0.03 with 2 hard negatives per
query, AdamW, grad clipping, gradient checkpointing, bf16 autocast) on the same task-aware batches: each
query is a line of a page's text, its positive the page image, its hard negatives two other pages.

* plain:     one forward + backward over the whole per-device batch (memory grows with the batch).
* gradcache: chunks of ``--chunk`` inputs: a forward without graph, the loss's gradients at the cached
             embeddings, then a forward + backward per chunk (one extra forward; memory of one chunk).

Model FLOPs count useful work only (3 x the forward FLOPs of the vision tower and the bidirectional LLM on
the real tokens: no padding, no recomputation, not GradCache's extra forward). MFU is against 790 TFLOP/s
(the measured bf16 matmul ceiling of the H100/H200 machines). A mode that runs out of memory is recorded as
such. Prints a table and writes benchmarks/results/train_contrastive[-smoke].json (or --json PATH).
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import PEAK_BF16_FLOPS, device_name, print_table, write_json  # noqa: E402
from benchmarks.train_cpt import build_rows, sync, vision_forward_flops  # noqa: E402
from moca_train.data.pairs import write_pairs  # noqa: E402
from moca_train.modeling import flops_per_token  # noqa: E402
from moca_train.presets import build_model  # noqa: E402
from moca_train.processing import MAX_PIXELS, MIN_PIXELS  # noqa: E402
from moca_train.stages.common import enable_checkpointing, load_base_processor  # noqa: E402
from moca_train.stages.contrastive import ContrastiveConfig, ContrastiveTask, EncoderModel, PairSteps  # noqa: E402


def build_pairs(workdir: Path, pdfs: list[str], pages: int, dpi: int) -> Path:
    """Query (a line of the page's text) -> page image, hard negatives: the next two pages."""
    rows = [json.loads(line) for line in build_rows(workdir, pdfs, pages, dpi).read_text().splitlines()]
    pairs = []
    for i, r in enumerate(rows):
        words = r["text"].replace("<image>", "").split()
        pairs.append({"query": " ".join(words[:16]) or f"page {i}", "pos_image": r["images"][0],
                      "neg_images": [rows[(i + k) % len(rows)]["images"][0] for k in (1, 2)]})
    write_pairs(pairs, workdir / "pairs.jsonl")
    return workdir / "pairs.jsonl"


def step_flops(config, batch: dict) -> float:
    """Model FLOPs of one training step (3 x forward over every query and document, real tokens only)."""
    t = config.text_config
    layer = flops_per_token(config) / t.num_hidden_layers
    fwd = 0.0
    for chunk in batch["queries"] + batch["docs"]:
        lengths = chunk["attention_mask"].sum(1).double()
        fwd += t.num_hidden_layers * (layer * float(lengths.sum()) + 4 * t.hidden_size * float((lengths**2).sum()))
        if chunk.get("image_grid_thw") is not None:
            fwd += vision_forward_flops(config, chunk["image_grid_thw"])
    return 3 * fwd


def run_mode(name: str, cfg: ContrastiveConfig, processor, device: torch.device, amp: torch.dtype | None,
             steps: int, warmup: int, checkpointing: bool) -> dict:
    task = ContrastiveTask(cfg, processor)
    with torch.device(device):
        hf = build_model(cfg.base, task.processor.tokenizer, seed=0)
    model = EncoderModel(hf, cfg.pooling).to(device).train()
    if checkpointing:
        enable_checkpointing(hf)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr)
    source = PairSteps(task.files, task.collator(), cfg, rank=0, world=1, micro=1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)

    def autocast():
        return torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False)

    timed, flops, tokens, losses, oom = 0.0, 0.0, 0, [], False
    from moca_train.trainer import to_device

    try:
        for i in range(warmup + steps):
            batch = source.next_step()[0]  # data preparation is not timed (the trainer overlaps it in a thread)
            totals = task.counts(batch)
            batch_dev = to_device(batch, device)
            sync(device)
            t0 = time.perf_counter()
            metrics = task.forward_backward(model, batch_dev, totals, scale=1.0, autocast=autocast)
            torch.nn.utils.clip_grad_norm_(params, 5.0)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            sync(device)
            dt = time.perf_counter() - t0
            if i >= warmup:
                timed += dt
                flops += step_flops(hf.config, batch)
                tokens += int(batch["tokens"])
                losses.append(float(metrics["loss"]))
    except torch.OutOfMemoryError:
        oom = True
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del model, hf, optimizer, params
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    row = {"mode": name, "chunk": cfg.chunk_size or "-", "batch": cfg.batch_size, "hard_negatives": cfg.hard_negatives,
           "steps": len(losses), "peak_mem_gib": peak, "oom": oom}
    if losses:
        row.update(step_s=timed / len(losses), tokens_per_s=tokens / timed, tflops=flops / timed / 1e12,
                   mfu_pct=100 * flops / timed / PEAK_BF16_FLOPS, loss_last=losses[-1])
    return row


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shape on CPU, 2 steps per mode (checks the script)")
    ap.add_argument("--shape", default=None, help="model preset (default: 3b; tiny with --smoke)")
    ap.add_argument("--pdfs", nargs="*", default=[], help="PDFs to take pages from (default: examples/, .test-data)")
    ap.add_argument("--pages", type=int, default=None, help="pages (pairs) to cycle through")
    ap.add_argument("--batch-size", type=int, default=None, help="queries per device batch (paper: 24)")
    ap.add_argument("--chunk", type=int, default=None, help="GradCache chunk (inputs per pass)")
    ap.add_argument("--max-pixels", type=int, default=None, help="page resolution cap (default MoCa's 1024*28*28)")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--no-checkpointing", action="store_true", help="disable gradient checkpointing")
    ap.add_argument("--modes", default="plain,gradcache")
    ap.add_argument("--json", default=None, help="result file (default: results/train_contrastive[-smoke].json)")
    args = ap.parse_args(argv)

    smoke = args.smoke
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    if not smoke and device.type != "cuda":
        sys.exit("the 3B benchmark needs a CUDA device; use --smoke to check the script on CPU")
    shape = args.shape or ("tiny" if smoke else "3b")
    batch = args.batch_size or (3 if smoke else 24)
    chunk = args.chunk or (2 if smoke else 8)
    pages = args.pages or (8 if smoke else 96)
    steps = args.steps or (2 if smoke else 5)
    warmup = args.warmup if args.warmup is not None else (1 if smoke else 2)
    min_px, max_px = (16 * 28 * 28, 32 * 28 * 28) if smoke else (MIN_PIXELS, args.max_pixels or MAX_PIXELS)
    amp = torch.bfloat16 if device.type == "cuda" else None

    with tempfile.TemporaryDirectory() as tmp:
        pairs = build_pairs(Path(tmp), args.pdfs, pages, dpi=72 if smoke else 144)
        common = {"base": shape, "data": [str(pairs)], "min_pixels": min_px, "max_pixels": max_px,
                  "batch_size": batch, "hard_negatives": 2, "temperature": 0.03, "max_text_tokens": 64, "seed": 0,
                  "train": {"lr": 2e-5}}
        rows, processor = [], None
        for name in args.modes.split(","):
            cfg = ContrastiveConfig.from_dict({**common, "chunk_size": chunk if name == "gradcache" else 0})
            processor = processor or load_base_processor(cfg)
            row = run_mode(name, cfg, processor, device, amp, steps, warmup, not args.no_checkpointing)
            rows.append({"device": device_name(), "shape": shape, "dtype": "bf16" if amp else "float32", **row})
    print_table(rows, ["device", "shape", "dtype", "mode", "batch", "chunk", "step_s", "tokens_per_s", "tflops",
                       "mfu_pct", "peak_mem_gib", "oom"])
    payload = {"benchmark": "train_contrastive", "peak_flops": PEAK_BF16_FLOPS, "pages": pages, "rows": rows,
               "torch": torch.__version__}
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    else:
        write_json("train_contrastive-smoke" if smoke else "train_contrastive", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
