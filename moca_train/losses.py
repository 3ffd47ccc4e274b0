"""Training losses that are not a single cross-entropy: InfoNCE with cross-rank in-batch negatives.

Cross-rank negatives: each rank gathers every rank's query, positive and hard-negative embeddings
(no gradient through the collective) and puts its own tensors back in its slice, so the local slice
keeps its gradient. Every rank then computes the same global loss over all queries; backward on rank
``r`` yields the exact gradient of that global loss with respect to rank ``r``'s embeddings, and
summing parameter gradients over ranks (what FSDP's reduction does, with the trainer's scaling) gives
the gradient one process would compute on the concatenated batch.
"""

from __future__ import annotations

import torch
import torch.distributed as dist
import torch.nn.functional as F


def gather_keep_local(x: torch.Tensor) -> torch.Tensor:
    """Concatenate ``x`` from every rank along dim 0; this rank's slice is ``x`` itself (with its graph)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return x
    parts = [torch.empty_like(x) for _ in range(dist.get_world_size())]
    dist.all_gather(parts, x.detach().contiguous())
    parts[dist.get_rank()] = x
    return torch.cat(parts)


def info_nce(
    queries: torch.Tensor,
    positives: torch.Tensor,
    negatives: torch.Tensor | None = None,
    negative_mask: torch.Tensor | None = None,
    temperature: float = 0.03,
    symmetric: bool = False,
    shared_negatives: bool = False,
    gather: bool = True,
    positive_ids: torch.Tensor | None = None,
    negative_ids: torch.Tensor | None = None,
) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
    """InfoNCE summed over the global batch's queries (divide by the number of queries for the mean).

    ``queries``, ``positives``: [B, D], L2-normalised; query i's positive is row i. ``negatives``: [B, K, D]
    hard negatives per query, ``negative_mask`` [B, K] marks the real ones (a row with fewer than K).
    Scores are cosine / ``temperature``. The columns of query i: every positive of the global batch (its
    own is the target, the others are in-batch negatives), then the hard negatives -- every query's with
    ``shared_negatives`` (they are in-batch negatives too), else only its own. ``symmetric`` adds the
    document -> query direction (each positive against every query) and averages the two.
    ``positive_ids`` [B] / ``negative_ids`` [B, K] (int64 document keys) mark false negatives: a column
    holding query i's own positive document (another query about the same page) is left out of its row.
    Returns (loss sum, {"correct": queries whose positive scores highest, "queries": global count}).
    """
    if gather:
        queries, positives = gather_keep_local(queries), gather_keep_local(positives)
        if negatives is not None:
            negatives = gather_keep_local(negatives)
            if negative_mask is not None:
                negative_mask = gather_keep_local(negative_mask.to(torch.uint8)).bool()
            if negative_ids is not None:
                negative_ids = gather_keep_local(negative_ids)
        if positive_ids is not None:
            positive_ids = gather_keep_local(positive_ids)
    n = queries.shape[0]
    target = torch.arange(n, device=queries.device)
    logits = queries @ positives.T / temperature
    if positive_ids is not None:  # the same document as another query's positive is not a negative
        same = (positive_ids[:, None] == positive_ids[None, :]) & ~torch.eye(n, dtype=torch.bool, device=logits.device)
        logits = logits.masked_fill(same, float("-inf"))
    if negatives is not None and negatives.shape[1] > 0:
        k = negatives.shape[1]
        neg = queries @ negatives.reshape(n * k, -1).T / temperature  # [N, N*K]
        allowed = torch.ones(n, n * k, dtype=torch.bool, device=queries.device)
        if negative_mask is not None:
            allowed &= negative_mask.reshape(1, n * k)
        if not shared_negatives:
            owner = torch.arange(n, device=queries.device).repeat_interleave(k)
            allowed &= owner[None, :] == target[:, None]
        if positive_ids is not None and negative_ids is not None:
            allowed &= negative_ids.reshape(1, n * k) != positive_ids[:, None]
        logits = torch.cat([logits, neg.masked_fill(~allowed, float("-inf"))], dim=1)
    loss = F.cross_entropy(logits, target, reduction="none")
    if symmetric:
        back = positives @ queries.T / temperature
        if positive_ids is not None:
            back = back.masked_fill(same, float("-inf"))
        back = F.cross_entropy(back, target, reduction="none")
        loss = (loss + back) / 2
    correct = (logits.detach().argmax(1) == target).sum()
    return loss.sum(), {"correct": correct, "queries": torch.tensor(n)}


__all__ = ["gather_keep_local", "info_nce"]
