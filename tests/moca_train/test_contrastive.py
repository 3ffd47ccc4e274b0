"""Stage 2 (contrastive): GradCache equals the plain loss (loss and gradients, with and without gradient
checkpointing); runs on real PDF pages export an encoder; resume equals an uninterrupted run; LoRA; the
pair format and the packaged configs."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from moca_train.data import DataError
from moca_train.data.pairs import PairSource, parse_pair, read_pairs
from moca_train.stages.common import enable_checkpointing
from moca_train.stages.contrastive import ContrastiveConfig, ContrastiveTask, run_contrastive
from moca_train.trainer import read_train_log


def _sources(pair_sources):
    return [f"{pair_sources['pages']}:0.7", f"{pair_sources['text']}:0.3"]


def _double(batch):
    """The batch's float tensors (pixel rows) in float64, nested chunks included."""
    if isinstance(batch, dict):
        return {k: _double(v) for k, v in batch.items()}
    if isinstance(batch, list):
        return [_double(v) for v in batch]
    return batch.double() if torch.is_tensor(batch) and batch.is_floating_point() else batch


def _grads(task, model, batch):
    model.zero_grad(set_to_none=True)
    metrics = task.forward_backward(model, batch, task.counts(batch), scale=1.0,
                                    autocast=lambda: torch.autocast("cpu", enabled=False))
    grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
    return float(metrics["loss"]), grads


def test_gradcache_equals_the_plain_loss(pair_sources, make_cl_config, tmp_path):
    cfg = make_cl_config(_sources(pair_sources), tmp_path)
    task = ContrastiveTask(cfg)
    # float64: both paths compute the same sums in another order, so float32 differs by reduction order
    # (thread scheduling, load); in float64 that difference is ~1e-15 relative and the bound below is exact.
    model = task.build_model().double().train()
    rows = [task.files[0].row(i) for i in range(3)]  # images + hard negatives (page and text)
    plain_batch = _double(task.collator()(rows))
    assert len(plain_batch["queries"]) == 1 and len(plain_batch["docs"]) == 1
    plain_loss, plain = _grads(task, model, plain_batch)

    cfg.chunk_size = 2
    cached_batch = _double(task.collator()(rows))
    assert len(cached_batch["queries"]) == 2 and len(cached_batch["docs"]) == 5  # 3 + 6 docs in chunks of 2
    for checkpointing in (False, True):
        if checkpointing:
            enable_checkpointing(model.model)
        loss, cached = _grads(task, model, cached_batch)
        assert loss == pytest.approx(plain_loss, rel=1e-12)
        assert cached.keys() == plain.keys()
        assert any("visual" in n for n in plain) and any("embed_tokens" in n for n in plain)
        for name in plain:
            scale = float(plain[name].abs().max())
            assert torch.allclose(cached[name], plain[name], atol=1e-10 * max(scale, 1e-30), rtol=1e-9), name


@pytest.fixture(scope="module")
def straight_cl(pair_sources, make_cl_config, tmp_path_factory):
    out = tmp_path_factory.mktemp("cl-straight")
    summary = run_contrastive(make_cl_config(_sources(pair_sources), out, train={"max_steps": 4, "save_every": 2},
                                             chunk_size=4))
    assert summary["step"] == 4 and summary["exported"] == str(out)
    return out


def test_contrastive_run_exports_an_encoder(straight_cl, pair_sources):
    from moca_train.modeling import MoCaEncoder

    rows = read_train_log(straight_cl)
    assert [r["step"] for r in rows] == list(range(1, 5))
    for r in rows:
        assert np.isfinite(r["loss"]) and 0 <= r["acc"] <= 1 and r["tokens"] > 0
    enc = MoCaEncoder.from_pretrained(straight_cl)
    settings = json.loads((straight_cl / "docrag_encoder.json").read_text())
    assert settings["stage"] == "contrastive" and enc.pooling == "mean"
    q = enc.encode_queries(["multiple choice", "scanning"])
    assert q.shape == (2, 64) and np.allclose(np.linalg.norm(q, axis=1), 1, atol=1e-5)


