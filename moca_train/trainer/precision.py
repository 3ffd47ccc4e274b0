"""The dtypes of a run: what the forward passes autocast to (bf16 on CUDA by default, none on CPU), and the
weights' dtype (float32; float64 for runs that must agree exactly with another run of other reduction order)."""

from __future__ import annotations

import torch

PRECISIONS = ("auto", "bf16", "fp32", "fp64")


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "bf16":
        return torch.bfloat16
    if precision in ("fp32", "fp64"):
        return None
    raise ValueError(f"unknown precision {precision!r}; choose {', '.join(PRECISIONS)}")


def weights_dtype(precision: str) -> torch.dtype:
    """float64 for ``fp64`` (the equivalence tests: float32 sums in another order differ by ~1e-6), else
    float32 master weights."""
    return torch.float64 if precision == "fp64" else torch.float32
