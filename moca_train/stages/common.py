"""What every training stage shares: typed stage configs from YAML, the base model and its processor,
LoRA (add, merge), the per-rank step planner, the idle vision pass FSDP needs, and the encoder export."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import random
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..batching import bucketed_budget_batches
from ..collators.common import check_vocab, ensure_mask_token
from ..data.common import DataError
from ..dtypes import at_least_float32
from ..processing import load_processor, pixel_bounds
from ..trainer import TrainConfig, coerce_fields

log = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs"
LLM_LINEARS = r".*language_model.*\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)"


# ---- configuration ---------------------------------------------------------------------------------------------


class StageConfig:
    """Mixin for a stage's config dataclass (fields + ``train: TrainConfig``): YAML loading with
    overrides, strict keys. ``PREFIX`` names its packaged configs (``configs/{PREFIX}_{name}.yaml``)."""

    PREFIX = ""
    LABEL = ""

    @classmethod
    def from_dict(cls, d: dict):
        d = dict(d)
        train = TrainConfig.from_dict(d.pop("train", {}) or {})
        unknown = sorted(set(d) - {f.name for f in dataclasses.fields(cls)})
        if unknown:
            raise ValueError(f"unknown {cls.LABEL} settings: {', '.join(unknown)}")
        return cls(**coerce_fields(cls, d), train=train)

    @classmethod
    def load(cls, path: str | os.PathLike, overrides: dict | None = None):
        """A YAML config (a path, or a packaged name: tiny, 3b, 7b) with ``overrides`` applied
        (``{"base": ..., "train.max_steps": ...}``). ``extends: NAME`` in a file starts from that config
        (a packaged name or a path beside the file) and changes only what the file sets."""
        d = read_config(resolve_config(path, cls.PREFIX), cls.PREFIX)
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


def read_config(path: Path, prefix: str, seen: tuple[Path, ...] = ()) -> dict:
    """The settings of one YAML file, its ``extends`` chain merged under it (nested mappings key by key)."""
    import yaml

    d = yaml.safe_load(path.read_text()) or {}
    if not isinstance(d, dict):
        raise ValueError(f"{path}: expected a mapping of settings")
    parent = d.pop("extends", None)
    if parent is None:
        return d
    beside = path.parent / str(parent)
    base_path = beside if beside.is_file() else resolve_config(parent, prefix)
    if base_path.resolve() in seen:
        raise ValueError(f"{path}: extends {parent} again (a loop)")
    return _merged(read_config(base_path, prefix, (*seen, path.resolve())), d)


def _merged(base: dict, top: dict) -> dict:
    out = dict(base)
    for key, value in top.items():
        out[key] = _merged(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
    return out


def resolve_config(path: str | os.PathLike, prefix: str = "cpt") -> Path:
    """A config path, or the name of a packaged one (``tiny`` -> ``moca_train/configs/{prefix}_tiny.yaml``)."""
    p = Path(path)
    if p.is_file():
        return p
    for candidate in (CONFIG_DIR / f"{prefix}_{path}.yaml", CONFIG_DIR / str(path)):
        if candidate.is_file():
            return candidate
    names = ", ".join(sorted(c.stem.removeprefix(f"{prefix}_") for c in CONFIG_DIR.glob(f"{prefix}_*.yaml")))
    raise FileNotFoundError(f"{path}: no such config file (packaged configs: {names})")


# ---- the base model --------------------------------------------------------------------------------------------


def enable_checkpointing(model: nn.Module) -> None:
    """Activation checkpointing per layer, non-reentrant (works with FSDP2 and frozen LoRA bases). Newer
    transformers renamed the method; the GPU machines' 5.17 may only have the old name."""
    kwargs = {"use_reentrant": False}
    if hasattr(model, "activation_checkpointing_enable"):
        model.activation_checkpointing_enable(activation_checkpointing_kwargs=kwargs)
    else:
        model.gradient_checkpointing_enable(gradient_checkpointing_kwargs=kwargs)


def load_base_processor(config):
    """The processor for ``config.base`` (its own tokenizer files, else the offline Qwen one), with
    ``<|mask|>`` added and the configured image resolution."""
    from ..presets import PRESETS

    path = config.processor
    if path is None and config.base not in PRESETS and (Path(config.base) / "tokenizer.json").exists():
        path = config.base
    processor = load_processor(path, min_pixels=config.min_pixels, max_pixels=config.max_pixels)
    ensure_mask_token(processor.tokenizer)
    return processor


