"""Which dtype the forward passes autocast to (bf16 on CUDA by default, float32 on CPU)."""

from __future__ import annotations

import torch


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp32":
        return None
    raise ValueError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")
