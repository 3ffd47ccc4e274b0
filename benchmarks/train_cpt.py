"""CPT (MoCa stage 1) training-step throughput and model FLOPs utilisation, against a naive baseline.

    python benchmarks/train_cpt.py            # GPU: Qwen2.5-VL-3B shape, random weights, bf16, real PDF pages
    python benchmarks/train_cpt.py --smoke    # CPU: tiny shape, small pages, 2 steps per mode (checks it runs)

Both modes run the same CPT step (MLM + MAE, AdamW, grad clipping, gradient checkpointing, bf16 autocast)
on the same rows:

* docrag: sdpa attention, token-budget micro-batches with the modality-aware cost, length-bucketed.
* naive:  eager attention, fixed-size batches padded to max_len.

Model FLOPs count useful work only (no padding, no recomputation): 3 x the forward FLOPs of the vision
tower, the bidirectional LLM, the MAE decoder layer and both heads. MFU is against 790 TFLOP/s (the
measured bf16 matmul ceiling of the H100/H200 machines). Prints a table and writes
benchmarks/results/train_cpt[-smoke].json (or --json PATH).
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
from benchmarks.common import PEAK_BF16_FLOPS, ROOT, device_name, print_table, write_json  # noqa: E402
from moca_train.collators import IGNORE_INDEX, CPTCollator  # noqa: E402
from moca_train.modeling import flops_per_token  # noqa: E402
from moca_train.presets import build_model  # noqa: E402
from moca_train.processing import MAX_PIXELS, MIN_PIXELS  # noqa: E402
from moca_train.stages.cpt import CPTConfig, CPTModel, CPTSteps, enable_checkpointing, load_base_processor  # noqa: E402

PAGE_TEXT = ("Quarterly report. Revenue by region grew in every market while operating costs fell. "
             "Table 3 lists the inverter faults after rain; section 4 explains the cleaning schedule. ") * 6


# ---- data: real PDF pages as CPT rows ------------------------------------------------------------------------


def pdf_sources(paths: list[str]) -> list[Path]:
    if paths:
        return [Path(p) for p in paths]
    found = sorted((ROOT / "examples").glob("*.pdf")) + sorted((ROOT / ".test-data" / "debian").glob("*.pdf*"))
    return found


def synthetic_pdf(path: Path, pages: int) -> Path:
    """A text PDF made with PyMuPDF (when no real PDFs are around, e.g. on a bare GPU machine)."""
    import pymupdf

    doc = pymupdf.open()
    for k in range(pages):
        page = doc.new_page(width=595, height=842)
        page.insert_textbox(pymupdf.Rect(50, 50, 545, 800), f"Page {k + 1}. " + PAGE_TEXT, fontsize=11)
        page.draw_rect(pymupdf.Rect(60, 600, 300 + 3 * k, 760), color=(0, 0, 0.6), fill=(0.8, 0.85, 1.0))
    doc.save(str(path))
    return path


def build_rows(workdir: Path, pdfs: list[str], pages: int, dpi: int) -> Path:
    from moca_train.data import build_cpt_data

    sources = pdf_sources(pdfs) or [synthetic_pdf(workdir / "synthetic.pdf", pages)]
    out = workdir / "cpt.jsonl"
    report = build_cpt_data(sources, out, dpi=dpi, max_pages=max(1, pages // max(1, len(sources))) + 1)
    lines = out.read_text().splitlines()[:pages]
    if not lines:
        raise SystemExit(f"no pages rendered from {', '.join(map(str, sources))}: {report.problems[:3]}")
    out.write_text("\n".join(lines) + "\n")
    return out


# ---- FLOPs -----------------------------------------------------------------------------------------------------


def vision_forward_flops(config, grids: torch.Tensor) -> float:
    """Vision tower forward FLOPs for images of ``grids`` (t, h, w) patches: matmuls + (windowed) attention."""
    v = config.vision_config
    h, inter = v.hidden_size, v.intermediate_size
    window = (v.window_size // v.patch_size) ** 2  # patches per attention window
    total = 0.0
    for t, gh, gw in grids.tolist():
        n = t * gh * gw
        total += 2 * n * 3 * v.temporal_patch_size * v.patch_size**2 * h  # patch embedding
        total += v.depth * 2 * n * (4 * h * h + 3 * h * inter)  # qkv + proj + SwiGLU MLP
        full = len(v.fullatt_block_indexes)
        total += 4 * h * n * (full * n + (v.depth - full) * min(n, window))  # QK^T and AV
        m = n // v.spatial_merge_size**2
        total += 2 * m * (16 * h * h + 4 * h * v.out_hidden_size)  # patch merger MLP
    return total


def cpt_step_flops(config, batch: dict) -> float:
    """Model FLOPs of one training step on ``batch`` (3 x forward; padding and recomputation excluded)."""
    t = config.text_config
    lengths = batch["attention_mask"].sum(1).double()
    tokens = float(lengths.sum())
    layer = flops_per_token(config) / t.num_hidden_layers  # one decoder layer's matmuls per token
    attn = 4 * t.hidden_size * float((lengths**2).sum())  # per layer
    fwd = (t.num_hidden_layers + 1) * (layer * tokens + attn)  # backbone + MAE decoder layer
    fwd += 2 * t.hidden_size * t.vocab_size * float((batch["labels"] != IGNORE_INDEX).sum())  # MLM head
    fwd += 2 * t.hidden_size * batch["mae_targets"].shape[1:].numel() * float(batch["mae_mask"].sum())  # MAE head
    if batch.get("image_grid_thw") is not None:
        fwd += vision_forward_flops(config, batch["image_grid_thw"])
    return 3 * fwd


# ---- one mode --------------------------------------------------------------------------------------------------


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_mode(name: str, cfg: CPTConfig, processor, device: torch.device, amp: torch.dtype | None,
             steps: int, warmup: int, checkpointing: bool) -> dict:
    with torch.device(device):
        hf = build_model(cfg.base, processor.tokenizer, seed=0)
    hf.set_attn_implementation(cfg.attn_implementation)
    model = CPTModel(hf, mask_fill=cfg.mask_fill, mae_weight=cfg.mae_weight).to(device).train()
    if checkpointing:
        enable_checkpointing(hf)
    params = [p for p in model.parameters() if p.requires_grad]
    optimizer = torch.optim.AdamW(params, lr=cfg.train.lr)
    collator = CPTCollator(processor, mlm_ratio=cfg.mlm_ratio, mae_ratio=cfg.mae_ratio, max_len=cfg.max_len,
                           pad_to=cfg.max_len if cfg.batching == "fixed" else None, fill=cfg.mask_fill == "per_batch")
    source = CPTSteps(cfg, collator, rank=0, world=1, micro=1)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    timed, flops, tokens, padded, losses = 0.0, 0.0, 0, 0, []
    for i in range(warmup + steps):
        batch = source.next_step()[0]  # data preparation is not timed (the trainer overlaps it in a thread)
        counts = {"mlm": float((batch["labels"] != IGNORE_INDEX).sum()), "mae": float(batch["mae_mask"].sum())}
        batch_dev = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
        sync(device)
        t0 = time.perf_counter()
        ctx = torch.autocast(device.type, dtype=amp) if amp else torch.autocast(device.type, enabled=False)
        with ctx:
            loss, metrics = model(batch_dev, counts)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 5.0)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        sync(device)
        dt = time.perf_counter() - t0
        if i >= warmup:
            timed += dt
            flops += cpt_step_flops(hf.config, batch)
            tokens += int(batch["attention_mask"].sum())
            padded += batch["attention_mask"].numel()
            losses.append(float(metrics["loss"]))
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    del model, hf, optimizer, params
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    return {
        "mode": name, "attention": cfg.attn_implementation,
        "batching": (f"token budget {cfg.token_budget}" if cfg.batching == "budget"
                     else f"fixed {cfg.batch_size} x {cfg.max_len}"),
        "steps": steps, "step_s": timed / steps, "tokens_per_s": tokens / timed,
        "padding_pct": 100 * (1 - tokens / padded),
        "tflops": flops / timed / 1e12, "mfu_pct": 100 * flops / timed / PEAK_BF16_FLOPS,
        "peak_mem_gib": peak, "loss_last": losses[-1],
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny shape on CPU, 2 steps per mode (checks the script)")
    ap.add_argument("--shape", default=None, help="model preset (default: 3b; tiny with --smoke)")
    ap.add_argument("--pdfs", nargs="*", default=[], help="PDFs to take pages from (default: examples/, .test-data)")
    ap.add_argument("--pages", type=int, default=None, help="rows (PDF pages) to cycle through")
    ap.add_argument("--steps", type=int, default=None, help="timed steps per mode")
    ap.add_argument("--warmup", type=int, default=None)
    ap.add_argument("--token-budget", type=int, default=None, help="docrag mode: cost budget per micro-batch")
    ap.add_argument("--batch-size", type=int, default=None, help="naive mode: rows per padded batch")
    ap.add_argument("--no-checkpointing", action="store_true", help="disable gradient checkpointing")
    ap.add_argument("--modes", default="docrag,naive")
    ap.add_argument("--json", default=None, help="result file (default: benchmarks/results/train_cpt[-smoke].json)")
    args = ap.parse_args(argv)

    smoke = args.smoke
    device = torch.device("cuda" if torch.cuda.is_available() and not smoke else "cpu")
    if not smoke and device.type != "cuda":
        sys.exit("the 3B benchmark needs a CUDA device; use --smoke to check the script on CPU")
    shape = args.shape or ("tiny" if smoke else "3b")
    pages = args.pages or (6 if smoke else 64)
    steps = args.steps or (2 if smoke else 10)
    warmup = args.warmup if args.warmup is not None else (1 if smoke else 3)
    min_px, max_px = (16 * 28 * 28, 32 * 28 * 28) if smoke else (MIN_PIXELS, MAX_PIXELS)
    max_len = 128 if smoke else 1280
    amp = torch.bfloat16 if device.type == "cuda" else None

    with tempfile.TemporaryDirectory() as tmp:
        jsonl = build_rows(Path(tmp), args.pdfs, pages, dpi=72 if smoke else 144)
        common = dict(base=shape, data=[str(jsonl)], min_pixels=min_px, max_pixels=max_px, max_len=max_len,
                      pool_rows=pages, seed=0)
        configs = {
            "docrag": CPTConfig.from_dict({**common, "batching": "budget", "attn_implementation": "sdpa",
                                           "token_budget": args.token_budget or (768 if smoke else 24576)}),
            "naive": CPTConfig.from_dict({**common, "batching": "fixed", "attn_implementation": "eager",
                                          "batch_size": args.batch_size or (2 if smoke else 4)}),
        }
        processor = load_base_processor(configs["docrag"])
        rows = []
        for name in args.modes.split(","):
            row = run_mode(name, configs[name], processor, device, amp, steps, warmup, not args.no_checkpointing)
            rows.append({"device": device_name(), "shape": shape, "dtype": "bf16" if amp else "float32", **row})
    print_table(rows, ["device", "shape", "dtype", "mode", "attention", "batching", "step_s", "tokens_per_s",
                       "padding_pct", "tflops", "mfu_pct", "peak_mem_gib"])
    payload = {"benchmark": "train_cpt", "peak_flops": PEAK_BF16_FLOPS, "pages": pages, "rows": rows,
               "torch": torch.__version__}
    if args.json:
        Path(args.json).write_text(json.dumps(payload, indent=2) + "\n")
        print(f"\nwrote {args.json}")
    else:
        write_json("train_cpt-smoke" if smoke else "train_cpt", payload)
    return 0


if __name__ == "__main__":
    sys.exit(main())