def load_base(config, processor=None):
    """(Qwen-VL model in float32 on CPU, processor) for ``config.base``: a preset builds a random model.
    ``config`` is any stage config with base, processor, family, min/max_pixels, attn_implementation, seed."""
    from ..presets import PRESETS, build_model

    processor = processor or load_base_processor(config)
    if config.base in PRESETS:
        model = build_model(config.base, processor.tokenizer, family=config.family, seed=config.seed)
    else:
        from ..checkpoint import load_model

        model = load_model(config.base, device="cpu", dtype=torch.float32,
                           attn_implementation=config.attn_implementation)
    if config.attn_implementation != getattr(model.config, "_attn_implementation", None):
        model.set_attn_implementation(config.attn_implementation)
    check_vocab(model, processor.tokenizer)
    return model, processor


def add_lora(model: nn.Module, lora: dict) -> None:
    """LoRA on the LLM's linear layers of a Qwen-VL model (peft); everything else in it is frozen (a
    stage's own heads, outside ``model``, stay fully trainable)."""
    from peft import LoraConfig, inject_adapter_in_model

    cfg = LoraConfig(
        r=int(lora.get("r", 16)),
        lora_alpha=int(lora.get("alpha", 64)),
        lora_dropout=float(lora.get("dropout", 0.0)),
        target_modules=lora.get("target_modules") or LLM_LINEARS,
        use_dora=bool(lora.get("use_dora", False)),  # CoCoA's warm-up script trains DoRA
    )
    for p in model.parameters():
        p.requires_grad_(False)
    inject_adapter_in_model(cfg, model)
    for name, p in model.named_parameters():
        p.requires_grad_("lora_" in name)


def merge_lora(state: dict[str, torch.Tensor], lora: dict) -> dict[str, torch.Tensor]:
    """Fold LoRA deltas into the base weights (W + alpha/r * B @ A) and restore the plain key names. DoRA
    (peft): the merged rows are rescaled to its learned magnitudes, m * (W + s B A) / ||W + s B A|| per row."""
    scale = float(lora.get("alpha", 64)) / float(lora.get("r", 16))
    out: dict[str, torch.Tensor] = {}
    for key, value in state.items():
        if ".lora_A." in key or ".lora_B." in key or ".lora_magnitude_vector." in key:
            continue
        if ".base_layer." in key:
            prefix, _, leaf = key.partition(".base_layer.")
            if leaf == "weight":
                a = state.get(f"{prefix}.lora_A.default.weight")
                b = state.get(f"{prefix}.lora_B.default.weight")
                if a is not None and b is not None:
                    merged = value.double() + scale * (b.double() @ a.double())
                    magnitude = state.get(f"{prefix}.lora_magnitude_vector.default.weight")
                    if magnitude is not None:
                        merged = merged * (magnitude.double() / torch.linalg.norm(merged, dim=1))[:, None]
                    value = merged.to(value.dtype)
            key = f"{prefix}.{leaf}"
        out[key] = value
    return out


def shard_units(model: nn.Module) -> list[nn.Module]:
    """The FSDP units of a Qwen-VL model: every vision block and every decoder layer."""
    base = model.model
    return [*base.visual.blocks, *base.language_model.layers]


def idle_vision(model: nn.Module, device: torch.device) -> torch.Tensor:
    """The vision tower of a Qwen-VL model on one blank merged token, summed. Every rank must run every
    sharded module (FSDP collectives), so a text-only batch adds 0 x this to its loss."""
    visual = model.model.visual
    vision = model.config.vision_config
    unit = vision.spatial_merge_size**2
    row_dim = vision.in_channels * vision.temporal_patch_size * vision.patch_size**2
    m = int(unit**0.5)
    pv = torch.zeros(unit, row_dim, device=device, dtype=visual.dtype)
    out = visual(pv, grid_thw=torch.tensor([[1, m, m]], device=device))
    out = getattr(out, "pooler_output", out)
    out = out[0] if isinstance(out, tuple | list) else out
    return at_least_float32(out).sum()


# ---- batches ---------------------------------------------------------------------------------------------------


def mix_seed(*xs: int) -> int:
    """A stable 63-bit seed from integers (Python's hash of ints is stable, but spell it out)."""
    return random.Random(":".join(map(str, xs))).getrandbits(63)


