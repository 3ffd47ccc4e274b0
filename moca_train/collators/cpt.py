"""Collators: rows -> model inputs with the MoCa stage-1 corruptions.

`CPTCollator` works in two steps so that batching can see the cost of a row before any pixel is
decoded: `prepare(row)` tokenises the text, sizes each image from its file header and truncates
(never inside an image); `__call__(samples, generator)` decodes the images, pads, and applies

* MLM: every eligible text token is replaced by ``<|mask|>`` with probability ``mlm_ratio`` (no
  80/10/10); ``labels`` hold the original id there and -100 elsewhere, unshifted. Special tokens
  (pad, ``<|im_*|>``, vision markers, ``<|image_pad|>``, ``<|mask|>``) are never eligible.
* MAE: every merged visual token (2x2 ViT patches = 4 rows of ``pixel_values``) is chosen with
  probability ``mae_ratio``; ``mae_mask`` marks them and ``mae_targets`` holds their original
  normalised pixel rows. ``pixel_values`` stay unmasked here: the model replaces the chosen rows at
  the vision input (see `moca_train.stages.cpt`). With ``fill=True`` the batch also carries ``mae_fill``,
  the fresh random vector those rows become (MoCa's reference draws one per batch); it comes from the
  batch's generator, so it depends on the global micro-batch only, not on the number of ranks.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import torch

from ..batching import modality_cost
from ..data import IMAGE_PLACEHOLDER, CPTRow, image_size, load_image
from ..processing import image_grid, special_token_ids
from .common import IGNORE_INDEX, ensure_mask_token


@dataclass
class CPTSample:
    """A tokenised, truncated row: ``input_ids`` already hold each image's ``<|image_pad|>`` run."""

    input_ids: list[int]
    images: list[tuple[str, str]]  # (ref, base_dir)
    grids: list[tuple[int, int, int]]  # (t, h, w) in ViT patches, as the image processor will produce
    image_tokens: int
    truncated: bool = False
    meta: dict = field(default_factory=dict)

    @property
    def length(self) -> int:
        return len(self.input_ids)

    @property
    def text_tokens(self) -> int:
        return len(self.input_ids) - self.image_tokens

    @property
    def cost(self) -> int:
        """Modality-aware cost (text + 4 x image tokens + 2 x images) used by the batcher."""
        return modality_cost(self.text_tokens, self.image_tokens, len(self.images))


