"""One trainer for every stage (CPT, contrastive, CoCoA), readable top to bottom.

What it does: distributed set-up from the torchrun environment (gloo on CPU, nccl on GPU), FSDP2
(`torch.distributed.fsdp.fully_shard` on each unit the task names, then on the whole model), AdamW,
linear warmup + linear decay, gradient clipping, bf16 autocast on CUDA, gradient checkpointing,
gradient accumulation, checkpoints every N steps with exact resume (model + optimizer through
`torch.distributed.checkpoint`, scheduler, data position, torch/numpy/python RNG), and logging to
stdout, TensorBoard and ``OUT/train_log.jsonl``.

What a stage provides is a `Task` (see the protocol below): the model, the batches, the loss and the
final export. Losses are normalised per optimizer step over every rank: a task's `counts()` say how
many targets a micro-batch holds, the trainer sums them over micro-batches and ranks, and `loss()`
divides by that global total. So N ranks x A accumulation steps compute the same update as one
process doing N*A micro-batches (the distributed test checks it).
"""

from __future__ import annotations

import contextlib
import copy
import json
import math
import os
import queue
import random
import shutil
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

CHECKPOINTS = "checkpoints"
LOG_FILE = "train_log.jsonl"
DONE_FILE = "trainer.json"  # written last: a checkpoint folder without it is incomplete
# Columns the trainer adds to every log row (the rest are the task's metrics).
TRAINER_COLUMNS = ("step", "max_steps", "tokens", "grad_norm", "lr", "step_time", "tokens_per_s")


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
    precision: str = "auto"  # auto (bf16 on CUDA, fp32 on CPU) | bf16 | fp32
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


def coerce_fields(cls, d: dict) -> dict:
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


# ---- distributed ---------------------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))
    owns_group: bool = False  # we created the process group (so we destroy it)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def sum(self, values: dict[str, float]) -> dict[str, float]:
        """Sum a dict of numbers over ranks (same keys on every rank)."""
        if self.world == 1 or not values:
            return dict(values)
        keys = sorted(values)
        t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64, device=self.device)
        dist.all_reduce(t)
        return dict(zip(keys, t.tolist(), strict=True))


def setup_distributed() -> Dist:
    """Rank, world and device from the torchrun environment; a process group when there are several."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if cuda else torch.device("cpu")
    if cuda:
        torch.cuda.set_device(device)
    owns = False
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("nccl" if cuda else "gloo", device_id=device if cuda else None)
        owns = True
    return Dist(rank, world, local_rank, device, owns)


# ---- schedule, precision, RNG ----------------------------------------------------------------------------------


def linear_schedule(warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear 0 -> 1 over warmup, then linear 1 -> 0 at max_steps."""

    def f(step: int) -> float:  # `step` = optimizer steps already taken
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))

    return f


def autocast_dtype(precision: str, device: torch.device) -> torch.dtype | None:
    if precision == "auto":
        return torch.bfloat16 if device.type == "cuda" else None
    if precision == "bf16":
        return torch.bfloat16
    if precision == "fp32":
        return None
    raise ValueError(f"unknown precision {precision!r}; choose auto, bf16 or fp32")


