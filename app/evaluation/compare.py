"""Is encoder B really better than A? Paired tests over the queries both were scored on.

A paired randomisation test (swap each query's two scores with probability 1/2, count how often the mean
difference is at least as large as observed; two-sided, seeded) and a bootstrap 95% confidence interval of
the mean difference. (ranx offers the same tests but pulls numba, pandas and seaborn; numpy is enough.)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

DEFAULT_METRICS: tuple[str, ...] = ("ndcg@5", "ndcg@10", "recall@5", "mrr@10")


def paired_test(a: Mapping[str, float], b: Mapping[str, float], n_resamples: int = 10_000, seed: int = 0,
                alpha: float = 0.05) -> dict[str, Any]:
    """``{"a", "b", "delta" (b - a), "p_value", "ci95": [lo, hi], "significant", "n_queries"}``."""
    qids = sorted(set(a) & set(b))
    if not qids:
        return {"a": 0.0, "b": 0.0, "delta": 0.0, "p_value": 1.0, "ci95": [0.0, 0.0], "significant": False,
                "n_queries": 0}
    x = np.array([a[q] for q in qids], dtype=np.float64)
    y = np.array([b[q] for q in qids], dtype=np.float64)
    d = y - x
    observed = d.mean()
    rng = np.random.default_rng(seed)
    signs = rng.choice((-1.0, 1.0), size=(n_resamples, len(d)))
    permuted = np.abs((signs * d).mean(axis=1))
    # +1 on both sides: the observed assignment is one of the permutations (never a p-value of 0).
    p = float((np.sum(permuted >= abs(observed) - 1e-12) + 1) / (n_resamples + 1))
    boot = d[rng.integers(0, len(d), size=(n_resamples, len(d)))].mean(axis=1)
    lo, hi = np.percentile(boot, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return {"a": float(x.mean()), "b": float(y.mean()), "delta": float(observed), "p_value": p,
            "ci95": [float(lo), float(hi)], "significant": bool(p < alpha), "n_queries": len(qids)}


def compare_results(a, b, metrics: Sequence[str] = DEFAULT_METRICS, n_resamples: int = 10_000,
                    seed: int = 0) -> dict[str, dict[str, dict[str, Any]]]:
    """``{mode: {metric: paired_test(...)}}`` for every mode both `EvalResult`s scored."""
    out: dict[str, dict[str, dict[str, Any]]] = {}
    for mode in a.modes:
        if mode not in b.modes:
            continue
        pa, pb = a.modes[mode].per_query, b.modes[mode].per_query
        out[mode] = {m: paired_test({q: s[m] for q, s in pa.items()}, {q: s[m] for q, s in pb.items()},
                                    n_resamples, seed) for m in metrics}
    return out
