"""Stage 1: modality-aware continual pre-training (MoCa CPT) on the shared trainer.

The model is the bidirectional Qwen-VL backbone with two reconstruction heads:

* MLM: the pretrained ``lm_head`` predicts each masked text token at its own position (unshifted).
* MAE: masked merged visual tokens are replaced at the vision input (one shared random vector, or a
  learned one), and an extra bidirectional decoder layer -- a copy of the middle LLM layer, run over
  the whole final hidden-state sequence with the backbone's own mask and positions -- feeds
  ``Linear(hidden, 4 * 1176)``, which reconstructs the 4 normalised pixel rows of each masked token.

Loss = MLM + w * MAE. The exported checkpoint is a plain encoder (`MoCaEncoder.from_pretrained` loads
it); the MAE decoder, head and fill vector are stored aside in ``OUT/cpt_heads.safetensors``.

Run: ``docrag train cpt --config cpt.yaml`` or, on several GPUs,
``torchrun --nproc_per_node 8 -m moca_train.cpt --config moca_train/configs/cpt_3b.yaml``.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import logging
import os
import random
import sys
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .batching import bucketed_budget_batches
from .collators import IGNORE_INDEX, CPTCollator, CPTSample, check_vocab, ensure_mask_token
from .data import CPTStream, DataError
from .processing import MAX_PIXELS, MIN_PIXELS, load_processor, pixel_bounds
from .trainer import TrainConfig, Trainer, coerce_fields

log = logging.getLogger(__name__)

HEADS_FILE = "cpt_heads.safetensors"
CONFIG_DIR = Path(__file__).resolve().parent / "configs"
LLM_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


# ---- configuration ---------------------------------------------------------------------------------------------


@dataclass
class CPTConfig:
    base: str = "tiny"  # a preset name (random init), or a checkpoint folder / hub id
    data: list = field(default_factory=list)  # JSONL sources: "a.jsonl", "a.jsonl:0.3" or {path, weight}
    processor: str | None = None  # tokenizer + image processor (default: the base's, else the offline one)
    family: str = "qwen2_5_vl"  # for presets
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    max_len: int = 1280
    mlm_ratio: float = 0.4
    mae_ratio: float = 0.5
    mae_weight: float = 0.5  # paper's best; the reference script uses 0.1
    mask_fill: str = "random"  # random (one shared random vector, as the reference) | learned
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

    @classmethod
    def from_dict(cls, d: dict) -> CPTConfig:
        d = dict(d)
        train = TrainConfig.from_dict(d.pop("train", {}) or {})
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown CPT settings: {', '.join(unknown)}")
        return cls(**coerce_fields(cls, d), train=train)

    @classmethod
    def load(cls, path: str | os.PathLike, overrides: dict | None = None) -> CPTConfig:
        """A YAML config (a path, or a packaged name: tiny, 3b, 7b) with ``overrides`` applied
        (``{"base": ..., "train.max_steps": ...}``)."""
        import yaml

        p = resolve_config(path)
        d = yaml.safe_load(p.read_text()) or {}
        if not isinstance(d, dict):
            raise ValueError(f"{p}: expected a mapping of settings")
        for key, value in (overrides or {}).items():
            if value is None:
                continue
            if key.startswith("train."):
                d.setdefault("train", {})[key[6:]] = value
            else:
                d[key] = value
        return cls.from_dict(d)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def resolve_config(path: str | os.PathLike) -> Path:
    """A config path, or the name of a packaged one (``tiny`` -> ``moca_train/configs/cpt_tiny.yaml``)."""
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (CONFIG_DIR / f"cpt_{path}.yaml", CONFIG_DIR / str(path)):
        if candidate.is_file():
            return candidate
    names = ", ".join(sorted(c.stem.removeprefix("cpt_") for c in CONFIG_DIR.glob("cpt_*.yaml")))
    raise FileNotFoundError(f"{path}: no such config file (packaged configs: {names})")


# ---- the model -------------------------------------------------------------------------------------------------


class CPTModel(nn.Module):
    """Backbone (a Qwen-VL ``*ForConditionalGeneration``) + MAE decoder layer + MAE head."""

    def __init__(self, model: nn.Module, mask_fill: str = "random", mae_weight: float = 0.5, seed: int = 0) -> None:
        super().__init__()
        self.model = model
        cfg = model.config
        text = cfg.text_config
        vision = cfg.vision_config
        layers = model.model.language_model.layers
        self.mae_decoder = copy.deepcopy(layers[len(layers) // 2])
        self.unit = vision.spatial_merge_size**2
        self.row_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
        self.mae_head = nn.Linear(text.hidden_size, self.unit * self.row_dim)
        gen = torch.Generator().manual_seed(seed)
        if mask_fill == "random":
            self.register_buffer("mae_fill", torch.randn(self.row_dim, generator=gen))
        elif mask_fill == "learned":
            self.mae_fill = nn.Parameter(torch.zeros(self.row_dim))
        else:
            raise ValueError(f"unknown mask_fill {mask_fill!r}; choose random or learned")
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

    def forward(self, batch: dict, totals: dict[str, float]) -> tuple[torch.Tensor, dict]:
        hf = self.model
        input_ids, attention_mask = batch["input_ids"], batch["attention_mask"]
        pixel_values, grid = batch.get("pixel_values"), batch.get("image_grid_thw")
        mae_mask = batch["mae_mask"]
        extra = None
        if pixel_values is not None:
            # MAE corruption at the vision input: the 4 rows of each chosen merged token become the fill.
            rows = mae_mask.repeat_interleave(self.unit)[:, None]
            pixel_values = torch.where(rows, self.mae_fill.to(pixel_values.dtype)[None], pixel_values)
        else:
            # Every rank must run every sharded module (FSDP collectives): a text-only batch runs the
            # vision tower on one blank merged token and adds 0 x its output.
            extra = self._idle_vision(input_ids.device)
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

        # MLM: the LM head only on masked positions (the full-vocabulary logits would dwarf the model).
        labels = batch["labels"]
        sel = labels != IGNORE_INDEX
        logits = hf.lm_head(hidden[sel]).float()
        targets = labels[sel]
        n_mlm = max(totals.get("mlm", 0.0), 1.0)
        mlm_loss = F.cross_entropy(logits, targets, reduction="sum") / n_mlm
        mlm_correct = (logits.argmax(-1) == targets).sum() / n_mlm

        # MAE: the decoder layer over the whole sequence, the head on masked visual positions.
        dec = self.mae_decoder(hidden, **layer_kwargs)
        dec = dec[0] if isinstance(dec, tuple) else dec
        visual = dec[input_ids == self.image_token_id]
        pred = self.mae_head(visual[mae_mask]).float().view(-1, self.unit, self.row_dim)
        n_mae = max(totals.get("mae", 0.0), 1.0) * self.unit  # patches
        mae_loss = ((pred - batch["mae_targets"].float()) ** 2).mean(-1).sum() / n_mae

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

    def _idle_vision(self, device: torch.device) -> torch.Tensor:
        visual = self.model.model.visual
        m = int(self.unit**0.5)
        pv = torch.zeros(self.unit, self.row_dim, device=device, dtype=visual.dtype)
        out = visual(pv, grid_thw=torch.tensor([[1, m, m]], device=device))
        out = getattr(out, "pooler_output", out)
        out = out[0] if isinstance(out, tuple | list) else out
        return out.float().sum()


def enable_checkpointing(model: nn.Module) -> None:
    """Activation checkpointing per layer, non-reentrant (works with FSDP2 and frozen LoRA bases). Newer
    transformers renamed the method; the GPU machines' 5.17 may only have the old name."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def load_base_processor(config: CPTConfig):
    """The processor for ``config.base`` (its own tokenizer files, else the offline Qwen one), with
    ``<|mask|>`` added and the configured image resolution."""
    from .presets import PRESETS

    path = config.processor
    if path is None and config.base not in PRESETS and (Path(config.base) / "tokenizer.json").exists():
        path = config.base
    processor = load_processor(path, min_pixels=config.min_pixels, max_pixels=config.max_pixels)
    ensure_mask_token(processor.tokenizer)
    return processor