def rng_state() -> dict:
    state = {"python": random.getstate(), "numpy": np.random.get_state(), "torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state()
    return state


def set_rng_state(state: dict) -> None:
    random.setstate(state["python"])
    np.random.set_state(state["numpy"])
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state(state["cuda"])


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


# ---- data prefetching ------------------------------------------------------------------------------------------


class Prefetcher:
    """Prepares the next steps' batches in a thread (image decoding overlaps the GPU). Each item carries
    the source's state *after* it, so a checkpoint records exactly what the model has consumed."""

    def __init__(self, source: StepSource, depth: int, pin_memory: bool = False) -> None:
        self.source = source
        self.depth = depth
        self.pin_memory = pin_memory  # page-locked host memory: the copy to the GPU can overlap compute
        self._stop = threading.Event()
        if depth > 0:
            self._queue: queue.Queue = queue.Queue(maxsize=depth)
            self._thread = threading.Thread(target=self._run, name="docrag-prefetch", daemon=True)
            self._thread.start()

    def _produce(self) -> tuple[list, dict]:
        batches = self.source.next_step()
        if self.pin_memory:
            batches = [_pin(b) for b in batches]
        return batches, copy.deepcopy(self.source.state_dict())

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                item = ("ok", self._produce())
            except BaseException as e:  # handed to the training thread, which re-raises it
                item = ("error", e)
            while not self._stop.is_set():
                try:
                    self._queue.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
            if item[0] == "error":
                return

    def next(self) -> tuple[list, dict]:
        if self.depth <= 0:
            return self._produce()
        kind, value = self._queue.get()
        if kind == "error":
            raise value
        return value

    def close(self) -> None:
        self._stop.set()
        if self.depth > 0:
            self._thread.join(timeout=30)


def _pin(batch: Any) -> Any:
    if isinstance(batch, torch.Tensor):
        return batch.pin_memory()
    if isinstance(batch, dict):
        return {k: _pin(v) for k, v in batch.items()}
    return batch


# ---- logging ---------------------------------------------------------------------------------------------------


class TrainLog:
    """stdout + TensorBoard + OUT/train_log.jsonl (rank 0). On resume, rows after the checkpoint's step
    (written by the interrupted run) are dropped so the log is one clean curve."""

    def __init__(self, out: Path, enabled: bool, tensorboard: bool, resume_step: int) -> None:
        self.enabled = enabled
        self.path = out / LOG_FILE
        self.writer = None
        if not enabled:
            return
        rows = []
        if resume_step > 0 and self.path.exists():
            rows = [r for r in _read_jsonl(self.path) if r.get("step", 0) <= resume_step]
        self.path.write_text("".join(json.dumps(r) + "\n" for r in rows))
        if tensorboard:
            try:
                from torch.utils.tensorboard import SummaryWriter

                self.writer = SummaryWriter(str(out / "tensorboard"), purge_step=resume_step + 1)
            except ImportError:  # tensorboard is an optional extra
                self.writer = None

    def log(self, row: dict) -> None:
        if not self.enabled:
            return
        with open(self.path, "a") as f:
            f.write(json.dumps(row) + "\n")
        if self.writer is not None:
            for k, v in row.items():
                if k != "step" and isinstance(v, int | float):
                    self.writer.add_scalar(f"train/{k}", v, row["step"])
        # Whatever metrics the task returns, loss first, then the trainer's own columns.
        task_keys = [k for k in row if k not in TRAINER_COLUMNS and k != "loss" and isinstance(row[k], int | float)]
        parts = [f"step {row['step']}/{row['max_steps']}"]
        for k in ("loss", *task_keys, "lr", "grad_norm", "tokens_per_s"):
            if k in row:
                v = row[k]
                parts.append(f"{k} {v:.3g}" if k in ("lr",) else f"{k} {v:.4f}" if abs(v) < 1000 else f"{k} {v:.0f}")
        print(" | ".join(parts), flush=True)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()


def _read_jsonl(path: Path) -> list[dict]:
    rows = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(json.JSONDecodeError):
            rows.append(json.loads(line))
    return rows


def read_train_log(out: str | os.PathLike) -> list[dict]:
    """The rows of ``OUT/train_log.jsonl``."""
    return _read_jsonl(Path(out) / LOG_FILE)


# ---- checkpoints -----------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _single_process_dcp():
    """DCP warns on every save/load without a process group; one process is a supported case here."""
    import warnings

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="torch.distributed is disabled")
        yield


def latest_checkpoint(out: Path) -> Path | None:
    """The newest complete checkpoint folder in OUT/checkpoints."""
    root = out / CHECKPOINTS
    if not root.is_dir():
        return None
    done = [d for d in root.iterdir() if d.is_dir() and (d / DONE_FILE).exists() and d.name.startswith("step_")]
    return max(done, key=lambda d: int(d.name.split("_")[1]), default=None)


def _model_optim_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict:
    from torch.distributed.checkpoint.state_dict import get_state_dict

    model_sd, optim_sd = get_state_dict(model, optimizer)
    return {"model": model_sd, "optim": optim_sd}


def save_train_state(
    out: Path, step: int, model, optimizer, scheduler, data_state: dict, d: Dist, config: TrainConfig
) -> Path:
    """The resume state (model + optimizer shards, schedule, data position, RNG) as OUT/checkpoints/step_N.
    Not a model export: that is the task's `export` (`moca_train.checkpoint.save_pretrained_encoder`)."""
    import torch.distributed.checkpoint as dcp

    path = out / CHECKPOINTS / f"step_{step:07d}"
    if d.main and path.exists():
        shutil.rmtree(path)
    d.barrier()
    with _single_process_dcp():
        dcp.save(_model_optim_state(model, optimizer), checkpoint_id=str(path / "dcp"))
    torch.save(
        {"step": step, "scheduler": scheduler.state_dict(), "data": data_state, "rng": rng_state()},
        path / f"state_rank{d.rank}.pt",
    )
    d.barrier()
    if d.main:
        (path / DONE_FILE).write_text(json.dumps({"step": step, "world_size": d.world, "config": asdict(config)}))
        old = sorted((p for p in (out / CHECKPOINTS).iterdir() if p.is_dir() and p.name.startswith("step_")),
                     key=lambda p: int(p.name.split("_")[1]))
        for p in old[: max(0, len(old) - max(1, config.keep_checkpoints))]:
            shutil.rmtree(p, ignore_errors=True)
    d.barrier()
    return path


