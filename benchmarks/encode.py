"""Encoder throughput: token-budget batches vs a one-page-at-a-time loop (what byaldi does).

    python benchmarks/encode.py                 # CPU, `small` preset, 144-dpi A4 pages
    python benchmarks/encode.py --gpu-3b        # also bf16 at the Qwen2.5-VL-3B shape (needs CUDA)

Prints a table and writes benchmarks/results/encode[-<device>].json.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from benchmarks.common import PEAK_BF16_FLOPS, a4_pages, device_name, print_table, write_json  # noqa: E402
from moca_train.modeling import MoCaEncoder, flops_per_token  # noqa: E402
from moca_train.presets import build_model, init_checkpoint  # noqa: E402
from moca_train.processing import MIN_PIXELS, load_processor  # noqa: E402

QUERIES = ["quarterly revenue by region", "how do I clean solar panels", "visitors in July",
           "inverter isolation fault after rain", "multiple choice exam scanning"] * 8


def _timed(fn) -> float:
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    t = time.perf_counter()
    fn()
    if torch.cuda.is_available():
        torch.cuda.synchronize()
    return time.perf_counter() - t


def vision_flops(config, patches: int) -> float:
    """Forward FLOPs of the vision tower for ``patches`` 14x14 patches (2 x params x patches + attention)."""
    v = config.vision_config
    hidden = v.hidden_size
    inter = getattr(v, "intermediate_size", None) or int(hidden * getattr(v, "mlp_ratio", 4))
    per_layer = 2 * patches * (4 * hidden * hidden + 3 * hidden * inter)
    window = getattr(v, "window_size", 112) // v.patch_size
    attn_span = min(patches, window * window)  # windowed layers attend within windows
    per_layer_attn = 4 * patches * attn_span * hidden
    return v.depth * (per_layer + per_layer_attn)


def page_flops(config, n_tokens: int, n_visual: int) -> float:
    t = config.text_config
    attn = 4 * n_tokens * n_tokens * t.hidden_size * t.num_hidden_layers  # QK^T and AV
    return flops_per_token(config) * n_tokens + attn + vision_flops(config, 4 * n_visual)


def bench_cpu(n_pages: int, preset: str) -> list[dict]:
    pages = a4_pages(n_pages)
    with tempfile.TemporaryDirectory() as d:
        enc = MoCaEncoder.from_pretrained(init_checkpoint(preset, Path(d) / preset))
    enc.encode_documents(pages[:1])  # warm-up
    rows = []
    t_batch = _timed(lambda: enc.encode_documents(pages))
    t_loop = _timed(lambda: [enc.encode_documents([p]) for p in pages])
    q_batch = _timed(lambda: enc.encode_queries(QUERIES))
    q_loop = _timed(lambda: [enc.encode_queries([q]) for q in QUERIES])
    common = {"device": device_name(), "model": preset, "dtype": "float32",
              "page_px": f"{pages[0].size[0]}x{pages[0].size[1]}"}
    for what, n, t, mode in (("pages", len(pages), t_batch, "token-budget batches"),
                             ("pages", len(pages), t_loop, "one at a time"),
                             ("queries", len(QUERIES), q_batch, "token-budget batches"),
                             ("queries", len(QUERIES), q_loop, "one at a time")):
        rows.append({**common, "what": what, "mode": mode, "n": n, "per_s": n / t})
    return rows


def gpu_encoder(preset: str = "3b", device: str = "cuda", dtype: torch.dtype = torch.bfloat16,
                attn: str = "sdpa", max_pixels: int | None = None) -> MoCaEncoder:
    """A randomly initialised encoder of ``preset``'s shape, its weights made on ``device`` in ``dtype`` (a 3B model
    never passes through the 15 GB of a float32 copy on the CPU); pages up to ``max_pixels`` (default MoCa's)."""
    processor = load_processor(min_pixels=min(MIN_PIXELS, max_pixels) if max_pixels else None, max_pixels=max_pixels)
    with torch.device(device):
        model = build_model(preset, processor.tokenizer, dtype=dtype)
    model.set_attn_implementation(attn)
    return MoCaEncoder(model, processor)


def page_rows(enc: MoCaEncoder, pages: list, label: str,
              modes: tuple[str, ...] = ("token-budget batches", "one at a time")) -> list[dict]:
    """pages/s and MFU of ``enc`` on ``pages`` per mode (after a 4-page warm-up)."""
    model = enc.model
    visual = [enc.image_tokens(p.size) for p in pages]  # pages of other sizes have other token counts
    flops = sum(page_flops(model.config, v + 12, v) for v in visual)
    dtype = str(next(model.parameters()).dtype).removeprefix("torch.").replace("bfloat16", "bf16")
    enc.encode_documents(pages[:4])
    runs = {"token-budget batches": lambda: enc.encode_documents(pages),
            "one at a time": lambda: [enc.encode_documents([p]) for p in pages]}
    rows = []
    for mode in modes:
        t = _timed(runs[mode])
        rows.append({"device": device_name(), "model": label, "dtype": dtype, "what": "pages", "mode": mode,
                     "n": len(pages), "visual_tokens": sum(visual) / len(visual), "per_s": len(pages) / t,
                     "tflops": flops / t / 1e12, "mfu_pct": 100 * flops / t / PEAK_BF16_FLOPS})
    return rows


def bench_gpu_3b(n_pages: int) -> list[dict]:
    return page_rows(gpu_encoder("3b"), a4_pages(n_pages), "3b (random)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pages", type=int, default=16)
    parser.add_argument("--preset", default="small")
    parser.add_argument("--gpu-3b", action="store_true", help="also measure bf16 at the 3B shape (CUDA)")
    args = parser.parse_args()
    rows = bench_cpu(args.pages, args.preset) if not torch.cuda.is_available() else []
    if args.gpu_3b:
        if not torch.cuda.is_available():
            sys.exit("--gpu-3b needs a CUDA device")
        rows += bench_gpu_3b(max(args.pages, 64))
    print_table(rows, ["device", "model", "dtype", "what", "mode", "n", "per_s", "tflops", "mfu_pct"])
    write_json("encode-gpu" if torch.cuda.is_available() else "encode-cpu", {"rows": rows})


if __name__ == "__main__":
    main()
