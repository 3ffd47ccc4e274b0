"""Losses and norms run in float32 at least: bf16 is too coarse for them, and a float64 run (the exact
equivalence tests) must stay float64 throughout."""

from __future__ import annotations

import torch


def at_least_float32(t: torch.Tensor) -> torch.Tensor:
    """``t`` in float32, or as it is when it is already float64."""
    return t if t.dtype == torch.float64 else t.float()


__all__ = ["at_least_float32"]
