"""CoCoA: EOS-bridged reconstruction, then contrastive learning with the EOS state as the embedding.

Phase 1 (this stage's model): the sequence [A: image + text] [EOS] [B: caption / answer / page text]
runs through the bidirectional backbone under the block mask of `moca_train.collators.cocoa` (B sees
only EOS and itself; EOS never sees B); 70% of B is masked and predicted with a next-token loss through
the pretrained ``lm_head``. The mask is an explicit 4-D tensor: boolean for sdpa, additive for eager.
Flash-attention kernels take only padding masks (no arbitrary 4-D block mask), so they are refused.
M-RoPE positions are computed here from the 2-D padding mask (the model cannot derive them from a 4-D one).

Phase 2 (``contrastive:`` in the config): `moca_train.stages.contrastive` from phase 1's encoder with
``pooling: eos`` (RECIPE.md: temperature 0.02). ``train.out`` then holds phase 1 in ``reconstruction/`` and
the final encoder at its top.

Run: ``docrag train cocoa --config cocoa.yaml`` or
``torchrun --nproc_per_node 8 -m moca_train.stages.cocoa --config moca_train/configs/cocoa_3b.yaml``.
"""

from __future__ import annotations

import copy
import inspect
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..collators.cocoa import CocoaCollator, additive_mask, block_mask
from ..collators.common import IGNORE_INDEX
from ..data.cocoa import CocoaStream
from ..dtypes import at_least_float32
from ..processing import MAX_PIXELS, MIN_PIXELS
from ..trainer import TrainConfig, Trainer
from .common import (
    PooledSteps,
    StageConfig,
    add_lora,
    budget_groups,
    enable_checkpointing,
    idle_vision,
    load_base,
    load_base_processor,
    save_encoder,
    shard_units,
    stage_main,
    write_stage_config,
)

BLOCK_MASK_ATTENTION = ("sdpa", "eager")


@dataclass
class CocoaConfig(StageConfig):
    base: str = "tiny"  # a warmed-up (e.g. CPT) encoder folder, a hub id, or a preset
    data: list = field(default_factory=list)  # CoCoA rows (see moca_train.data.cocoa): "a.jsonl[:w]" or {path, weight}
    processor: str | None = None
    family: str = "qwen2_5_vl"
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    max_len: int = 1024  # block A (images never cut)
    target_len: int = 128  # block B tokens
    mask_ratio: float = 0.7
    batching: str = "budget"
    token_budget: int = 16384
    max_batch: int | None = None
    batch_size: int = 8
    pool_rows: int = 256
    shuffle_buffer: int = 0
    attn_implementation: str = "sdpa"  # sdpa | eager (flash-attention cannot take the block mask)
    lora: dict | None = None
    seed: int = 0
    contrastive: dict | None = None  # phase 2 settings (a contrastive config; base and pooling are set here)
    train: TrainConfig = field(default_factory=TrainConfig)

    PREFIX = "cocoa"
    LABEL = "CoCoA"


def check_block_mask_support(attn_implementation: str) -> None:
    if attn_implementation not in BLOCK_MASK_ATTENTION:
        raise ValueError(f"attention {attn_implementation!r} cannot apply CoCoA's block attention mask "
                         f"(flash-attention kernels take padding masks only); use sdpa or eager")


def rope_positions(model: nn.Module, batch: dict) -> torch.Tensor:
    """[3, B, L] M-RoPE positions from the 2-D padding mask (what the model would compute without a 4-D mask)."""
    attention_mask = batch["attention_mask"]
    if batch.get("image_grid_thw") is None:
        pos = (attention_mask.long().cumsum(-1) - 1).clamp(min=0)
        return pos[None].expand(3, -1, -1)
    fn = model.model.get_rope_index
    kwargs = {"image_grid_thw": batch["image_grid_thw"], "attention_mask": attention_mask}
    if "mm_token_type_ids" in inspect.signature(fn).parameters:  # transformers >= 5.2x
        kwargs["mm_token_type_ids"] = batch["mm_token_type_ids"]
    return fn(batch["input_ids"], **kwargs)[0]


