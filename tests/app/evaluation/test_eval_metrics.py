"""Metrics against hand-worked values: graded nDCG, ties, cut-offs, queries without relevant pages."""

from __future__ import annotations

import math

import pytest

from app.evaluation.compare import paired_test
from app.evaluation.metrics import evaluate, mean, per_query, rank


def test_graded_ndcg_recall_mrr_by_hand():
    qrels = {"q": {"d1": 2, "d2": 1}}
    scores = per_query(qrels, {"q": ["d3", "d1", "d2"]})["q"]
    dcg = 2 / math.log2(3) + 1 / math.log2(4)       # d1 at rank 2, d2 at rank 3 (linear gains, as trec_eval)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert scores["ndcg@5"] == pytest.approx(dcg / idcg)
    assert scores["ndcg@10"] == pytest.approx(dcg / idcg)
    assert scores["recall@1"] == 0.0 and scores["recall@5"] == 1.0 and scores["recall@10"] == 1.0
    assert scores["mrr@10"] == pytest.approx(0.5)


def test_cutoffs_and_mrr_at_10():
    qrels = {"q": {"rel": 1}}
    ranking = {"q": [f"d{i}" for i in range(10)] + ["rel"]}  # relevant at rank 11
    s = per_query(qrels, ranking)["q"]
    assert s["mrr@10"] == 0.0 and s["recall@10"] == 0.0 and s["ndcg@10"] == 0.0
    s = per_query(qrels, {"q": ["x", "y", "z", "w", "rel"]})["q"]
    assert s["ndcg@5"] == pytest.approx(1 / math.log2(6)) and s["recall@5"] == 1.0 and s["recall@1"] == 0.0
    assert s["mrr@10"] == pytest.approx(1 / 5)


def test_ties_are_broken_by_corpus_id_not_by_trec_eval():
    # Equal scores: corpus id ascending ("a" before "b"). trec_eval on raw scores would put "b" first.
    assert rank([("b", 1.0), ("a", 1.0), ("c", 2.0)]) == ["c", "a", "b"]
    assert rank([("a", 1.0), ("b", 1.0), ("c", 2.0)]) == ["c", "a", "b"]  # input order does not matter
    assert rank([("a", 0.1), ("a", 0.9), ("b", 0.5)]) == ["a", "b"]       # a repeated id keeps its best score
    qrels = {"q": {"a": 1}}
    assert per_query(qrels, {"q": rank([("c", 2.0), ("b", 1.0), ("a", 1.0)])})["q"]["mrr@10"] == pytest.approx(0.5)
    assert per_query(qrels, {"q": ["c", "b", "a"]})["q"]["mrr@10"] == pytest.approx(1 / 3)  # our order is kept


def test_queries_without_relevant_pages_and_without_hits():
    qrels = {"q1": {"d1": 1}, "q2": {"d1": 0}, "q3": {"d2": 1}}  # q2: nothing relevant; q3: retrieves nothing
    result = evaluate(qrels, {"q1": ["d1"], "q2": ["d1"], "q3": []}, subsets={"even": ["q2"], "odd": ["q1", "q3"]})
    assert result["n_queries"] == 2                         # q2 cannot be scored, q3 scores 0 (not dropped)
    assert result["ndcg@10"] == pytest.approx(0.5) and result["recall@1"] == pytest.approx(0.5)
    assert result["subsets"]["odd"]["n_queries"] == 2 and result["subsets"]["even"]["n_queries"] == 0
    assert mean({}, [])["ndcg@5"] == 0.0


def test_paired_test():
    a = {f"q{i}": 0.2 + 0.01 * (i % 7) for i in range(60)}
    same = paired_test(a, dict(a))
    assert same["delta"] == 0.0 and same["p_value"] == 1.0 and not same["significant"]
    better = {q: v + 0.3 for q, v in a.items()}
    t = paired_test(a, better)
    assert t["delta"] == pytest.approx(0.3) and t["p_value"] < 0.001 and t["significant"]
    assert t["ci95"][0] == pytest.approx(0.3) and t["n_queries"] == 60
    noisy = {q: v + (0.05 if i % 2 else -0.05) for i, (q, v) in enumerate(a.items())}
    n = paired_test(a, noisy)
    assert n["p_value"] > 0.5 and not n["significant"] and n["ci95"][0] < 0 < n["ci95"][1]
    assert paired_test(a, noisy, seed=3) == paired_test(a, noisy, seed=3)
