"""torchrun worker for test_distributed_contrastive.py: the same contrastive run under FSDP2 (2 gloo ranks)
twice -- plain loss and GradCache with gradient checkpointing -- in one process group."""

from __future__ import annotations

import sys

import torch.distributed as dist

from moca_train.stages.contrastive import ContrastiveConfig, run_contrastive


def main(config: str, out: str) -> None:
    dist.init_process_group("gloo")  # ours: the trainer reuses it and leaves it open between the runs
    try:
        for name, chunk, checkpointing in (("plain", 0, False), ("gradcache", 2, True)):
            cfg = ContrastiveConfig.load(config, {"train.out": f"{out}/{name}", "chunk_size": chunk,
                                                  "train.gradient_checkpointing": checkpointing})
            summary = run_contrastive(cfg)
            assert summary["step"] == cfg.train.max_steps
    finally:
        dist.destroy_process_group()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
