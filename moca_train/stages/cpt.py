"""Stage 1: modality-aware continual pre-training (MoCa CPT) on the shared trainer.

The model is the bidirectional Qwen-VL backbone with two reconstruction heads:

* MLM: the pretrained ``lm_head`` predicts each masked text token at its own position (unshifted); or, with
  ``text_objective: mntp`` (CoCoA's warm-up, LLM2Vec's masked next-token prediction), from the position
  before it (labels shifted as in causal LM).
* MAE: masked merged visual tokens are replaced at the vision input (by default a fresh random vector per
  batch, as MoCa's reference code; or one random vector for the run, or a learned one), and an extra
  bidirectional decoder layer -- a copy of the middle LLM layer, run over the whole final hidden-state
  sequence with the backbone's own mask and positions -- feeds ``Linear(hidden, 4 * 1176)``, which
  reconstructs the 4 normalised pixel rows of each masked token.

Loss = MLM (or MNTP) + w * MAE. CoCoA's stage 1 is this stage with ``text_objective: mntp``, 20% of text
tokens and 50% of patches masked (``configs/cpt_cocoa_*.yaml``). The exported checkpoint is a plain encoder
(`MoCaEncoder.from_pretrained` loads it); the MAE decoder, head and fill vector are stored aside in
``OUT/cpt_heads.safetensors``.

Run: ``docrag train cpt --config cpt.yaml`` or, on several GPUs,
``torchrun --nproc_per_node 8 -m moca_train.stages.cpt --config moca_train/configs/cpt_3b.yaml``.
"""

from __future__ import annotations

import copy
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from ..collators import IGNORE_INDEX, CPTCollator
from ..data import CPTStream
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
    merge_lora,
    resolve_config,
    save_encoder,
    shard_units,
    stage_main,
    write_stage_config,
)

HEADS_FILE = "cpt_heads.safetensors"
TEXT_OBJECTIVES = ("mlm", "mntp")
# What masked pixel rows become. per_batch: a fresh random vector per micro-batch (MoCa's reference code draws
# one per batch); fixed: one random vector for the whole run (docrag before 2026-12; "random" is its old name);
# learned: a trained vector (a fair alternative, RECIPE.md).
MASK_FILLS = ("per_batch", "fixed", "learned")


# ---- configuration ---------------------------------------------------------------------------------------------


@dataclass
class CPTConfig(StageConfig):
    base: str = "tiny"  # a preset name (random init), or a checkpoint folder / hub id
    data: list = field(default_factory=list)  # JSONL sources: "a.jsonl", "a.jsonl:0.3" or {path, weight}
    processor: str | None = None  # tokenizer + image processor (default: the base's, else the offline one)
    family: str = "qwen2_5_vl"  # for presets
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    max_len: int = 1280
    mlm_ratio: float = 0.4
    text_objective: str = "mlm"  # mlm (MoCa: unshifted) | mntp (CoCoA warm-up: predicted from the position before)
    mae_ratio: float = 0.5
    mae_weight: float = 0.5  # paper's best; the reference script uses 0.1
    mask_fill: str = "per_batch"  # see MASK_FILLS
    batching: str = "budget"  # budget (token-budget, length-bucketed) | fixed (batch_size rows padded to max_len)
    token_budget: int = 16384  # modality-aware cost per micro-batch (padded: longest cost x rows)
    max_batch: int | None = None
    batch_size: int = 8  # for batching: fixed
    pool_rows: int = 256  # rows read ahead and bucketed together
    shuffle_buffer: int = 0
    attn_implementation: str = "sdpa"
    lora: dict | None = None  # {r, alpha, dropout, target_modules}: LoRA instead of full fine-tuning
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    PREFIX = "cpt"
    LABEL = "CPT"


# ---- the model -------------------------------------------------------------------------------------------------


