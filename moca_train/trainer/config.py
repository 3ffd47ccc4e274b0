"""What a stage hands the trainer: its settings (`TrainConfig`) and its `Task` (model, batches, loss, export)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn


@dataclass
class TrainConfig:
    out: str = "runs/train"
    max_steps: int = 1000  # optimizer steps; the schedule decays to zero here
    stop_at: int | None = None  # stop (and checkpoint) after this step: a time-limited job, same schedule
    lr: float = 2e-6
    weight_decay: float = 0.0
    betas: tuple[float, float] = (0.9, 0.999)
    adam_eps: float = 1e-8
    warmup_ratio: float = 0.1
    grad_clip: float = 5.0  # 0 disables
    grad_accum: int = 1  # micro-batches per rank per optimizer step
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32 | fp64 (exact comparisons in tests)
    gradient_checkpointing: bool = True
    strategy: str = "auto"  # auto (fsdp when WORLD_SIZE > 1) | fsdp | single
    save_every: int = 0  # 0: only at the end (and at stop_at)
    keep_checkpoints: int = 2
    log_every: int = 1
    seed: int = 0
    resume: bool = True  # continue from the newest complete checkpoint in OUT/checkpoints
    tensorboard: bool = True
    prefetch: int = 2  # optimizer steps of batches prepared ahead in a background thread
    export: bool = True  # write the task's final artefact (e.g. the encoder) into OUT
    weights_digest: bool = False  # each rank writes OUT/digest_rank{r}.txt of the gathered weights (tests)

    @classmethod
    def from_dict(cls, d: dict) -> TrainConfig:
        known = {f for f in cls.__dataclass_fields__}
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(f"unknown training settings: {', '.join(unknown)}")
        d = coerce_fields(cls, d)
        if "betas" in d:
            d["betas"] = tuple(float(b) for b in d["betas"])
        return cls(**d)


def coerce_fields(cls: type, d: dict) -> dict:
    """YAML reads ``1e-3`` as a string: convert values to the type of the dataclass field's default."""
    import dataclasses

    out = dict(d)
    for f in dataclasses.fields(cls):
        value = out.get(f.name)
        if value is None or isinstance(value, bool):
            continue
        default = f.default
        if isinstance(default, bool):
            continue
        if isinstance(default, float):
            out[f.name] = float(value)
        elif isinstance(default, int):
            out[f.name] = int(value)
    return out


class StepSource(Protocol):
    """Batches for this rank, one optimizer step at a time, with a resumable position."""

    def next_step(self) -> list[Any]: ...

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


class Task(Protocol):
    """What a training stage plugs into the trainer."""

    def build_model(self) -> nn.Module:
        """The trainable module, on CPU in float32 (the trainer places, shards and wraps it)."""
        ...

    def shard_units(self, model: nn.Module) -> list[nn.Module]:
        """Sub-modules each made one FSDP unit (decoder layers, vision blocks), before the root."""
        ...

    def enable_gradient_checkpointing(self, model: nn.Module) -> None: ...

    def make_steps(self, rank: int, world: int, micro_batches: int) -> StepSource: ...

    def counts(self, batch: Any) -> dict[str, float]:
        """Normalisers of this micro-batch (e.g. masked tokens); summed over the step and all ranks."""
        ...

    def loss(self, model: nn.Module, batch: Any, totals: dict[str, float]) -> tuple[torch.Tensor, dict]:
        """(loss, metrics) of a micro-batch as its share of the step: summing over micro-batches and ranks
        gives the step's value (the trainer does that for the metrics, and backward does it for the loss)."""
        ...

    def export(self, state_dict: dict[str, torch.Tensor], out: Path) -> None:
        """Write the final artefact from the full (unsharded, CPU) model state dict. Rank 0 only."""
        ...


# Optional on a Task: ``forward_backward(model, batch, totals, scale, autocast) -> metrics`` runs the
# micro-batch's forward and backward passes itself (e.g. GradCache: several chunked passes); the
# gradients it leaves must be those of ``scale x`` its share of the step loss, and each forward must
# run under ``autocast()``. Without it the trainer calls `loss` and backpropagates.
