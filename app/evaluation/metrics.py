"""Retrieval metrics the field's way: trec_eval through `pytrec-eval-terrier` (what MTEB and ViDoRe use).

Two details decide whether our numbers match theirs and are reproducible:

- Ties. trec_eval orders equal scores by document id, descending, which depends on how ids happen to be
  spelled. We rank ourselves first (score descending, then corpus id ascending) and hand trec_eval strictly
  decreasing scores, so a run's ranking is exactly the one we report and never depends on float noise.
- Queries. pytrec_eval silently drops a query that retrieved nothing, which would raise the mean; such a
  query scores 0 here. A query without any relevant page (no qrels row with a grade above 0) cannot be
  scored and is left out of the averages (`n_queries` counts the scored ones), as BEIR does.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

METRICS: tuple[str, ...] = ("ndcg@5", "ndcg@10", "recall@1", "recall@5", "recall@10", "mrr@10")
# Our metric name -> trec_eval's measure key in pytrec_eval's output.
_TREC_KEYS = {"ndcg@5": "ndcg_cut_5", "ndcg@10": "ndcg_cut_10", "recall@1": "recall_1", "recall@5": "recall_5",
              "recall@10": "recall_10"}
_MRR_CUTOFF = 10

Qrels = Mapping[str, Mapping[str, int]]  # query id -> corpus id -> grade (0 = not relevant)
Ranking = Mapping[str, Sequence[str]]    # query id -> corpus ids, best first


def rank(scored: Iterable[tuple[str, float]]) -> list[str]:
    """Corpus ids best first: score descending, ties by corpus id ascending; a repeated id keeps its best score."""
    best: dict[str, float] = {}
    for cid, score in scored:
        s = float(score)
        if cid not in best or s > best[cid]:
            best[cid] = s
    return [cid for cid, _ in sorted(best.items(), key=lambda kv: (-kv[1], kv[0]))]


def scorable(qrels: Qrels) -> list[str]:
    """Query ids that have at least one relevant page (grade > 0), sorted."""
    return sorted(q for q, rels in qrels.items() if any(g > 0 for g in rels.values()))


def per_query(qrels: Qrels, ranking: Ranking) -> dict[str, dict[str, float]]:
    """Every metric of every scorable query (see the module docstring for ties and empty results)."""
    import pytrec_eval

    qids = scorable(qrels)
    judged = {q: {c: int(g) for c, g in qrels[q].items()} for q in qids}
    # Strictly decreasing scores carry our ranking into trec_eval unchanged.
    run = {q: {c: float(len(ids) - i) for i, c in enumerate(ids)} for q in qids if (ids := list(ranking.get(q, ())))}
    cut = {q: dict(list(docs.items())[:_MRR_CUTOFF]) for q, docs in run.items()}
    out = {q: dict.fromkeys(METRICS, 0.0) for q in qids}
    if run:
        cuts = {f"ndcg_cut.{k}" for k in (5, 10)} | {f"recall.{k}" for k in (1, 5, 10)}
        for q, values in pytrec_eval.RelevanceEvaluator(judged, cuts).evaluate(run).items():
            out[q].update({name: float(values[key]) for name, key in _TREC_KEYS.items()})
        for q, values in pytrec_eval.RelevanceEvaluator(judged, {"recip_rank"}).evaluate(cut).items():
            out[q]["mrr@10"] = float(values["recip_rank"])
    return out


def mean(scores: Mapping[str, Mapping[str, float]], qids: Iterable[str] | None = None) -> dict[str, float]:
    """Mean of each metric over ``qids`` (default: all in ``scores``), plus ``n_queries``."""
    ids = [q for q in (scores if qids is None else qids) if q in scores]
    out: dict[str, float] = {m: float(np.mean([scores[q][m] for q in ids])) if ids else 0.0 for m in METRICS}
    out["n_queries"] = len(ids)
    return out


def evaluate(qrels: Qrels, ranking: Ranking, subsets: Mapping[str, Iterable[str]] | None = None) -> dict:
    """``{"ndcg@5": …, …, "n_queries": …, "subsets": {name: {…}}}`` for one run."""
    scores = per_query(qrels, ranking)
    result = mean(scores)
    result["subsets"] = {name: mean(scores, ids) for name, ids in sorted((subsets or {}).items())}
    return result