class CPTModel(nn.Module):
    """Backbone (a Qwen-VL ``*ForConditionalGeneration``) + MAE decoder layer + MAE head."""

    def __init__(self, model: nn.Module, mask_fill: str = "per_batch", mae_weight: float = 0.5, seed: int = 0,
                 mntp: bool = False) -> None:
        super().__init__()
        self.model = model
        self.mntp = mntp
        cfg = model.config
        text = cfg.text_config
        vision = cfg.vision_config
        layers = model.model.language_model.layers
        self.mae_decoder = copy.deepcopy(layers[len(layers) // 2])
        self.unit = vision.spatial_merge_size**2
        self.row_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
        self.mae_head = nn.Linear(text.hidden_size, self.unit * self.row_dim)
        mask_fill = "fixed" if mask_fill == "random" else mask_fill  # configs written before per_batch existed
        if mask_fill == "fixed":
            self.register_buffer("mae_fill", torch.randn(self.row_dim, generator=torch.Generator().manual_seed(seed)))
        elif mask_fill == "learned":
            self.mae_fill = nn.Parameter(torch.zeros(self.row_dim))
        elif mask_fill == "per_batch":
            self.mae_fill = None  # each batch's own ``mae_fill``
        else:
            raise ValueError(f"unknown mask_fill {mask_fill!r}; choose {', '.join(MASK_FILLS)}")
        self.mae_weight = mae_weight
        self.image_token_id = cfg.image_token_id
        # The decoder layer must see exactly what the backbone's layers see (mask format for the attention
        # implementation, M-RoPE cos/sin): capture the first layer's keyword inputs on every forward.
        self._layer_kwargs: dict = {}
        self._capturing = False  # not during checkpoint recomputation in backward
        layers[0].register_forward_pre_hook(self._capture, with_kwargs=True)

    def _capture(self, module, args, kwargs):
        if self._capturing:
            self._layer_kwargs = {k: v for k, v in kwargs.items() if k != "hidden_states"}

    def fill_for(self, batch: dict) -> torch.Tensor:
        """The vector masked pixel rows become in ``batch``."""
        if self.mae_fill is not None:
            return self.mae_fill
        if "mae_fill" not in batch:
            raise ValueError("mask_fill per_batch needs batches from CPTCollator(fill=True)")
        return batch["mae_fill"]

    def forward(self, batch: dict, totals: dict[str, float]) -> tuple[torch.Tensor, dict]:
        hf = self.model
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        pixel_values, grid = batch.get("pixel_values"), batch.get("image_grid_thw")
        mae_mask = batch["mae_mask"]
        extra = None
        if pixel_values is not None:
            # MAE corruption at the vision input: the 4 rows of each chosen merged token become the fill.
            rows = mae_mask.repeat_interleave(self.unit)[:, None]
            pixel_values = torch.where(rows, self.fill_for(batch).to(pixel_values.dtype)[None], pixel_values)
        else:
            # Every rank must run every sharded module in the same order (FSDP collectives): a text-only batch
            # runs the vision tower on one blank merged token, before the LLM as an image batch does, and adds
            # 0 x its output.
            extra = idle_vision(hf, input_ids.device)
        self._capturing = True
        try:
            out = hf.model(
                input_ids=input_ids,
                attention_mask=attention_mask,
                pixel_values=pixel_values,
                image_grid_thw=grid,
                mm_token_type_ids=batch.get("mm_token_type_ids"),
                use_cache=False,
            )
        finally:
            self._capturing = False
        hidden = out.last_hidden_state
        layer_kwargs, self._layer_kwargs = self._layer_kwargs, {}

        # MLM: the LM head only on masked positions (the full-vocabulary logits would dwarf the model). MNTP: the
        # state before each masked position predicts it (a masked first token has no state before it: skipped).
        labels = batch["labels"]
        text_hidden = hidden
        if self.mntp:
            text_hidden, labels = hidden[:, :-1], labels[:, 1:]
        sel = labels != IGNORE_INDEX
        logits = at_least_float32(hf.lm_head(text_hidden[sel]))
        targets = labels[sel]
        n_mlm = max(totals.get("mlm", 0.0), 1.0)
        mlm_loss = F.cross_entropy(logits, targets, reduction="sum") / n_mlm
        mlm_correct = (logits.argmax(-1) == targets).sum() / n_mlm

        # MAE: the decoder layer over the whole sequence, the head on masked visual positions.
        dec = self.mae_decoder(hidden, **layer_kwargs)
        dec = dec[0] if isinstance(dec, tuple) else dec
        visual = dec[input_ids == self.image_token_id]
        pred = at_least_float32(self.mae_head(visual[mae_mask])).view(-1, self.unit, self.row_dim)
        n_mae = max(totals.get("mae", 0.0), 1.0) * self.unit  # patches
        mae_loss = ((pred - batch["mae_targets"].to(pred.dtype)) ** 2).mean(-1).sum() / n_mae

        loss = mlm_loss + self.mae_weight * mae_loss
        if extra is not None:
            loss = loss + 0.0 * extra
        metrics = {
            "loss": loss.detach(),
            "mlm_loss": mlm_loss.detach(),
            "mae_loss": mae_loss.detach(),
            "mlm_acc": mlm_correct.detach(),
            "tokens": attention_mask.sum().detach(),
        }
        return loss, metrics


# ---- batches ---------------------------------------------------------------------------------------------------


class CPTSteps(PooledSteps):
    """CPT micro-batches for one rank (see `PooledSteps`): rows from a `CPTStream`, cut into token-budget
    (or fixed-size) micro-batches, MLM/MAE masking seeded by the global micro-batch index."""

    def __init__(self, config: CPTConfig, collator: CPTCollator, rank: int, world: int, micro: int) -> None:
        self.config = config
        self.collator = collator
        stream = CPTStream(config.data, seed=config.seed, loop=True, shuffle_buffer=config.shuffle_buffer)
        super().__init__(stream, collator.prepare, collator, budget_groups(config), config.pool_rows, config.seed,
                         rank, world, micro)


# ---- the task --------------------------------------------------------------------------------------------------


class CPTTask:
    """MoCa stage 1 for `moca_train.trainer.Trainer`."""

    def __init__(self, config: CPTConfig) -> None:
        if not config.data:
            raise ValueError("no training data: give at least one JSONL source")
        if config.text_objective not in TEXT_OBJECTIVES:
            raise ValueError(f"unknown text_objective {config.text_objective!r}; choose {' or '.join(TEXT_OBJECTIVES)}")
        self.config = config
        self.processor = load_base_processor(config)
        self.model_config = None

    def build_model(self) -> CPTModel:
        cfg = self.config
        model, _ = load_base(cfg, self.processor)
        self.model_config = model.config
        torch.manual_seed(cfg.seed)  # the MAE head's init, identical on every rank
        cpt = CPTModel(model, mask_fill=cfg.mask_fill, mae_weight=cfg.mae_weight, seed=cfg.seed,
                       mntp=cfg.text_objective == "mntp")
        if cfg.lora:
            add_lora(cpt.model, cfg.lora)  # the MAE decoder, head and fill stay fully trainable
        return cpt

    def shard_units(self, model: CPTModel) -> list[nn.Module]:
        return [*shard_units(model.model), model.mae_decoder]

    def enable_gradient_checkpointing(self, model: CPTModel) -> None:
        enable_checkpointing(model.model)

    def make_steps(self, rank: int, world: int, micro_batches: int) -> CPTSteps:
        cfg = self.config
        return CPTSteps(cfg, self.collator(), rank, world, micro_batches)

    def collator(self) -> CPTCollator:
        cfg = self.config
        return CPTCollator(self.processor, mlm_ratio=cfg.mlm_ratio, mae_ratio=cfg.mae_ratio, max_len=cfg.max_len,
                           pad_to=cfg.max_len if cfg.batching == "fixed" else None, fill=cfg.mask_fill == "per_batch")

    def counts(self, batch: dict) -> dict[str, float]:
        return self.counts_for(batch, mntp=self.config.text_objective == "mntp")

    @staticmethod
    def counts_for(batch: dict, mntp: bool = False) -> dict[str, float]:
        """Predicted text tokens and masked visual tokens: the loss normalisers, summed over all ranks."""
        labels = batch["labels"][:, 1:] if mntp else batch["labels"]
        return {"mlm": float((labels != IGNORE_INDEX).sum()), "mae": float(batch["mae_mask"].sum())}

    def loss(self, model: CPTModel, batch: dict, totals: dict[str, float]):
        return model(batch, totals)

    def export(self, state_dict: dict[str, torch.Tensor], out: Path) -> None:
        save_encoder(state_dict, self.model_config, self.processor, out, lora=self.config.lora,
                     extra={"stage": "cpt", "base": self.config.base}, heads_file=HEADS_FILE)


def run_cpt(config: CPTConfig) -> dict:
    """Train stage 1 as configured; returns the trainer's summary."""
    write_stage_config(config, "cpt")
    return Trainer(config.train, CPTTask(config)).fit()


def main(argv: list[str] | None = None) -> int:
    return stage_main(argv, "python -m moca_train.stages.cpt", "MoCa stage 1 (CPT).", CPTConfig, run_cpt)


__all__ = ["HEADS_FILE", "MASK_FILLS", "CPTConfig", "CPTModel", "CPTSteps", "CPTTask", "enable_checkpointing",
           "load_base", "load_base_processor", "merge_lora", "resolve_config", "run_cpt"]


if __name__ == "__main__":
    sys.exit(main())
