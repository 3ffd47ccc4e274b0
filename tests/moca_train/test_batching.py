import pytest

from moca_train.batching import token_budget_batches


def test_batches_cover_every_item_once_and_respect_budget():
    lengths = [5, 100, 30, 30, 7, 64, 1, 99, 50]
    batches = token_budget_batches(lengths, budget=128)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(len(lengths)))
    for b in batches:
        assert max(lengths[i] for i in b) * len(b) <= 128 or len(b) == 1


def test_long_items_come_first_and_alone_when_over_budget():
    batches = token_budget_batches([10, 500, 10], budget=100)
    assert batches[0] == [1]
    assert sorted(batches[1]) == [0, 2]


def test_max_batch_and_bad_budget():
    assert all(len(b) <= 2 for b in token_budget_batches([1] * 7, budget=1000, max_batch=2))
    with pytest.raises(ValueError):
        token_budget_batches([1], budget=0)