class CocoaModel(nn.Module):
    """A Qwen-VL model trained to rebuild block B through the EOS state."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        check_block_mask_support(model.config._attn_implementation)
        self.model = model

    def hidden_states(self, batch: dict) -> torch.Tensor:
        hf = self.model
        mask = block_mask(batch["segments"])
        if hf.config._attn_implementation == "eager":
            mask = additive_mask(mask, torch.float32)
        out = hf.model(
            input_ids=batch["input_ids"],
            attention_mask=mask,
            position_ids=rope_positions(hf, batch),
            pixel_values=batch.get("pixel_values"),
            image_grid_thw=batch.get("image_grid_thw"),
            mm_token_type_ids=batch.get("mm_token_type_ids"),
            use_cache=False,
        )
        return out.last_hidden_state

    def forward(self, batch: dict, totals: dict[str, float]) -> tuple[torch.Tensor, dict]:
        # FSDP: every rank runs the vision tower, and first, as an image batch does.
        extra = idle_vision(self.model, batch["input_ids"].device) if batch.get("pixel_values") is None else None
        hidden = self.hidden_states(batch)
        labels = batch["labels"]
        sel = labels != IGNORE_INDEX
        logits = at_least_float32(self.model.lm_head(hidden[sel]))
        n = max(totals.get("targets", 0.0), 1.0)
        loss = F.cross_entropy(logits, labels[sel], reduction="sum") / n
        acc = (logits.argmax(-1) == labels[sel]).sum() / n
        if extra is not None:
            loss = loss + 0.0 * extra
        return loss, {"loss": loss.detach(), "acc": acc.detach(), "tokens": batch["attention_mask"].sum().detach()}


class CocoaSteps(PooledSteps):
    def __init__(self, config: CocoaConfig, collator: CocoaCollator, rank: int, world: int, micro: int) -> None:
        stream = CocoaStream(config.data, seed=config.seed, loop=True, shuffle_buffer=config.shuffle_buffer)
        super().__init__(stream, collator.prepare, collator, budget_groups(config), config.pool_rows, config.seed,
                         rank, world, micro)


class CocoaTask:
    """CoCoA phase 1 (EOS-bridged reconstruction) for `moca_train.trainer.Trainer`."""

    def __init__(self, config: CocoaConfig) -> None:
        check_block_mask_support(config.attn_implementation)
        if not config.data:
            raise ValueError("no training data: give at least one JSONL source")
        self.config = config
        self.processor = load_base_processor(config)
        self.model_config = None

    def build_model(self) -> CocoaModel:
        model, _ = load_base(self.config, self.processor)
        self.model_config = model.config
        if self.config.lora:
            add_lora(model, self.config.lora)
        return CocoaModel(model)

    def shard_units(self, model: CocoaModel) -> list[nn.Module]:
        return shard_units(model.model)

    def enable_gradient_checkpointing(self, model: CocoaModel) -> None:
        enable_checkpointing(model.model)

    def make_steps(self, rank: int, world: int, micro_batches: int) -> CocoaSteps:
        cfg = self.config
        collator = CocoaCollator(self.processor, max_len=cfg.max_len, target_len=cfg.target_len,
                                 mask_ratio=cfg.mask_ratio)
        return CocoaSteps(cfg, collator, rank, world, micro_batches)

    def counts(self, batch: dict) -> dict[str, float]:
        return {"targets": float((batch["labels"] != IGNORE_INDEX).sum())}

    def loss(self, model: CocoaModel, batch: dict, totals: dict[str, float]):
        return model(batch, totals)

    def export(self, state_dict: dict[str, torch.Tensor], out: Path) -> None:
        save_encoder(state_dict, self.model_config, self.processor, out, lora=self.config.lora,
                     extra={"stage": "cocoa-reconstruction", "base": self.config.base, "pooling": "eos"})


def contrastive_phase(config: CocoaConfig, encoder_dir: str):
    """Phase 2's config: the ``contrastive`` settings from phase 1's encoder, EOS pooling, into train.out."""
    from .contrastive import ContrastiveConfig

    d = copy.deepcopy(config.contrastive or {})
    d["base"], d["pooling"] = encoder_dir, "eos"
    d.setdefault("min_pixels", config.min_pixels)
    d.setdefault("max_pixels", config.max_pixels)
    d.setdefault("seed", config.seed)
    train = {**{k: v for k, v in vars(config.train).items() if k in ("precision", "strategy", "tensorboard")},
             **(d.get("train") or {})}
    train["out"] = config.train.out
    d["train"] = train
    return ContrastiveConfig.from_dict(d)


def run_cocoa(config: CocoaConfig) -> dict:
    """Phase 1, then (with ``contrastive`` settings) phase 2; returns the last phase's trainer summary
    with ``phases`` holding both. Rerunning resumes whichever phase stopped."""
    if not config.contrastive:
        write_stage_config(config, "cocoa")
        return Trainer(config.train, CocoaTask(config)).fit()
    from .contrastive import ContrastiveTask

    recon = copy.deepcopy(config)
    recon.train.out = str(Path(config.train.out) / "reconstruction")
    phase2 = contrastive_phase(config, recon.train.out)  # validated before hours of phase 1
    write_stage_config(config, "cocoa")
    first = Trainer(recon.train, CocoaTask(recon)).fit()
    if not first["exported"]:
        return {**first, "phases": {"reconstruction": first}}
    second = Trainer(phase2.train, ContrastiveTask(phase2)).fit()
    return {**second, "phases": {"reconstruction": first, "contrastive": second}}


def main(argv: list[str] | None = None) -> int:
    return stage_main(argv, "python -m moca_train.stages.cocoa", "CoCoA (EOS-bridged reconstruction + CL).",
                      CocoaConfig, run_cocoa)


__all__ = ["CocoaConfig", "CocoaModel", "CocoaTask", "check_block_mask_support", "rope_positions", "run_cocoa"]


if __name__ == "__main__":
    sys.exit(main())
