"""Fusion settings tuned on your own queries: `docrag eval calibrate SET` and the training pipeline's visual weight.

The set's queries are split in two seeded halves. Every source the index has (BM25, dense text, visual) is
ranked once per query through `DocRag.search`; a grid of settings (RRF k, a weight per source, 0 = left out) is
then fused in Python with the engine's own formula (Qdrant's weighted RRF: a source's 1-based rank r scores
1 / (k - 1 + r / weight), summed over sources), which costs milliseconds a setting instead of a query each. The best
setting on the tuning half (differences under half a query's worth count as ties, settled toward the settings in
force, then toward leaving a source out, then toward plain weights: `pick`) and the settings in force are then
scored for real (one Qdrant query each, as `docrag search` runs them) on both halves, and the held-out half
decides: a setting that scores below the ones in force there is not taken. A source weighted 0 stays in the
index, so a better encoder later can be re-weighted without re-indexing.
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import random
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..config import Config
from .dataset import EvalDataset
from .metrics import mean, per_query
from .runner import EvalEvents, EvalRunner

KS = (1, 2, 5, 10, 20, 30, 60, 100)
WEIGHTS = (0.0, 0.25, 0.5, 1.0, 2.0, 4.0)
WEIGHT_KEYS = {"text": "weight_text", "dense": "weight_dense", "visual": "weight_visual"}
SOURCES = ("text", "dense", "visual")
METRIC = "ndcg@5"
DEPTH = 100  # pages each source ranks per query (the engine's prefetch goes as deep)


def split_queries(query_ids: Sequence[str], seed: int = 0) -> tuple[list[str], list[str]]:
    """Two disjoint halves (tune, held-out), seeded, independent of the ids' order."""
    ids = sorted(query_ids)
    random.Random(seed).shuffle(ids)
    half = (len(ids) + 1) // 2
    return sorted(ids[:half]), sorted(ids[half:])


def rrf_scores(rankings: Sequence[Sequence[str]], k: int, weights: Sequence[float],
               depth: int = DEPTH) -> dict[str, float]:
    """Qdrant's weighted reciprocal rank fusion of ranked id lists: id -> fused score."""
    scores: dict[str, float] = {}
    for ranking, w in zip(rankings, weights, strict=True):
        if w <= 0:
            continue
        for r, cid in enumerate(ranking[:depth], 1):
            scores[cid] = scores.get(cid, 0.0) + 1.0 / (k - 1 + r / w)
    return scores


def rrf(rankings: Sequence[Sequence[str]], k: int, weights: Sequence[float], depth: int = DEPTH) -> list[str]:
    """The fused ranking (`rrf_scores`), equal scores by id."""
    scores = rrf_scores(rankings, k, weights, depth)
    return [cid for cid, _ in sorted(scores.items(), key=lambda kv: (-kv[1], kv[0]))]


def pick(grid: list[Setting], scores: list[float], before: Setting, n_queries: int) -> Setting:
    """The best setting on the tuning queries, where a difference smaller than half of one query's nDCG is noise:
    among the settings that close to the best, the one in force if it is there, else the one that leaves the most
    sources out (a source that does not clearly help is weighted 0), else the plainest (weights nearest 1, k
    nearest 60)."""
    margin = 0.5 / max(1, n_queries)
    top = max(scores)
    close = [st for st, sc in zip(grid, scores, strict=True) if sc >= top - margin]
    if before in close:
        return before

    def plainness(st: Setting) -> tuple:
        zeros = sum(w == 0 for w in st.weights.values())
        spread = sum(abs(math.log2(w)) for w in st.weights.values() if w > 0) + abs(math.log(st.rrf_k / 60))
        return (-zeros, round(spread, 9), st.rrf_k)

    best_score = {id(st): sc for st, sc in zip(grid, scores, strict=True)}
    return min(close, key=lambda st: (plainness(st), -best_score[id(st)]))


@dataclass
class Setting:
    rrf_k: int
    weights: dict[str, float]  # source -> weight, for the sources the index has

    def config_values(self) -> dict[str, Any]:
        return {"rrf_k": self.rrf_k, **{WEIGHT_KEYS[s]: w for s, w in self.weights.items()}}

    def describe(self) -> str:
        return f"k={self.rrf_k}, " + ", ".join(f"{s} {w:g}" for s, w in self.weights.items())


