"""Resume state in OUT/checkpoints (model + optimizer through `torch.distributed.checkpoint`, schedule,
data position, RNG), and the gathered full weights for the export and the digest."""

from __future__ import annotations

import contextlib
import json
import shutil
from dataclasses import asdict
from pathlib import Path

import torch
from torch import nn
from torch.optim.lr_scheduler import LRScheduler

from .config import TrainConfig
from .distributed import Dist
from .rng import rng_state, set_rng_state

CHECKPOINTS = "checkpoints"
DONE_FILE = "trainer.json"  # written last: a checkpoint folder without it is incomplete


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
    out: Path,
    step: int,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    scheduler: LRScheduler,
    data_state: dict,
    d: Dist,
    config: TrainConfig,
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


def load_train_state(
    path: Path, model: nn.Module, optimizer: torch.optim.Optimizer, scheduler: LRScheduler, d: Dist
) -> dict:
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
