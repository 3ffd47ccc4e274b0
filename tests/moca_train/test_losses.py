"""InfoNCE: equals a hand computation; hard negatives, masking, the symmetric option; cross-rank gathering
over 2 gloo processes gives the loss and gradients of one process on the concatenated batch."""

from __future__ import annotations

import math
import os
import socket

import pytest
import torch
import torch.nn.functional as F

from moca_train.losses import info_nce


def _unit(*shape, seed=0):
    return F.normalize(torch.randn(*shape, generator=torch.Generator().manual_seed(seed)), dim=-1)


def test_loss_equals_a_hand_computed_infonce():
    q, p, n = _unit(2, 3, seed=0), _unit(2, 3, seed=1), _unit(2, 1, 3, seed=2)
    t = 0.05
    total, stats = info_nce(q, p, n, torch.tensor([[True], [False]]), temperature=t, shared_negatives=True)
    expected = 0.0
    for i in range(2):
        cols = [float(q[i] @ p[j]) / t for j in range(2)] + [float(q[i] @ n[0, 0]) / t]  # query 1's negative masked
        expected += -cols[i] + math.log(sum(math.exp(c) for c in cols))
    assert float(total) == pytest.approx(expected, rel=1e-5)
    assert int(stats["queries"]) == 2
    # Without hard negatives: the plain in-batch softmax.
    plain, _ = info_nce(q, p, temperature=t)
    by_hand = sum(-float(q[i] @ p[i]) / t + math.log(sum(math.exp(float(q[i] @ p[j]) / t) for j in range(2)))
                  for i in range(2))
    assert float(plain) == pytest.approx(by_hand, rel=1e-5)


def test_own_negatives_only_and_symmetric():
    q, p, n = _unit(3, 4, seed=3), _unit(3, 4, seed=4), _unit(3, 2, 4, seed=5)
    shared, _ = info_nce(q, p, n, temperature=0.1, shared_negatives=True)
    own, _ = info_nce(q, p, n, temperature=0.1)  # the references' default: own hard negatives only
    assert float(own) < float(shared)  # fewer columns, smaller log-sum-exp
    sym, _ = info_nce(q, p, temperature=0.1, symmetric=True)
    fwd, _ = info_nce(q, p, temperature=0.1)
    back, _ = info_nce(p, q, temperature=0.1)
    assert float(sym) == pytest.approx((float(fwd) + float(back)) / 2, rel=1e-5)
    # A perfect match scores every query's positive highest.
    _, stats = info_nce(q, q.clone(), temperature=0.03)
    assert int(stats["correct"]) == 3


def test_another_copy_of_the_own_positive_is_not_a_negative():
    q, p = _unit(3, 4, seed=6), _unit(3, 4, seed=7)
    p[2] = p[0]  # queries 0 and 2 are about the same page
    ids = torch.tensor([10, 11, 10])
    total, _ = info_nce(q, p, temperature=0.1, positive_ids=ids)
    expected = 0.0
    for i, cols in ((0, [0, 1]), (1, [0, 1, 2]), (2, [1, 2])):
        expected += -float(q[i] @ p[i]) / 0.1 + math.log(sum(math.exp(float(q[i] @ p[j]) / 0.1) for j in cols))
    assert float(total) == pytest.approx(expected, rel=1e-5)
    # A hard negative that is the query's own positive document is dropped too.
    n = p[[1, 0, 1]][:, None]  # one hard negative per query, none of them its own page
    neg_ids = torch.tensor([[11], [10], [11]])
    with_neg, _ = info_nce(q, p, n, temperature=0.1, positive_ids=ids, negative_ids=neg_ids)
    own = torch.tensor([[10], [10], [10]])  # now every negative is labelled page 10: queries 0 and 2's own
    dropped, _ = info_nce(q, p, n, temperature=0.1, positive_ids=ids, negative_ids=own)
    assert float(dropped) < float(with_neg)  # those columns left queries 0 and 2's rows


# ---- two gloo ranks vs one process ---------------------------------------------------------------------------


def _encoder(seed: int = 0) -> torch.nn.Linear:
    torch.manual_seed(seed)
    return torch.nn.Linear(6, 4)


def _batch(rows: slice):
    g = torch.Generator().manual_seed(7)
    xq, xp, xn = torch.randn(8, 6, generator=g), torch.randn(8, 6, generator=g), torch.randn(8, 2, 6, generator=g)
    mask = torch.tensor([[True, True], [True, False]] * 4)
    ids = torch.tensor([0, 1, 2, 3, 4, 1, 6, 7])  # rows 1 and 5 (on different ranks) share a document
    return xq[rows], xp[rows], xn[rows], mask[rows], ids[rows]


def _loss(enc, rows: slice, gather: bool):
    xq, xp, xn, mask, ids = _batch(rows)
    emb = lambda x: F.normalize(enc(x), dim=-1)  # noqa: E731
    total, _ = info_nce(emb(xq), emb(xp), emb(xn), mask, temperature=0.05, gather=gather, positive_ids=ids)
    return total


def _rank(rank: int, port: int, queue) -> None:
    import torch.distributed as dist

    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=2)
    try:
        enc = _encoder()
        total = _loss(enc, slice(4 * rank, 4 * rank + 4), gather=True)
        total.backward()
        grads = [p.grad.clone() for p in enc.parameters()]
        for g in grads:
            dist.all_reduce(g)  # what FSDP's reduction (with the trainer's x world scaling) amounts to
        queue.put((rank, float(total), [g.numpy() for g in grads]))
    finally:
        dist.destroy_process_group()


def test_two_gloo_ranks_equal_one_process_on_the_concatenated_batch():
    import torch.multiprocessing as mp

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    ctx = mp.get_context("spawn")
    queue = ctx.Queue()
    procs = [ctx.Process(target=_rank, args=(r, port, queue)) for r in (0, 1)]
    for p in procs:
        p.start()
    results = dict((r, (loss, grads)) for r, loss, grads in (queue.get(timeout=120) for _ in procs))
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0

    enc = _encoder()
    single = _loss(enc, slice(0, 8), gather=False)
    single.backward()
    for rank in (0, 1):
        loss, grads = results[rank]
        assert loss == pytest.approx(float(single.detach()), rel=1e-5)  # every rank holds the global loss
        for got, p in zip(grads, enc.parameters(), strict=True):
            assert torch.allclose(torch.from_numpy(got), p.grad, atol=1e-5), (got, p.grad)
