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


class TaskBatchSampler:
    """Task-aware batches for contrastive training: every per-device batch comes from one source.

    Step ``s`` holds ``world x micro`` batches (rank ``r`` takes ``[r*micro, (r+1)*micro)``). Each batch
    draws its source by weight with an RNG seeded by ``(seed, s, j)`` and takes the next ``batch_size`` rows
    of that source's current epoch (a seeded permutation; an epoch's tail shorter than a batch is left
    for the next epoch). Every rank computes the same global plan, so ranks see different rows, always
    step together, and the run is deterministic per seed. When a source starts a new epoch inside a step,
    the rows already used in that step go to the end of the new permutation, so the batches of one step
    never share a row. State: the step counter and each source's epoch, position and deferred rows.
    """

    def __init__(self, sizes: Sequence[int], weights: Sequence[float], batch_size: int, world: int = 1,
                 micro: int = 1, seed: int = 0, names: Sequence[str] | None = None) -> None:
        if batch_size <= 0:
            raise ValueError(f"batch size must be positive, got {batch_size}")
        if len(sizes) != len(weights) or not sizes:
            raise ValueError("need one weight per source, and at least one source")
        names = list(names or [str(i) for i in range(len(sizes))])
        for name, n, w in zip(names, sizes, weights, strict=True):
            if w < 0:
                raise ValueError(f"{name}: negative mixing weight {w}")
            if w > 0 and n < batch_size:
                raise ValueError(f"{name}: {n} rows, fewer than one per-device batch of {batch_size}")
        if sum(weights) <= 0:
            raise ValueError("mixing weights sum to zero")
        self.sizes, self.weights = list(sizes), list(weights)
        self.batch_size, self.world, self.micro, self.seed = batch_size, world, micro, seed
        self.step = 0
        self.epochs = [0] * len(sizes)
        self.positions = [0] * len(sizes)
        self.deferred: list[list[int]] = [[] for _ in sizes]
        self._perms: dict[int, list[int]] = {}

    def _perm(self, src: int) -> list[int]:
        if src not in self._perms:
            import random

            perm = list(range(self.sizes[src]))
            random.Random(f"{self.seed}:perm:{src}:{self.epochs[src]}").shuffle(perm)
            late = set(self.deferred[src])
            self._perms[src] = [i for i in perm if i not in late] + [i for i in perm if i in late]
        return self._perms[src]

    def _take(self, src: int, used: set[int]) -> list[int]:
        if self.positions[src] + self.batch_size > self.sizes[src]:
            self.epochs[src] += 1
            self.positions[src] = 0
            self.deferred[src] = sorted(used)
            self._perms.pop(src, None)
        start = self.positions[src]
        self.positions[src] += self.batch_size
        return self._perm(src)[start:start + self.batch_size]

    def next_step(self) -> list[tuple[int, list[int]]]:
        """The whole step's ``(source, row indices)`` batches, ``world x micro`` of them."""
        import random

        live = [i for i, w in enumerate(self.weights) if w > 0]
        used: dict[int, set[int]] = {}
        plan = []
        for j in range(self.world * self.micro):
            src = random.Random(f"{self.seed}:source:{self.step}:{j}").choices(
                live, weights=[self.weights[i] for i in live])[0]
            rows = self._take(src, used.setdefault(src, set()))
            used[src].update(rows)
            plan.append((src, rows))
        self.step += 1
        return plan

    def rank_slice(self, plan: list, rank: int) -> list:
        return plan[rank * self.micro:(rank + 1) * self.micro]

    def state_dict(self) -> dict:
        return {"step": self.step, "epochs": list(self.epochs), "positions": list(self.positions),
                "deferred": [list(d) for d in self.deferred]}

    def load_state_dict(self, state: dict) -> None:
        if len(state["epochs"]) != len(self.sizes):
            raise ValueError(f"sampler state has {len(state['epochs'])} sources, this run has {len(self.sizes)}")
        self.step = int(state["step"])
        self.epochs = [int(e) for e in state["epochs"]]
        self.positions = [int(p) for p in state["positions"]]
        self.deferred = [list(map(int, d)) for d in state["deferred"]]
        self._perms = {}
