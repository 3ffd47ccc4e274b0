"""One trainer for every stage (CPT, contrastive, CoCoA).

What it does: distributed set-up from the torchrun environment (gloo on CPU, nccl on GPU), FSDP2
(`torch.distributed.fsdp.fully_shard` on each unit the task names, then on the whole model), AdamW,
linear warmup + linear decay, gradient clipping, bf16 autocast on CUDA, gradient checkpointing,
gradient accumulation, checkpoints every N steps with exact resume (model + optimizer through
`torch.distributed.checkpoint`, scheduler, data position, torch/numpy/python RNG), and logging to
stdout, TensorBoard and ``OUT/train_log.jsonl``.

What a stage provides is a `Task` (`config`): the model, the batches, the loss and the final export.
`loop.Trainer.fit` reads top to bottom; the other modules are its parts.
"""

from .batches import to_device
from .checkpoints import full_state_dict, latest_checkpoint
from .config import StepSource, Task, TrainConfig, coerce_fields
from .distributed import Dist, setup_distributed
from .log import read_train_log
from .loop import Trainer
from .schedule import linear_schedule

__all__ = [
    "Dist",
    "StepSource",
    "Task",
    "TrainConfig",
    "Trainer",
    "coerce_fields",
    "full_state_dict",
    "latest_checkpoint",
    "linear_schedule",
    "read_train_log",
    "setup_distributed",
    "to_device",
]
