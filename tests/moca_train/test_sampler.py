"""The task-aware batch sampler: homogeneous per device batch, weighted across steps, deterministic per
seed, disjoint across ranks, every rank stepping together, exact resume."""

from __future__ import annotations

from collections import Counter

import pytest

from moca_train.batching import TaskBatchSampler

SIZES, WEIGHTS = [50, 30, 200], [0.5, 0.2, 0.3]


def _plans(world: int, micro: int = 1, steps: int = 200, seed: int = 0, start_state=None):
    s = TaskBatchSampler(SIZES, WEIGHTS, batch_size=4, world=world, micro=micro, seed=seed)
    if start_state is not None:
        s.load_state_dict(start_state)
    return s, [s.next_step() for _ in range(steps)]


def test_every_batch_comes_from_one_source_and_sources_mix_by_weight():
    _, plans = _plans(world=2)
    batches = [b for plan in plans for b in plan]
    assert len(batches) == 400 and all(len(rows) == 4 for _, rows in batches)
    for src, rows in batches:  # one source per batch: indices of that source, no repeats
        assert all(0 <= i < SIZES[src] for i in rows) and len(set(rows)) == 4
    share = Counter(src for src, _ in batches)
    for src, w in enumerate(WEIGHTS):
        assert share[src] / len(batches) == pytest.approx(w, abs=0.07)
    # Across steps the sources mix (not one source for a long stretch on every rank).
    assert len({src for plan in plans[:10] for src, _ in plan}) == 3


def test_ranks_get_disjoint_rows_and_step_together():
    world = 4
    _, plans = _plans(world=world, micro=2)
    for plan in plans:
        assert len(plan) == world * 2  # every rank has its micro-batches at every step
        seen: dict[int, set] = {}
        for src, rows in plan:
            assert not seen.setdefault(src, set()) & set(rows), "two batches of one step share a row"
            seen[src].update(rows)
    # Within an epoch a source's rows are each used once.
    s = TaskBatchSampler([12], [1.0], batch_size=4, world=3)
    rows = [i for _, r in s.next_step() for i in r]
    assert sorted(rows) == list(range(12))
    # Each rank's slice is its own.
    plan = plans[0]
    slices = [TaskBatchSampler(SIZES, WEIGHTS, 4, world=world, micro=2).rank_slice(plan, r) for r in range(world)]
    assert [b for sl in slices for b in sl] == plan


def test_deterministic_per_seed_and_resumable():
    _, a = _plans(world=2, steps=50)
    _, b = _plans(world=2, steps=50)
    _, c = _plans(world=2, steps=50, seed=1)
    assert a == b and a != c
    s, first = _plans(world=2, steps=20)
    _, rest = _plans(world=2, steps=30, start_state=s.state_dict())
    assert first + rest == a


def test_bad_settings_are_rejected():
    with pytest.raises(ValueError, match="fewer than one per-device batch"):
        TaskBatchSampler([3], [1.0], batch_size=4, names=["tiny.jsonl"])
    with pytest.raises(ValueError, match="sum to zero"):
        TaskBatchSampler([10], [0.0], batch_size=4)
