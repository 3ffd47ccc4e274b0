"""Token-budget batching: group inputs so that (longest item x batch size) stays under a budget.

Fixed-count batches either waste the accelerator on short inputs or run out of memory on long
ones; sorting by length first keeps padding small.
"""

from __future__ import annotations

from collections.abc import Sequence


def token_budget_batches(lengths: Sequence[int], budget: int, max_batch: int | None = None) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest first, each with
    ``max(len) * n <= budget`` (an item longer than the budget gets a batch of its own)."""
    if budget <= 0:
        raise ValueError(f"token budget must be positive, got {budget}")
    order = sorted(range(len(lengths)), key=lambda i: lengths[i], reverse=True)
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for i in order:
        # Items arrive longest first, so the batch's padded width is fixed by its first item.
        width = max(longest, lengths[i])
        too_many = max_batch is not None and len(current) >= max_batch
        if current and (width * (len(current) + 1) > budget or too_many):
            batches.append(current)
            current, width = [], lengths[i]
        current.append(i)
        longest = width
    if current:
        batches.append(current)
    return batches


def modality_cost(text_tokens: int, image_tokens: int, n_images: int) -> int:
    """MoCa's cost of one interleaved item: an image token costs 4 text tokens (its 2x2 ViT patches run
    through the vision tower first) and each image a fixed 2 (vision start/end)."""
    return text_tokens + 4 * image_tokens + 2 * n_images


def bucketed_budget_batches(
    costs: Sequence[int], budget: int, seed: int = 0, max_batch: int | None = None
) -> list[list[int]]:
    """Length-bucketed token-budget batches (similar costs together, see `token_budget_batches`), in a
    seeded random order so training does not see the longest items first."""
    import random

    batches = token_budget_batches(costs, budget, max_batch=max_batch)
    random.Random(seed).shuffle(batches)
    return batches