def load_base(config: CPTConfig, processor=None):
    """(Qwen-VL model in float32 on CPU, processor) for ``config.base``: a preset builds a random model."""
    from .presets import PRESETS, build_model

    processor = processor or load_base_processor(config)
    if config.base in PRESETS:
        model = build_model(config.base, processor.tokenizer, family=config.family, seed=config.seed)
    else:
        from .checkpoint import load_model

        model = load_model(config.base, device="cpu", dtype=torch.float32,
                           attn_implementation=config.attn_implementation)
    if config.attn_implementation != getattr(model.config, "_attn_implementation", None):
        model.set_attn_implementation(config.attn_implementation)
    check_vocab(model, processor.tokenizer)
    return model, processor


def add_lora(model: CPTModel, lora: dict) -> None:
    """LoRA on the LLM's linear layers (peft); the MAE decoder, head and fill stay fully trainable."""
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(
        r=int(lora.get("r", 16)),
        lora_alpha=int(lora.get("alpha", 64)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules") or LLM_LINEARS,
    )
    for p in model.model.parameters():
        p.requires_grad_(False)
    inject_adapter_in_model(cfg, model.model)
    for name, p in model.model.named_parameters():
        p.requires_grad_("lora_" in name)


def merge_lora(state: dict[str, torch.Tensor], lora: dict) -> dict[str, torch.Tensor]:
    """Fold LoRA deltas into the base weights (W + alpha/r * B @ A) and restore the plain key names."""
    scale = float(lora.get("alpha", 64)) / float(lora.get("r", 16))
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".lora_A." in key or ".lora_B." in key:
            continue
        if ".base_layer." in key:
            prefix, _, leaf = key.partition(".base_layer.")
            if leaf == "weight":
                a = state.get(f"{prefix}.lora_A.default.weight")
                b = state.get(f"{prefix}.lora_B.default.weight")
                if a is not None and b is not None:
                    value = value + scale * (b.float() @ a.float()).to(value.dtype)
            key = f"{prefix}.{leaf}"
        out[key] = value
    return out


# ---- batches ---------------------------------------------------------------------------------------------------


class CPTSteps:
    """Micro-batches for one rank, one optimizer step at a time, resumable.

    Every rank plans the same global sequence of micro-batches (rows are read, tokenised and sized,
    never decoded, in pools of ``pool_rows``; each pool is cut into length-bucketed token-budget
    micro-batches in a seeded order) and collates only its own slice of each step. Masking is seeded
    by the global micro-batch index, so the run does not depend on how micro-batches are spread over
    ranks and accumulation steps. State = the stream position at the current pool's start + how many
    of its micro-batches are consumed.
    """

    def __init__(self, config: CPTConfig, collator: CPTCollator, rank: int, world: int, micro: int) -> None:
        self.config = config
        self.collator = collator
        self.rank, self.world, self.micro = rank, world, micro
        self.stream = CPTStream(config.data, seed=config.seed, loop=True, shuffle_buffer=config.shuffle_buffer)
        self.pool_start = self.stream.state_dict()
        self.pool = -1
        self.taken = 0
        self.batches: list[list[CPTSample]] = []
        self.counter = 0  # global micro-batches planned so far
        self.skipped = 0

    def _fill(self) -> None:
        cfg = self.config
        self.pool_start = self.stream.state_dict()
        for _attempt in range(100):
            samples: list[CPTSample] = []
            while len(samples) < cfg.pool_rows:
                row = self.stream.next_row()
                if row is None:
                    break
                try:
                    sample = self.collator.prepare(row)
                except DataError as e:
                    self.skipped += 1
                    log.warning("skipped a row of %s: %s", row.source, str(e)[:200])
                    continue
                if sample is not None:
                    samples.append(sample)
            if samples:
                break
        else:
            raise DataError("no usable rows in the training data (every row failed to load)")
        if cfg.batching == "fixed":
            groups = [list(range(i, min(i + cfg.batch_size, len(samples)))) for i in range(0, len(samples),
                                                                                          cfg.batch_size)]
        elif cfg.batching == "budget":
            groups = bucketed_budget_batches([s.cost for s in samples], cfg.token_budget,
                                             seed=_mix(cfg.seed, self.pool), max_batch=cfg.max_batch)
        else:
            raise ValueError(f"unknown batching {cfg.batching!r}; choose budget or fixed")
        self.batches = [[samples[i] for i in g] for g in groups]

    def _next_plan(self) -> list[CPTSample]:
        while self.taken >= len(self.batches):
            self.pool += 1
            self.taken = 0
            self._fill()
        plan = self.batches[self.taken]
        self.taken += 1
        return plan

    def next_step(self) -> list[dict]:
        plans = [self._next_plan() for _ in range(self.micro * self.world)]
        first = self.rank * self.micro
        batches = []
        for j in range(first, first + self.micro):
            gen = torch.Generator().manual_seed(_mix(self.config.seed, self.counter + j))
            batches.append(self.collator(plans[j], generator=gen))
        self.counter += len(plans)
        return batches

    def state_dict(self) -> dict:
        return {"stream": self.pool_start, "pool": self.pool, "taken": self.taken, "counter": self.counter}

    def load_state_dict(self, state: dict) -> None:
        self.stream.load_state_dict(state["stream"])
        self.pool = int(state["pool"])
        self.counter = int(state["counter"])
        self.batches = []
        if self.pool >= 0:
            self._fill()  # re-reads the same pool from its start
        self.taken = int(state["taken"])


def _mix(*xs: int) -> int:
    """A stable 63-bit seed from integers (Python's hash of ints is stable, but spell it out)."""
    return random.Random(":".join(map(str, xs))).getrandbits(63)


# ---- the task --------------------------------------------------------------------------------------------------


class CPTTask:
    """MoCa stage 1 for `moca_train.trainer.Trainer`."""

    def __init__(self, config: CPTConfig) -> None:
        if not config.data:
            raise ValueError("no training data: give at least one JSONL source")
        self.config = config
        self.processor = load_base_processor(config)
        self.model_config = None

    def build_model(self) -> CPTModel:
        cfg = self.config
        model, _ = load_base(cfg, self.processor)
        self.model_config = model.config
        torch.manual_seed(cfg.seed)  # the MAE head's init, identical on every rank
        cpt = CPTModel(model, mask_fill=cfg.mask_fill, mae_weight=cfg.mae_weight, seed=cfg.seed)
        if cfg.lora:
            add_lora(cpt, cfg.lora)
        return cpt

    def shard_units(self, model: CPTModel) -> list[nn.Module]:
        base = model.model.model
        return [*base.visual.blocks, *base.language_model.layers, model.mae_decoder]

    def enable_gradient_checkpointing(self, model: CPTModel) -> None:
        enable_checkpointing(model.model)

    def make_steps(self, rank: int, world: int, micro_batches: int) -> CPTSteps:
        cfg = self.config
        collator = CPTCollator(self.processor, mlm_ratio=cfg.mlm_ratio, mae_ratio=cfg.mae_ratio, max_len=cfg.max_len,
                               pad_to=cfg.max_len if cfg.batching == "fixed" else None)
        return CPTSteps(cfg, collator, rank, world, micro_batches)

    def counts(self, batch: dict) -> dict[str, float]:
        return {"mlm": float((batch["labels"] != IGNORE_INDEX).sum()), "mae": float(batch["mae_mask"].sum())}

    def loss(self, model: CPTModel, batch: dict, totals: dict[str, float]):
        return model(batch, totals)

    def export(self, state_dict: dict[str, torch.Tensor], out: Path) -> None:
        save_encoder(state_dict, self.model_config, self.processor, out, lora=self.config.lora,
                     extra={"stage": "cpt", "base": self.config.base})


def save_encoder(
    state_dict: dict[str, torch.Tensor],
    model_config,
    processor,
    out: str | os.PathLike,
    lora: dict | None = None,
    extra: dict | None = None,
) -> Path:
    """Write the backbone of a `CPTModel` state dict as a plain encoder checkpoint (standard Qwen-VL
    layout, bidirectional, tokenizer with ``<|mask|>``) and the MAE parts to ``cpt_heads.safetensors``."""
    from safetensors.torch import save_file

    from .checkpoint import model_class, save_checkpoint

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    backbone = {k[len("model."):]: v for k, v in state_dict.items() if k.startswith("model.")}
    heads = {k: v.contiguous() for k, v in state_dict.items() if not k.startswith("model.")}
    if lora:
        backbone = merge_lora(backbone, lora)
    with torch.device("meta"):
        model = model_class(model_config)(model_config)
    missing, unexpected = model.load_state_dict(backbone, strict=False, assign=True)
    tied = getattr(model_config, "tie_word_embeddings", False) or model_config.text_config.tie_word_embeddings
    missing = [k for k in missing if not (tied and k == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError(f"export: state dict does not match the model (missing {missing[:5]}, "
                           f"unexpected {unexpected[:5]})")
    if tied:
        model.tie_weights()
    model.config.text_config.is_causal = False
    lo, hi = pixel_bounds(processor.image_processor)
    settings = {"pooling": "mean", "min_pixels": lo, "max_pixels": hi, "format": 1, **(extra or {})}
    save_checkpoint(model, processor, out, settings=settings)
    save_file(heads, str(out / HEADS_FILE))
    return out


def run_cpt(config: CPTConfig) -> dict:
    """Train stage 1 as configured; returns the trainer's summary."""
    out = Path(config.train.out)
    if int(os.environ.get("RANK", "0")) == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / "cpt_config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str) + "\n")
    return Trainer(config.train, CPTTask(config)).fit()


# ---- `python -m moca_train.cpt` (what torchrun launches) -------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="python -m moca_train.cpt", description="MoCa stage 1 (CPT).")
    ap.add_argument("--config", required=True, help="YAML file, or a packaged name: tiny, 3b, 7b")
    ap.add_argument("--base", help="preset name, checkpoint folder or hub id")
    ap.add_argument("--data", action="append", help="JSONL source (path or path:weight); repeatable")
    ap.add_argument("--out", help="output folder")
    ap.add_argument("--max-steps", type=int)
    ap.add_argument("--stop-at", type=int)
    ap.add_argument("--save-every", type=int)
    ap.add_argument("--no-resume", action="store_true")
    args = ap.parse_args(argv)
    overrides = {"base": args.base, "data": args.data, "train.out": args.out, "train.max_steps": args.max_steps,
                 "train.stop_at": args.stop_at, "train.save_every": args.save_every}
    if args.no_resume:
        overrides["train.resume"] = False
    config = CPTConfig.load(args.config, overrides)
    summary = run_cpt(config)
    if summary["rank"] == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "last"}), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
