"""Contrastive training under torchrun (2 gloo ranks, FSDP2, in-batch negatives gathered across ranks):
GradCache with gradient checkpointing reaches the same weights as the plain loss, and both ranks agree."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import yaml
from safetensors.torch import load_file

from moca_train.trainer import read_train_log

ROOT = Path(__file__).resolve().parents[2]


def test_fsdp_gradcache_equals_the_plain_loss(pair_sources, make_cl_config, tmp_path):
    cfg = make_cl_config([f"{pair_sources['pages']}:0.5", f"{pair_sources['text']}:0.5"], tmp_path,
                         train={"max_steps": 1, "weights_digest": True, "strategy": "fsdp", "lr": 1e-2,
                                "adam_eps": 1.0})  # a large eps: Adam's first step is not sign(grad), so
    # gradient noise at the 1e-7 level (other chunk shapes) stays at that level in the weights
    path = tmp_path / "cl.yaml"
    path.write_text(yaml.safe_dump(cfg.to_dict()))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
         str(ROOT / "tests" / "moca_train" / "cl_dist_worker.py"), str(path), str(tmp_path)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    for name in ("plain", "gradcache"):
        digests = [(tmp_path / name / f"digest_rank{r}.txt").read_text() for r in (0, 1)]
        assert digests[0] == digests[1], name
    a, b = read_train_log(tmp_path / "plain"), read_train_log(tmp_path / "gradcache")
    assert [r["step"] for r in a] == [1]
    assert np.allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)
    assert a[0]["loss"] > 0 and np.isfinite(a[-1]["grad_norm"])
    wa, wb = load_file(str(tmp_path / "plain" / "model.safetensors")), load_file(str(tmp_path / "gradcache" /
                                                                                  "model.safetensors"))
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-5
