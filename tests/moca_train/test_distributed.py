"""Two processes on CPU (torchrun, gloo, FSDP2): the run completes, both ranks hold the same weights, and
the result equals one process doing the same micro-batches with gradient accumulation."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import torch
import yaml
from safetensors.torch import load_file

from moca_train.stages.cpt import run_cpt
from moca_train.trainer import read_train_log

ROOT = Path(__file__).resolve().parents[2]
STEPS = 4


def test_torchrun_two_processes_agree_with_single_process(cpt_jsonl, make_cpt_config, tmp_path):
    dist_out, single_out = tmp_path / "dist", tmp_path / "single"
    # float64: the two runs sum the same gradients in another order (a reduce-scatter vs accumulation), which
    # in float32 moves weights by ~1e-5 after Adam's normalisation, more or less with the machine's load.
    cfg = make_cpt_config([str(cpt_jsonl)], dist_out, max_steps=STEPS, save_every=2, grad_accum=1,
                          weights_digest=True, precision="fp64")
    path = tmp_path / "cpt.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         "-m", "moca_train.stages.cpt", "--config", str(path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]

    # Both ranks gathered identical weights and buffers.
    digests = [(dist_out / f"digest_rank{r}.txt").read_text() for r in (0, 1)]
    assert digests[0] == digests[1]
    # Each rank wrote its own shard of the checkpoint (FSDP really sharded).
    assert len(list((dist_out / "checkpoints" / "step_0000004" / "dcp").glob("*.distcp"))) == 2

    # One process, same global micro-batches (2 per step through accumulation): the same run.
    single = make_cpt_config([str(cpt_jsonl)], single_out, max_steps=STEPS, save_every=0, grad_accum=2,
                             precision="fp64")
    assert run_cpt(single)["step"] == STEPS
    a, b = read_train_log(dist_out), read_train_log(single_out)
    assert [r["step"] for r in a] == list(range(1, STEPS + 1))
    for key in ("loss", "mlm_loss", "mae_loss", "tokens"):
        assert np.allclose([r[key] for r in a], [r[key] for r in b], rtol=1e-10), key
    wa, wb = load_file(str(dist_out / "model.safetensors")), load_file(str(single_out / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert all(wa[k].dtype == torch.float64 for k in wa)
    # Adam's step lr * g / (|g| + eps) moves by at most lr / eps = 3e5 per unit of gradient rounding, which is
    # ~1e-16 in float64 (gradients of order 1): ~3e-11 per step, far below the bound over 4 steps.
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-9
    from moca_train.modeling import MoCaEncoder

    assert MoCaEncoder.from_pretrained(dist_out).dim == 64
