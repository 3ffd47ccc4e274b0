"""Training logs: stdout, TensorBoard and ``OUT/train_log.jsonl``, which stays one clean curve across resumes."""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

LOG_FILE = "train_log.jsonl"
# Columns the trainer adds to every log row (the rest are the task's metrics).
TRAINER_COLUMNS = ("step", "max_steps", "tokens", "grad_norm", "lr", "step_time", "tokens_per_s")


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