class CPTCollator:
    """MLM + MAE collator for interleaved rows (see module docstring). Token ids are looked up."""

    def __init__(
        self,
        processor,
        mlm_ratio: float = 0.4,
        mae_ratio: float = 0.5,
        max_len: int = 1280,
        pad_to: int | None = None,
        fill: bool = False,
    ) -> None:
        if not 0.0 <= mlm_ratio < 1.0 or not 0.0 <= mae_ratio < 1.0:
            raise ValueError(f"mask ratios must be in [0, 1): mlm={mlm_ratio}, mae={mae_ratio}")
        self.processor = processor
        self.tokenizer = tok = processor.tokenizer
        self.image_processor = ip = processor.image_processor
        self.mlm_ratio = mlm_ratio
        self.mae_ratio = mae_ratio
        self.max_len = max_len
        self.pad_to = pad_to  # a fixed padded length (the naive baseline of the benchmark)
        self.fill = fill
        self.mask_id = ensure_mask_token(tok)
        self.image_id = tok.convert_tokens_to_ids("<|image_pad|>")
        self.vision_start_id = tok.convert_tokens_to_ids("<|vision_start|>")
        self.vision_end_id = tok.convert_tokens_to_ids("<|vision_end|>")
        self.pad_id = tok.pad_token_id
        self.never_masked = torch.tensor(
            sorted(special_token_ids(tok) | {self.mask_id, self.image_id, self.vision_start_id, self.vision_end_id,
                                             tok.convert_tokens_to_ids("<|video_pad|>"), self.pad_id})
        )
        self.patch = ip.patch_size
        self.merge = ip.merge_size
        self.temporal = ip.temporal_patch_size
        self.row_dim = 3 * self.temporal * self.patch * self.patch  # 1176 for Qwen2/2.5-VL
        self.unit = self.merge * self.merge  # ViT patches per merged visual token

    # ---- step 1: tokenise, size images, truncate -------------------------------------------------------------
    def grid(self, size: tuple[int, int]) -> tuple[int, int, int]:
        """(t, h, w) ViT patches of an image of ``size`` (w, h) at this processor's resolution."""
        return image_grid(self.processor.image_processor, size)

    def text_ids(self, text: str) -> list[int]:
        if not text:
            return []
        # split_special_tokens: a page that prints "<|im_end|>" is text, not a control token.
        return self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]

    def prepare(self, row: CPTRow) -> CPTSample | None:
        """Tokenise a row; None when nothing of it fits. Raises `DataError` for an unreadable image.

        Truncation to ``max_len`` cuts text anywhere but never an image: an image that does not fit
        whole is dropped together with everything after it.
        """
        pieces = row.text.split(IMAGE_PLACEHOLDER)
        ids: list[int] = []
        images: list[tuple[str, str]] = []
        grids: list[tuple[int, int, int]] = []
        n_image_tokens = 0
        truncated = False
        for k, piece in enumerate(pieces):
            text_ids = self.text_ids(piece)
            room = self.max_len - len(ids)
            if len(text_ids) > room:
                ids.extend(text_ids[: max(room, 0)])
                truncated = True
                break
            ids.extend(text_ids)
            if k == len(pieces) - 1:
                break
            ref = row.images[k]
            grid = self.grid(image_size(ref, row.base_dir))
            n = grid[0] * grid[1] * grid[2] // self.unit
            if len(ids) + n + 2 > self.max_len:
                truncated = True
                break
            ids.extend([self.vision_start_id] + [self.image_id] * n + [self.vision_end_id])
            images.append((ref, row.base_dir))
            grids.append(grid)
            n_image_tokens += n
        if not ids:
            return None
        return CPTSample(ids, images, grids, n_image_tokens, truncated, meta={"source": row.source})

    # ---- step 2: decode, pad, corrupt ------------------------------------------------------------------------
    def pixels(self, samples: Sequence[CPTSample]) -> tuple[torch.Tensor | None, torch.Tensor | None]:
        """Normalised ``pixel_values`` rows and ``image_grid_thw`` for every image of the batch, in order."""
        refs = [ref for s in samples for ref in s.images]
        if not refs:
            return None, None
        pil = [load_image(ref, base) for ref, base in refs]
        out = self.image_processor(images=pil, return_tensors="pt")
        grid = out["image_grid_thw"]
        want = torch.tensor([g for s in samples for g in s.grids], dtype=grid.dtype)
        if not torch.equal(grid, want):
            raise RuntimeError(f"image processor produced grids {grid.tolist()}, prepare() expected {want.tolist()}")
        return out["pixel_values"].float(), grid

    def __call__(self, samples: Sequence[CPTSample], generator: torch.Generator | None = None) -> dict:
        if not samples:
            raise ValueError("empty batch")
        width = max(s.length for s in samples)
        if self.pad_to is not None:
            width = max(width, self.pad_to)
        input_ids = torch.full((len(samples), width), self.pad_id, dtype=torch.long)
        attention_mask = torch.zeros((len(samples), width), dtype=torch.long)
        for i, s in enumerate(samples):
            input_ids[i, : s.length] = torch.tensor(s.input_ids, dtype=torch.long)
            attention_mask[i, : s.length] = 1
        pixel_values, grid = self.pixels(samples)

        # MLM: one uniform draw per position, so the masked fraction tracks the ratio exactly in expectation.
        eligible = attention_mask.bool() & ~torch.isin(input_ids, self.never_masked)
        draw = torch.rand(input_ids.shape, generator=generator)
        mlm_mask = eligible & (draw < self.mlm_ratio)
        labels = torch.where(mlm_mask, input_ids, torch.full_like(input_ids, IGNORE_INDEX))
        masked_ids = torch.where(mlm_mask, torch.full_like(input_ids, self.mask_id), input_ids)

        # MAE: one draw per merged visual token (4 consecutive pixel rows).
        n_merged = 0 if pixel_values is None else pixel_values.shape[0] // self.unit
        mae_mask = torch.rand(n_merged, generator=generator) < self.mae_ratio
        if pixel_values is None:
            mae_targets = torch.zeros((0, self.unit, self.row_dim))
        else:
            mae_targets = pixel_values.view(n_merged, self.unit, self.row_dim)[mae_mask]

        batch = {
            "input_ids": masked_ids,
            "attention_mask": attention_mask,
            "mm_token_type_ids": (input_ids == self.image_id).int(),
            "labels": labels,
            "mae_mask": mae_mask,
            "mae_targets": mae_targets,
        }
        if pixel_values is not None:
            batch["pixel_values"] = pixel_values
            batch["image_grid_thw"] = grid
        if self.fill:  # drawn after the masks: the masks are the same with or without it
            batch["mae_fill"] = torch.randn(self.row_dim, generator=generator)
        return batch


__all__ = ["CPTCollator", "CPTSample"]