def load_train_state(path: Path, model, optimizer, scheduler, d: Dist) -> dict:
    """Restore model, optimizer, scheduler and RNG in place; returns the rank's saved state."""
    import torch.distributed.checkpoint as dcp
    from torch.distributed.checkpoint.state_dict import set_state_dict

    meta = json.loads((path / DONE_FILE).read_text())
    if meta["world_size"] != d.world:
        raise RuntimeError(f"{path}: saved by {meta['world_size']} processes, resuming with {d.world}")
    state = _model_optim_state(model, optimizer)
    with _single_process_dcp():
        dcp.load(state, checkpoint_id=str(path / "dcp"))
    set_state_dict(model, optimizer, model_state_dict=state["model"], optim_state_dict=state["optim"])
    saved = torch.load(path / f"state_rank{d.rank}.pt", map_location="cpu", weights_only=False)
    scheduler.load_state_dict(saved["scheduler"])
    set_rng_state(saved["rng"])
    return saved


def full_state_dict(model: nn.Module) -> dict[str, torch.Tensor]:
    """The whole model's weights on CPU (gathered from every rank under FSDP; empty on ranks > 0)."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    return get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, cpu_offload=True))


def weights_digest(model: nn.Module) -> str:
    """sha256 of every weight and buffer as this rank sees them after gathering (collective under FSDP).
    Replicated buffers are per rank, so ranks that drifted apart get different digests."""
    import hashlib

    from torch.distributed.checkpoint.state_dict import StateDictOptions, get_model_state_dict

    state = get_model_state_dict(model, options=StateDictOptions(full_state_dict=True, broadcast_from_rank0=False))
    h = hashlib.sha256()
    for key in sorted(state):
        value = state[key]
        value = value.full_tensor() if hasattr(value, "full_tensor") else value
        h.update(key.encode())
        h.update(value.detach().float().cpu().contiguous().numpy().tobytes())
    for name, buf in sorted(model.named_buffers()):
        h.update(name.encode())
        h.update(buf.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


# ---- the trainer -----------------------------------------------------------------------------------------------


class Trainer:
    def __init__(self, config: TrainConfig, task: Task) -> None:
        if config.max_steps <= 0:
            raise ValueError(f"max_steps must be positive, got {config.max_steps}")
        if config.grad_accum <= 0:
            raise ValueError(f"grad_accum must be positive, got {config.grad_accum}")
        self.config = config
        self.task = task

    def fit(self) -> dict:
        """Train to ``max_steps`` (or ``stop_at``); returns a summary (last logged row, paths)."""
        cfg, task = self.config, self.task
        out = Path(cfg.out)
        d = setup_distributed()
        if d.main:
            out.mkdir(parents=True, exist_ok=True)
        d.barrier()
        seed_everything(cfg.seed)

        # 1. Model: built identically on every rank (same seed or checkpoint), then sharded.
        model = task.build_model()
        if cfg.gradient_checkpointing:
            task.enable_gradient_checkpointing(model)
        model.train()
        amp = autocast_dtype(cfg.precision, d.device)
        strategy = cfg.strategy if cfg.strategy != "auto" else ("fsdp" if d.world > 1 else "single")
        if strategy == "fsdp":
            from torch.distributed.fsdp import MixedPrecisionPolicy, fully_shard

            if d.world == 1 and not dist.is_initialized():
                raise RuntimeError("strategy fsdp needs a process group: launch with torchrun")
            # bf16 compute with float32 gradient reduction; the root leaves the batch's dtypes alone (autocast
            # decides compute precision, and reconstruction targets stay float32).
            mp = MixedPrecisionPolicy(param_dtype=amp, reduce_dtype=torch.float32) if amp else MixedPrecisionPolicy()
            root_mp = MixedPrecisionPolicy(param_dtype=amp, reduce_dtype=torch.float32, cast_forward_inputs=False)
            for unit in task.shard_units(model):
                fully_shard(unit, mp_policy=mp)
            fully_shard(model, mp_policy=root_mp if amp else mp)  # moves each rank's shards to its device
        elif strategy == "single":
            if d.world > 1:
                raise RuntimeError("strategy single cannot run in several processes; use fsdp")
            model.to(d.device)
        else:
            raise ValueError(f"unknown strategy {cfg.strategy!r}; choose auto, fsdp or single")

        # 2. Optimizer and schedule. No weight decay on biases and norms.
        decay, no_decay = [], []
        for p in model.parameters():
            if p.requires_grad:
                (decay if p.ndim >= 2 else no_decay).append(p)
        groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
        optimizer = torch.optim.AdamW(groups, lr=cfg.lr, betas=cfg.betas, eps=cfg.adam_eps)
        warmup = math.ceil(cfg.warmup_ratio * cfg.max_steps)
        scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, linear_schedule(warmup, cfg.max_steps))
        params = [p for g in groups for p in g["params"]]

        # 3. Data, and the resume point.
        steps = task.make_steps(d.rank, d.world, cfg.grad_accum)
        start = 0
        ckpt = latest_checkpoint(out) if cfg.resume else None
        if ckpt is not None:
            saved = load_train_state(ckpt, model, optimizer, scheduler, d)
            start = int(saved["step"])
            steps.load_state_dict(saved["data"])
            data_state = saved["data"]
            if d.main:
                print(f"resumed from {ckpt} (step {start})", flush=True)
        else:
            data_state = steps.state_dict()
        log = TrainLog(out, d.main, cfg.tensorboard, start)
        end = min(cfg.max_steps, cfg.stop_at or cfg.max_steps)
        prefetch = Prefetcher(steps, cfg.prefetch, pin_memory=d.device.type == "cuda") if start < end else None
        last: dict = {}
        step = start
        custom_backward = callable(getattr(task, "forward_backward", None))

        def autocast():
            return torch.autocast(d.device.type, dtype=amp) if amp else contextlib.nullcontext()
        try:
            # 4. The loop: one iteration = one optimizer step over grad_accum micro-batches per rank.
            while step < end:
                t0 = time.perf_counter()
                micro, data_state = prefetch.next()
                totals = d.sum(_sum_dicts(task.counts(b) for b in micro))
                sums: dict[str, float] = {}
                for batch in micro:
                    batch = to_device(batch, d.device)
                    if custom_backward:
                        # The task runs its own forward/backward passes (GradCache), each under `autocast()`.
                        metrics = task.forward_backward(model, batch, totals, scale=float(d.world), autocast=autocast)
                    else:
                        with autocast():
                            loss, metrics = task.loss(model, batch, totals)
                        # FSDP averages gradients over ranks; the loss is already a share of the global sum.
                        (loss * d.world).backward()
                    for k, v in metrics.items():
                        sums[k] = sums.get(k, 0.0) + float(v.detach() if torch.is_tensor(v) else v)
                grad_norm = _clip(params, cfg.grad_clip)
                lr = optimizer.param_groups[0]["lr"]  # the rate this step used
                optimizer.step()
                scheduler.step()
                optimizer.zero_grad(set_to_none=True)
                step += 1
                sums = d.sum(sums)
                elapsed = time.perf_counter() - t0
                row = {"step": step, "max_steps": cfg.max_steps, **sums, "grad_norm": grad_norm,
                       "lr": lr, "step_time": elapsed}
                if "tokens" in sums:
                    row["tokens_per_s"] = sums["tokens"] / max(elapsed, 1e-9)
                last = row
                if step % cfg.log_every == 0 or step == end:
                    log.log(row)
                if (cfg.save_every and step % cfg.save_every == 0) or step == end:
                    save_train_state(out, step, model, optimizer, scheduler, data_state, d, cfg)
        finally:
            if prefetch is not None:
                prefetch.close()
            log.close()

        # 5. The artefact (e.g. a plain encoder checkpoint), once the schedule is complete.
        exported = None
        if cfg.export and step >= cfg.max_steps:
            state = full_state_dict(model)
            if d.main:
                task.export(state, out)
                exported = str(out)
            d.barrier()
        digest = weights_digest(model) if cfg.weights_digest else None
        if digest is not None:
            (out / f"digest_rank{d.rank}.txt").write_text(digest + "\n")
        if d.owns_group:
            dist.destroy_process_group()
        return {"step": step, "last": last, "out": str(out), "exported": exported, "rank": d.rank, "digest": digest}


def _sum_dicts(dicts: Iterator[dict[str, float]]) -> dict[str, float]:
    total: dict[str, float] = {}
    for dct in dicts:
        for k, v in dct.items():
            total[k] = total.get(k, 0.0) + float(v)
    return total


def _clip(params: list[torch.Tensor], max_norm: float) -> float:
    """Clip the global gradient norm (DTensor-aware under FSDP2); returns the norm before clipping."""
    grads = [p for p in params if p.grad is not None]
    if not grads:
        return 0.0
    norm = torch.nn.utils.clip_grad_norm_(grads, max_norm if max_norm > 0 else float("inf"))
    if hasattr(norm, "full_tensor"):
        norm = norm.full_tensor()
    return float(norm)


__all__ = [
    "Dist",
    "StepSource",
    "Task",
    "TrainConfig",
    "Trainer",
    "full_state_dict",
    "latest_checkpoint",
    "linear_schedule",
    "read_train_log",
    "setup_distributed",
]