@dataclass
class Calibration:
    sources: list[str]
    before: Setting
    after: Setting                       # what to use: the tuned setting, or `before` when that lost on held-out
    tuned: Setting                       # the best on the tuning half
    rows: list[dict[str, Any]]           # {setting, tune, held_out} (nDCG@5 from the engine; single sources too)
    n_tune: int
    n_held_out: int
    kept_before: bool = False            # the tuned setting lost on the held-out half
    zeroed: list[str] = field(default_factory=list)  # sources the chosen setting leaves out (weight 0)
    grid_size: int = 0

    def notes(self) -> list[str]:
        out = []
        if self.kept_before:
            out.append(f"the best setting on the tuning half ({self.tuned.describe()}) scored below the current "
                       f"one on the held-out half: keeping {self.before.describe()}")
        for s in self.zeroed:
            out.append(f"{s}: weight 0, hybrid scores better without it on these queries; its vectors stay in "
                       "the index")
        return out

    def as_dict(self) -> dict[str, Any]:
        return {"sources": self.sources, "before": self.before.config_values(), "after": self.after.config_values(),
                "tuned": self.tuned.config_values(), "kept_before": self.kept_before, "zeroed": self.zeroed,
                "rows": self.rows, "n_tune": self.n_tune, "n_held_out": self.n_held_out,
                "grid_size": self.grid_size, "metric": METRIC, "notes": self.notes()}


class Calibrator:
    """Tunes one eval index's fusion settings (`tune`: which weights may change; the others stay as in force)."""

    def __init__(self, dataset: EvalDataset, config: Config, events: EvalEvents | None = None,
                 name: str | None = None, encoder: str | None = None, seed: int = 0) -> None:
        self.dataset, self.config, self.events = dataset, config, events or EvalEvents()
        self.name, self.encoder, self.seed = name, encoder, seed

    def _runner(self, config: Config) -> EvalRunner:
        return EvalRunner(self.dataset, config, self.events, name=self.name)

    def run(self, tune: Sequence[str] | None = None, ks: Sequence[int] | None = None,
            weights: Sequence[float] = WEIGHTS) -> Calibration:
        first = self._runner(self.config).run(top_k=DEPTH, encoder=self.encoder)
        sources = [s for s in SOURCES if s in first.modes]
        if len(sources) < 2:
            raise ValueError("nothing to calibrate: this index has BM25 only (add --text-encoder or --encoder)")
        rankings = {s: first.modes[s].ranking for s in sources}
        from ..service import DocRag

        svc = DocRag(dataclasses.replace(self.config, index_dir=Path(first.index_dir)))
        in_force = svc.fusion_weights()
        before = Setting(self.config.rrf_k, {s: in_force[s] for s in sources})
        tune_ids, held_ids = split_queries([q.id for q in self.dataset.queries], self.seed)
        qrels = self.dataset.qrels

        def grid_score(setting: Setting, ids: list[str]) -> float:
            w = [setting.weights[s] for s in sources]
            fused = {q: rrf([rankings[s].get(q, []) for s in sources], setting.rrf_k, w)[:DEPTH] for q in ids}
            return mean(per_query({q: qrels[q] for q in ids if q in qrels}, fused))[METRIC]

        free = list(tune or sources)
        ks = list(ks or KS)
        grid = []
        for k in ks:
            for ws in itertools.product(*[(weights if s in free else (before.weights[s],)) for s in sources]):
                if not any(w > 0 for w in ws):
                    continue
                grid.append(Setting(k, dict(zip(sources, ws, strict=True))))
        if before not in grid:  # the settings in force always compete (a user's own k=3, say)
            grid.append(before)
        self.events.note(f"calibrating: {len(grid)} settings on {len(tune_ids)} tuning queries")
        best = pick(grid, [grid_score(st, tune_ids) for st in grid], before, len(tune_ids))
        # The engine decides the numbers reported (and whether the tuned setting is taken).
        tuned_cfg = dataclasses.replace(self.config, **best.config_values())
        engine = {"before": first.modes["hybrid"].per_query,
                  "tuned": self._runner(tuned_cfg).run(["hybrid"], DEPTH, self.encoder).modes["hybrid"].per_query}
        rows = [{"setting": f"{s} only", "tune": mean(first.modes[s].per_query, tune_ids)[METRIC],
                 "held_out": mean(first.modes[s].per_query, held_ids)[METRIC]} for s in sources]
        for label, setting in (("before", before), ("tuned", best)):
            scores = engine[label]
            rows.append({"setting": f"hybrid {label}: {setting.describe()}", "tune": mean(scores, tune_ids)[METRIC],
                         "held_out": mean(scores, held_ids)[METRIC]})
        kept = rows[-1]["held_out"] < rows[-2]["held_out"] - 1e-12
        after = before if kept else best
        for r in rows:
            r["tune"], r["held_out"] = round(r["tune"], 4), round(r["held_out"], 4)
        zeroed = [s for s in sources if after.weights[s] == 0]
        return Calibration(sources, before, after, best, rows, len(tune_ids), len(held_ids), kept, zeroed, len(grid))