def test_resume_after_interruption_equals_an_uninterrupted_run(straight_cl, pair_sources, make_cl_config, tmp_path):
    cfg = lambda **t: make_cl_config(_sources(pair_sources), tmp_path, train={"max_steps": 4, "save_every": 2, **t},  # noqa: E731
                                     chunk_size=4)
    first = run_contrastive(cfg(stop_at=2))
    assert first["step"] == 2 and first["exported"] is None
    assert run_contrastive(cfg())["step"] == 4  # a fresh trainer continues from the step-2 checkpoint
    a, b = read_train_log(straight_cl), read_train_log(tmp_path)
    assert np.allclose([r["loss"] for r in a], [r["loss"] for r in b], rtol=1e-5)
    wa, wb = load_file(str(straight_cl / "model.safetensors")), load_file(str(tmp_path / "model.safetensors"))
    assert wa.keys() == wb.keys()
    assert max(float((wa[k] - wb[k]).abs().max()) for k in wa) < 1e-6


def test_lora_contrastive_merges_into_the_export(pair_sources, make_cl_config, tmp_path):
    from moca_train.modeling import MoCaEncoder
    from moca_train.presets import build_model

    cfg = make_cl_config([str(pair_sources["text"])], tmp_path, train={"max_steps": 2, "lr": 1e-2},
                         lora={"r": 4, "alpha": 8}, hard_negatives=0)
    assert run_contrastive(cfg)["exported"]
    enc = MoCaEncoder.from_pretrained(tmp_path)
    init = build_model("tiny", enc.processor.tokenizer, seed=0).state_dict()
    trained = enc.model.state_dict()
    assert not torch.equal(init["model.language_model.layers.0.self_attn.q_proj.weight"],
                           trained["model.language_model.layers.0.self_attn.q_proj.weight"])
    assert torch.equal(init["model.visual.blocks.0.attn.qkv.weight"], trained["model.visual.blocks.0.attn.qkv.weight"])


def test_pair_rows_and_sources(pair_sources, tmp_path):
    rows = read_pairs(pair_sources["pages"])
    assert len(rows) == 12 and rows[0].pos_image and len(rows[0].negatives) == 2
    assert rows[0].source == "pages"
    with pytest.raises(DataError, match="needs a positive"):
        parse_pair({"query": "q"})
    with pytest.raises(DataError, match="'negs' must be a list"):
        parse_pair({"query": "q", "pos": "d", "negs": "x"})
    src = PairSource.parse({"path": "a.jsonl", "weight": 0.5, "name": "docs", "prompts": {"query": "Q: {text}"}})
    assert (src.weight, src.name, src.prompts["query"]) == (0.5, "docs", "Q: {text}")
    assert src.prompts["doc_image"].startswith("<|vision_start|><|image_pad|><|vision_end|>\nRepresent the given")
    with pytest.raises(ValueError, match="exactly once"):
        PairSource.parse({"path": "a.jsonl", "prompts": {"doc_image": "no image here"}})
    # One document key per page, however the row spells its path (duplicates in a batch are not negatives).
    from moca_train.collators.contrastive import PairCollator
    from moca_train.data.pairs import Doc

    key = PairCollator.doc_key
    assert key(Doc(image="p/a.png"), "/x") == key(Doc(image="/x/p/a.png"), "/y") != key(Doc(image="b.png"), "/x")
    assert key(Doc(text=" same "), ".") == key(Doc(text="same"), ".") >= 0
    # A file with a broken row keeps its good rows.
    bad = tmp_path / "mixed.jsonl"
    bad.write_text('{"query": "a", "pos": "b"}\nnot json\n{"query": "c"}\n')
    assert [r.query for r in read_pairs(bad)] == ["a"]


def test_packaged_configs_hold_the_paper_settings():
    assert ContrastiveConfig.load("tiny").base == "tiny"
    for name in ("3b", "7b"):
        cfg = ContrastiveConfig.load(name)
        assert (cfg.temperature, cfg.hard_negatives, cfg.batch_size, cfg.pooling) == (0.03, 2, 24, "mean")
        assert (cfg.train.lr, cfg.train.warmup_ratio, cfg.train.precision) == (2e-5, 0.05, "bf16")
    with pytest.raises(ValueError, match="unknown contrastive settings: bogus"):
        ContrastiveConfig.from_dict({"bogus": 1})
