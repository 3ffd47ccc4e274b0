"""The optional dense text vector `text_dense` and three-way hybrid search, on both store backends.

Vectors here are plain numpy (indexing never imports a model); tests/app/test_text_encoder.py runs the same
paths with a real (tiny) sentence-transformers model.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from test_store import BACKENDS, DIM, filler_text, page, spy_backend, unit

from indexing.store import SCHEMA_FILE, DimensionMismatch, EdgeStore, QdrantClientStore, Store, StoreError

TDIM = 12


@pytest.fixture(params=BACKENDS)
def store(request: pytest.FixtureRequest, tmp_path: Path):
    if request.param == "edge":
        s: Store = EdgeStore(tmp_path / "q", DIM)
    elif request.param == "client-path":
        s = QdrantClientStore(path=str(tmp_path / "local"), dim=DIM)
    else:
        s = QdrantClientStore(location=":memory:", dim=DIM)
    yield s
    s.close()


def test_three_way_hybrid_is_one_query_with_three_prefetches_and_one_hit_per_page(store: Store) -> None:
    rng = np.random.default_rng(3)
    q_vis, q_txt = unit(rng), unit(rng, TDIM)
    pts = [page(f"d{i // 10}", i % 10 + 1, text=filler_text(rng), visual=unit(rng)) for i in range(60)]
    for p in pts:
        p.text_dense = unit(rng, TDIM)
    target = pts[37]
    target.text += " zeppelin hangar ledger"
    target.visual = q_vis + 0.05 * unit(rng)
    target.text_dense = q_txt + 0.05 * unit(rng, TDIM)
    store.upsert(pts)
    assert store.text_dim == TDIM and store.count_with_text_dense() == 60
    spy = spy_backend(store)
    hits = store.query(text="zeppelin ledger", vector=q_vis, text_vector=q_txt, mode="hybrid", top_k=20)
    assert spy.calls == (["query"] if isinstance(store, EdgeStore) else ["query_points"])
    assert (hits[0].doc_hash, hits[0].page) == (target.doc_hash, target.page)
    keys = [(h.doc_hash, h.page) for h in hits]
    assert len(keys) == len(set(keys)) == 20  # exactly one point per page
    # Each source alone finds it too; the dense mode searches text_dense only.
    assert store.query(text_vector=q_txt, mode="dense", top_k=1)[0].page == target.page
    assert store.query(text_vector=q_txt, mode="dense", top_k=1)[0].score > 0.9  # cosine, not RRF


def test_rrf_weights_are_applied_by_the_engine(store: Store) -> None:
    """Qdrant's weighted RRF scores a source's 1-based rank r as 1/(k - 1 + r/weight) (measured): a heavier
    source's lower ranks count more. Page 3 is 3rd for BM25 only, page 13 3rd for the visual vector only: a tie,
    until one side is weighted."""
    rng = np.random.default_rng(8)
    q = unit(rng)
    pts = [page("w", n, text=filler_text(rng), visual=-q + 0.1 * unit(rng)) for n in range(1, 21)]
    for p, copies in zip(pts[:3], (6, 3, 1), strict=True):  # BM25 ranks 1, 2, 3 (pages 1-3)
        p.text = " ".join(p.text.split()[:20]) + " zeppelin" * copies
        p.visual = -q  # last for the visual vector, whatever the prefetch depth
    for p, noise in zip(pts[10:13], (0.01, 0.03, 0.06), strict=True):  # visual ranks 1, 2, 3 (pages 11-13)
        p.visual = q + noise * unit(rng)
    store.upsert(pts)
    kw = dict(text="zeppelin", vector=q, mode="hybrid", top_k=9, prefetch_k=9)

    def scores(weights: dict[str, float] | None) -> dict[int, float]:
        return {h.page: h.score for h in store.query(**kw, weights=weights)}

    plain = scores(None)
    assert {1, 2, 3, 11, 12, 13} <= set(plain)
    assert (plain[3], plain[13]) == pytest.approx((1 / 62, 1 / 62))  # k=60, rank 3: a tie
    text_heavy, visual_heavy = scores({"text": 4.0}), scores({"visual": 4.0})
    assert (text_heavy[3], text_heavy[13]) == pytest.approx((1 / 59.75, 1 / 62))
    assert visual_heavy[13] == pytest.approx(1 / 59.75)
    assert visual_heavy.get(3, 0) < visual_heavy[13]  # page 3 now ranks below page 13 (or out of the top 9)
    store.rrf_weights = {"visual": 4.0}  # the store's default weights (from the config) apply the same way
    assert scores(None)[13] == pytest.approx(1 / 59.75)
    with pytest.raises(ValueError, match="negative"):
        store.query(**kw, weights={"text": -1.0})


def test_backfill_text_dense_from_stored_text(store: Store) -> None:
    rng = np.random.default_rng(4)
    pts = [page("b", n, text=f"page {n} " + filler_text(rng)) for n in range(1, 6)]
    pts.append(page("b", 6, text=""))  # a blank page gets no text vector, and is never asked for one
    store.upsert(pts)
    missing = store.pages_missing_text_dense(doc_hash="hash-b")
    assert [(h, n) for h, n, _ in missing] == [("hash-b", n) for n in range(1, 6)]
    assert missing[0][2].startswith("page 1 ")
    store.set_text_dense("hash-b", {n: unit(rng, TDIM) for _, n, _ in missing[:3]})
    assert store.text_dim == TDIM and store.count_with_text_dense() == 3
    assert [n for _, n, _ in store.pages_missing_text_dense()] == [4, 5]
    assert store.query(text="page", mode="text", top_k=10)  # sparse vectors and payload untouched
    with pytest.raises(DimensionMismatch, match="text dim 12"):
        store.set_text_dense("hash-b", {4: unit(rng, TDIM + 1)})
    with pytest.raises(KeyError, match=r"\[9\]"):
        store.set_text_dense("hash-b", {9: unit(rng, TDIM)})


def test_dense_mode_errors(store: Store) -> None:
    store.upsert([page("e", 1, text="some words here")])
    with pytest.raises(ValueError, match="needs a query text vector"):
        store.query(text="words", mode="dense")
    with pytest.raises(StoreError, match="no dense text vectors"):
        store.query(text_vector=np.ones(TDIM), mode="dense")
    # hybrid without a visual vector but with a dense one: BM25 + dense
    store.upsert([page("e", 2, text="other words", visual=None)])
    store.set_text_dense("hash-e", {1: np.ones(TDIM), 2: -np.ones(TDIM)})
    hits = store.query(text="other", text_vector=-np.ones(TDIM), mode="hybrid", top_k=2)
    assert hits[0].page == 2


def test_text_dim_is_recorded_and_survives_reopening(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    with EdgeStore(tmp_path / "q") as s:
        p = page("r", 1, text="reopen me")
        p.text_dense = unit(rng, TDIM)
        s.upsert([p])
    assert json.loads((tmp_path / "q" / SCHEMA_FILE).read_text())["text_dim"] == TDIM
    with EdgeStore(tmp_path / "q") as s:
        assert s.text_dim == TDIM and s.dim is None
        assert s.query(text_vector=p.text_dense, mode="dense")[0].page == 1
    with QdrantClientStore(path=str(tmp_path / "local")) as c:
        c.upsert([p])
    with QdrantClientStore(path=str(tmp_path / "local")) as c:
        assert c.text_dim == TDIM and c.count_with_text_dense() == 1
