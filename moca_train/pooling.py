"""Turn a sequence of final hidden states into one embedding."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from .dtypes import at_least_float32

POOLINGS = ("mean", "eos")


def mean_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """MoCa: mean over every non-pad token (image tokens included)."""
    mask = attention_mask.to(hidden.dtype).unsqueeze(-1)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def last_token_pool(hidden: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
    """CoCoA: the state of the last non-pad token (the appended EOS). Assumes right padding."""
    last = attention_mask.long().sum(1) - 1
    return hidden[torch.arange(hidden.shape[0], device=hidden.device), last]


def pool(hidden: torch.Tensor, attention_mask: torch.Tensor, pooling: str = "mean", normalize: bool = True):
    if pooling == "mean":
        emb = mean_pool(hidden, attention_mask)
    elif pooling == "eos":
        emb = last_token_pool(hidden, attention_mask)
    else:
        raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
    # Normalise in float32: bf16 norms of 2-4k-dim vectors are visibly inexact.
    emb = at_least_float32(emb)
    return F.normalize(emb, dim=-1) if normalize else emb
