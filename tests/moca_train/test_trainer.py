"""The shared trainer: exact resume, checkpoint retention, schedule, loss normalisation, logs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from safetensors.torch import load_file
from torch import nn

from moca_train.trainer import TrainConfig, Trainer, linear_schedule, read_train_log

STEPS = 40  # the shared runs' length (tests/moca_train/conftest.py)

KEYS = ("step", "loss", "mlm_loss", "mae_loss", "mlm_acc", "lr", "grad_norm", "tokens_per_s")


def test_resume_reproduces_the_straight_loss_curve(straight_run, resumed_run):
    straight = read_train_log(straight_run)
    resumed = read_train_log(resumed_run)
    # The resumed run's log is one clean curve 1..40 (the second trainer appended 21..40).
    assert [r["step"] for r in straight] == list(range(1, STEPS + 1))
    assert [r["step"] for r in resumed] == list(range(1, STEPS + 1))
    for key in ("loss", "mlm_loss", "mae_loss", "lr", "tokens"):
        a = np.array([r[key] for r in straight])
        b = np.array([r[key] for r in resumed])
        assert np.allclose(a, b, rtol=1e-5, atol=1e-6), (key, np.abs(a - b).max())
    # ... and the final weights are the same.
    wa = load_file(str(straight_run / "model.safetensors"))
    wb = load_file(str(resumed_run / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5


def test_checkpoints_hold_model_optimizer_schedule_data_and_rng(resumed_run):
    ckpts = sorted(p.name for p in (resumed_run / "checkpoints").iterdir())
    assert ckpts == ["step_0000020", "step_0000040"]
    ck = resumed_run / "checkpoints" / "step_0000020"
    meta = json.loads((ck / "trainer.json").read_text())
    assert meta["step"] == 20 and meta["world_size"] == 1
    state = torch.load(ck / "state_rank0.pt", weights_only=False)
    assert set(state) == {"step", "scheduler", "data", "rng"}
    assert set(state["rng"]) >= {"python", "numpy", "torch"}
    assert state["data"]["counter"] == 20 and state["data"]["stream"]["sample"] > 0
    assert (ck / "dcp" / ".metadata").exists()


def test_log_rows_have_the_required_fields(straight_run):
    rows = read_train_log(straight_run)
    for row in rows:
        for key in KEYS:
            assert key in row and np.isfinite(row[key]), key
        assert row["tokens_per_s"] > 0 and row["tokens"] > 0
    assert list((straight_run / "tensorboard").glob("events.out.tfevents.*"))


def test_linear_schedule_warms_up_then_decays_to_zero():
    f = linear_schedule(warmup_steps=4, max_steps=20)
    assert [f(s) for s in range(4)] == [0.25, 0.5, 0.75, 1.0]
    assert f(4) == 1.0 and f(12) == pytest.approx(0.5) and f(20) == 0.0
    assert linear_schedule(0, 10)(0) == 1.0


# ---- a toy task: the trainer is not CPT-specific -------------------------------------------------------------


class ToySteps:
    """Fixed regression data, cut into micro-batches of uneven sizes."""

    def __init__(self, micro: int, rows_per_step: int = 12) -> None:
        gen = torch.Generator().manual_seed(0)
        self.x = torch.randn(240, 4, generator=gen)
        self.y = self.x @ torch.tensor([1.0, -2.0, 0.5, 3.0]) + 0.1
        self.micro, self.rows, self.pos = micro, rows_per_step, 0

    def next_step(self):
        rows = torch.arange(self.pos, self.pos + self.rows) % len(self.x)
        self.pos += self.rows
        # Uneven split (e.g. 12 rows -> 3 + 9): per-micro-batch means would weight rows unequally.
        cuts = [0, self.rows // 4, self.rows] if self.micro == 2 else [0, self.rows]
        return [{"x": self.x[rows[a:b]], "y": self.y[rows[a:b]]} for a, b in zip(cuts, cuts[1:], strict=False)]

    def state_dict(self):
        return {"pos": self.pos}

    def load_state_dict(self, state):
        self.pos = state["pos"]


class ToyTask:
    def __init__(self):
        self.exported = None

    def build_model(self):
        return nn.Linear(4, 1)

    def shard_units(self, model):
        return []

    def enable_gradient_checkpointing(self, model):
        pass

    def make_steps(self, rank, world, micro_batches):
        return ToySteps(micro_batches)

    def counts(self, batch):
        return {"rows": float(len(batch["x"]))}

    def loss(self, model, batch, totals):
        err = ((model(batch["x"]).squeeze(-1) - batch["y"]) ** 2).sum() / totals["rows"]
        return err, {"loss": err.detach(), "tokens": float(len(batch["x"]))}

    def export(self, state_dict, out: Path):
        self.exported = {k: v.clone() for k, v in state_dict.items()}


def _toy(tmp_path, **kw):
    task = ToyTask()
    cfg = TrainConfig(out=str(tmp_path), max_steps=30, lr=0.3, warmup_ratio=0.0, grad_clip=0.0, precision="fp32",
                      gradient_checkpointing=False, tensorboard=False, prefetch=0, **kw)
    summary = Trainer(cfg, task).fit()
    return task, summary


def test_accumulation_over_uneven_micro_batches_equals_one_big_batch(tmp_path):
    one, _ = _toy(tmp_path / "one", grad_accum=1)
    two, _ = _toy(tmp_path / "two", grad_accum=2)
    for k in one.exported:
        assert torch.allclose(one.exported[k], two.exported[k], atol=1e-6), k
    rows_one, rows_two = read_train_log(tmp_path / "one"), read_train_log(tmp_path / "two")
    assert rows_one[-1]["loss"] < 0.2 * rows_one[0]["loss"]  # it trains
    assert np.allclose([r["loss"] for r in rows_one], [r["loss"] for r in rows_two], rtol=1e-5)


def test_keep_checkpoints_and_no_resume(tmp_path):
    _toy(tmp_path, save_every=5, keep_checkpoints=2)
    assert sorted(p.name for p in (tmp_path / "checkpoints").iterdir()) == ["step_0000025", "step_0000030"]
    # A finished run resumes to "nothing left"; resume=False starts over and rewrites the log.
    _, again = _toy(tmp_path, save_every=5)
    assert again["step"] == 30 and len(read_train_log(tmp_path)) == 30
    _, fresh = _toy(tmp_path, resume=False)
    assert fresh["step"] == 30 and [r["step"] for r in read_train_log(tmp_path)] == list(range(1, 31))


def test_bad_settings_are_rejected(tmp_path):
    with pytest.raises(ValueError, match="max_steps"):
        Trainer(TrainConfig(out=str(tmp_path), max_steps=0), ToyTask())
    with pytest.raises(ValueError, match="unknown training settings: bogus"):
        TrainConfig.from_dict({"bogus": 1})
    with pytest.raises(ValueError, match="strategy"):
        Trainer(TrainConfig(out=str(tmp_path), max_steps=1, strategy="zero9", tensorboard=False), ToyTask()).fit()
