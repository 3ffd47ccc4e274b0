"""The learning-rate schedule: linear warmup, then linear decay to zero at ``max_steps``."""

from __future__ import annotations

from collections.abc import Callable


def linear_schedule(warmup_steps: int, max_steps: int) -> Callable[[int], float]:
    """LR multiplier: linear 0 -> 1 over warmup, then linear 1 -> 0 at max_steps."""

    def f(step: int) -> float:  # `step` = optimizer steps already taken
        if step < warmup_steps:
            return (step + 1) / max(1, warmup_steps)
        return max(0.0, (max_steps - step) / max(1, max_steps - warmup_steps))

    return f
