"""The step loop (`Trainer.fit`), readable top to bottom: model, optimizer, resume, steps, export.

Losses are normalised per optimizer step over every rank: a task's `counts()` say how many targets a
micro-batch holds, the trainer sums them over micro-batches and ranks, and `loss()` divides by that
global total. So N ranks x A accumulation steps compute the same update as one process doing N*A
micro-batches (the distributed test checks it).
"""

from __future__ import annotations

import contextlib
import math
import time
from collections.abc import Iterator
from pathlib import Path

import torch
import torch.distributed as dist

from .batches import Prefetcher, to_device
from .checkpoints import full_state_dict, latest_checkpoint, load_train_state, save_train_state, weights_digest
from .config import Task, TrainConfig
from .distributed import setup_distributed
from .log import TrainLog
from .precision import autocast_dtype, weights_dtype
from .rng import seed_everything
from .schedule import linear_schedule


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
        model = task.build_model().to(weights_dtype(cfg.precision))
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