class PooledSteps:
    """Micro-batches for one rank, one optimizer step at a time, resumable: the per-rank step planner.

    Every rank plans the same global sequence of micro-batches (rows are read from ``stream`` and
    prepared -- tokenised and sized, never decoded -- in pools of ``pool_rows``; ``group(samples, pool)``
    cuts each pool into micro-batches) and collates only its own slice of each step. Collation is seeded
    by the global micro-batch index, so the run does not depend on how micro-batches are spread over
    ranks and accumulation steps. State = the stream position at the current pool's start + how many
    of its micro-batches are consumed.
    """

    def __init__(
        self,
        stream,
        prepare: Callable[[Any], Any],
        collate: Callable[[Sequence[Any], torch.Generator], dict],
        group: Callable[[list, int], list[list[int]]],
        pool_rows: int,
        seed: int,
        rank: int,
        world: int,
        micro: int,
    ) -> None:
        self.stream = stream
        self.prepare, self.collate, self.group = prepare, collate, group
        self.pool_rows, self.seed = pool_rows, seed
        self.rank, self.world, self.micro = rank, world, micro
        self.pool_start = self.stream.state_dict()
        self.pool = -1
        self.taken = 0
        self.batches: list[list] = []
        self.counter = 0  # global micro-batches planned so far
        self.skipped = 0

    def _fill(self) -> None:
        self.pool_start = self.stream.state_dict()
        for _attempt in range(100):
            samples: list = []
            while len(samples) < self.pool_rows:
                row = self.stream.next_row()
                if row is None:
                    break
                try:
                    sample = self.prepare(row)
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
        self.batches = [[samples[i] for i in g] for g in self.group(samples, self.pool)]

    def _next_plan(self) -> list:
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
            gen = torch.Generator().manual_seed(mix_seed(self.seed, self.counter + j))
            batches.append(self.collate(plans[j], generator=gen))
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


def budget_groups(config) -> Callable[[list, int], list[list[int]]]:
    """``group`` for `PooledSteps` from a config's batching settings: length-bucketed token-budget
    micro-batches by modality-aware cost (``budget``), or ``batch_size`` rows in order (``fixed``)."""

    def group(samples: list, pool: int) -> list[list[int]]:
        if config.batching == "fixed":
            n = config.batch_size
            return [list(range(i, min(i + n, len(samples)))) for i in range(0, len(samples), n)]
        if config.batching == "budget":
            return bucketed_budget_batches([s.cost for s in samples], config.token_budget,
                                           seed=mix_seed(config.seed, pool), max_batch=config.max_batch)
        raise ValueError(f"unknown batching {config.batching!r}; choose budget or fixed")

    return group


# ---- export ----------------------------------------------------------------------------------------------------


def save_encoder(
    state_dict: dict[str, torch.Tensor],
    model_config,
    processor,
    out: str | os.PathLike,
    lora: dict | None = None,
    extra: dict | None = None,
    heads_file: str | None = None,
) -> Path:
    """Write the backbone of a stage model's state dict (keys ``model.*``) as a plain encoder checkpoint
    (standard Qwen-VL layout, bidirectional, tokenizer with ``<|mask|>``); ``extra`` goes into
    ``docrag_encoder.json`` (``pooling`` defaults to mean). Other keys (a stage's heads) go to
    ``heads_file`` when one is named."""
    from safetensors.torch import save_file

    from ..checkpoint import model_class, save_pretrained_encoder

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
    save_pretrained_encoder(model, processor, out, settings=settings)
    if heads_file is not None:
        save_file(heads, str(out / heads_file))
    return out


# ---- running a stage -------------------------------------------------------------------------------------------


def write_stage_config(config, name: str) -> None:
    """OUT/{name}_config.json (rank 0): what this run was asked to do."""
    out = Path(config.train.out)
    if int(os.environ.get("RANK", "0")) == 0:
        out.mkdir(parents=True, exist_ok=True)
        (out / f"{name}_config.json").write_text(json.dumps(config.to_dict(), indent=2, default=str) + "\n")


def stage_main(argv: list[str] | None, prog: str, description: str, config_cls, run: Callable[[Any], dict]) -> int:
    """``python -m moca_train.stages.X`` (what torchrun launches): a config plus the common overrides."""
    import argparse

    ap = argparse.ArgumentParser(prog=prog, description=description)
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
    config = config_cls.load(args.config, overrides)
    summary = run(config)
    if summary.get("rank", 0) == 0:
        print(json.dumps({k: v for k, v in summary.items() if k != "last"}, default=str), flush=True)
    return 0


__all__ = [
    "CONFIG_DIR",
    "PooledSteps",
    "StageConfig",
    "add_lora",
    "budget_groups",
    "enable_checkpointing",
    "idle_vision",
    "load_base",
    "load_base_processor",
    "merge_lora",
    "mix_seed",
    "resolve_config",
    "save_encoder",
    "shard_units",
    "stage_main",
    "write_stage_config",
]
