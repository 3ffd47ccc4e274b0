"""EOS-bridged reconstruction (CoCoA stage 2): [block A: image + text] [EOS] [block B: target text].

The block attention mask (RECIPE.md): A attends A (bidirectionally); EOS attends A and itself; B
attends EOS and B, never A. So B can be reconstructed only through the EOS state. (The public code lets
EOS attend B, which leaks the target into EOS: not here.) ``mask_ratio`` (70%) of B's tokens become
``<|mask|>``; each masked token is predicted from the position before it (next-token loss, labels
shifted as in a causal LM), so the first one is predicted from EOS itself.

The collator emits ``segments`` (0 pad, 1 A, 2 EOS, 3 B); `block_mask` turns them into the explicit
4-D mask ``[batch, 1, L, L]`` (True = may attend) that the model gives sdpa (boolean) or eager (additive).
A padding position attends only to itself, so no row of the mask is empty (sdpa would return NaN there).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..batching import modality_cost
from ..data.cpt import CPTRow
from .common import IGNORE_INDEX
from .cpt import CPTCollator

PAD, BLOCK_A, EOS, BLOCK_B = 0, 1, 2, 3


def block_mask(segments: torch.Tensor) -> torch.Tensor:
    """Boolean ``[batch, 1, L, L]``: may query i attend to key j (see module docstring)."""
    q, k = segments[:, :, None], segments[:, None, :]
    allowed = ((q == BLOCK_A) & (k == BLOCK_A)) | ((q == EOS) & ((k == BLOCK_A) | (k == EOS)))
    allowed |= (q == BLOCK_B) & ((k == EOS) | (k == BLOCK_B))
    n = segments.shape[1]
    eye = torch.eye(n, dtype=torch.bool, device=segments.device)[None]
    allowed |= (q == PAD) & eye
    return allowed[:, None]


def additive_mask(mask: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The boolean mask as eager attention wants it: 0 where allowed, the dtype's minimum elsewhere."""
    return torch.zeros(mask.shape, dtype=dtype, device=mask.device).masked_fill(~mask, torch.finfo(dtype).min)


@dataclass
class CocoaSample:
    a: object  # the block-A CPTSample (tokens with image runs, images, grids)
    b_ids: list[int]
    meta: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return self.a.length + 1 + len(self.b_ids)

    @property
    def cost(self) -> int:
        return modality_cost(self.a.text_tokens + 1 + len(self.b_ids), self.a.image_tokens, len(self.a.images))


class CocoaCollator:
    def __init__(self, processor, max_len: int = 1024, target_len: int = 128, mask_ratio: float = 0.7) -> None:
        if not 0.0 < mask_ratio <= 1.0:
            raise ValueError(f"mask_ratio must be in (0, 1], got {mask_ratio}")
        self.block_a = CPTCollator(processor, mlm_ratio=0.0, mae_ratio=0.0, max_len=max_len)
        self.tokenizer = processor.tokenizer
        self.eos_id = self.tokenizer.eos_token_id
        self.mask_id = self.block_a.mask_id
        self.pad_id = self.tokenizer.pad_token_id
        self.image_id = self.block_a.image_id
        self.target_len = target_len
        self.mask_ratio = mask_ratio

    def prepare(self, row) -> CocoaSample | None:
        """Tokenise A (images sized, never cut) and B (truncated to ``target_len``); None if either is empty."""
        a = self.block_a.prepare(CPTRow(row.text, row.images, base_dir=row.base_dir, source=row.source))
        b = self.block_a.text_ids(row.target or "")[: self.target_len]
        if a is None or not b:
            return None
        return CocoaSample(a, b, meta={"source": row.source})

    def __call__(self, samples: Sequence[CocoaSample], generator: torch.Generator | None = None) -> dict:
        if not samples:
            raise ValueError("empty batch")
        width = max(s.length for s in samples)
        n = len(samples)
        input_ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        segments = torch.zeros((n, width), dtype=torch.long)
        labels = torch.full((n, width), IGNORE_INDEX, dtype=torch.long)
        for i, s in enumerate(samples):
            la, lb = s.a.length, len(s.b_ids)
            b = torch.tensor(s.b_ids, dtype=torch.long)
            masked = torch.rand(lb, generator=generator) < self.mask_ratio
            if not masked.any():  # every row trains: at least one target
                masked[torch.randint(lb, (1,), generator=generator)] = True
            input_ids[i, :la] = torch.tensor(s.a.input_ids, dtype=torch.long)
            input_ids[i, la] = self.eos_id
            input_ids[i, la + 1: la + 1 + lb] = torch.where(masked, torch.full_like(b, self.mask_id), b)
            segments[i, :la], segments[i, la], segments[i, la + 1: la + 1 + lb] = BLOCK_A, EOS, BLOCK_B
            # Position p predicts token p + 1: the EOS predicts B's first token.
            labels[i, la: la + lb] = torch.where(masked, b, torch.full_like(b, IGNORE_INDEX))
        pixel_values, grid = self.block_a.pixels([s.a for s in samples])
        batch = {
            "input_ids": input_ids,
            "attention_mask": (segments != PAD).long(),
            "mm_token_type_ids": (input_ids == self.image_id).int(),
            "segments": segments,
            "labels": labels,
        }
        if pixel_values is not None:
            batch["pixel_values"] = pixel_values
            batch["image_grid_thw"] = grid
        return batch


__all__ = ["BLOCK_A", "BLOCK_B", "EOS", "PAD", "CocoaCollator", "CocoaSample", "additive_mask", "block_mask"]
