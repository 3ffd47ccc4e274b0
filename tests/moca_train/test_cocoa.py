"""CoCoA: the block mask has no leaks (sdpa and eager) -- changing block B never changes the EOS state, and
block A reaches B only through EOS; flash-attention is refused; phase 1 then EOS-pooled contrastive runs."""

from __future__ import annotations

import json

import pytest
import torch

from moca_train.collators.cocoa import BLOCK_A, BLOCK_B, EOS, PAD, CocoaCollator, block_mask
from moca_train.collators.common import IGNORE_INDEX
from moca_train.data import DataError
from moca_train.data.cocoa import CocoaRow, parse_cocoa_row
from moca_train.stages.cocoa import CocoaConfig, CocoaModel, CocoaTask, check_block_mask_support, run_cocoa


def test_block_mask_matches_the_recipe():
    seg = torch.tensor([[BLOCK_A, BLOCK_A, EOS, BLOCK_B, BLOCK_B, PAD]])
    m = block_mask(seg)[0, 0].int().tolist()
    assert m == [
        [1, 1, 0, 0, 0, 0],  # A sees A
        [1, 1, 0, 0, 0, 0],
        [1, 1, 1, 0, 0, 0],  # EOS sees A and itself, never B
        [0, 0, 1, 1, 1, 0],  # B sees EOS and B, never A
        [0, 0, 1, 1, 1, 0],
        [0, 0, 0, 0, 0, 1],  # padding sees only itself (no empty rows)
    ]


def test_rows_split_after_the_last_image_or_take_a_target():
    row = parse_cocoa_row({"text": "<image>\nPage text here.", "images": ["p.png"]})
    assert (row.text, row.target) == ("<image>", "Page text here.")
    row = parse_cocoa_row({"text": "<image>What is it?", "images": ["p.png"], "target": "A cat."})
    assert (row.text, row.target) == ("<image>What is it?", "A cat.")
    with pytest.raises(DataError, match="target"):
        parse_cocoa_row({"text": "no image", "images": []})


@pytest.fixture(scope="module")
def samples(cpt_jsonl, processor):
    from moca_train.collators.common import ensure_mask_token

    ensure_mask_token(processor.tokenizer)
    collator = CocoaCollator(processor, max_len=96, target_len=24, mask_ratio=0.7)
    rows = [json.loads(line) for line in cpt_jsonl.read_text().splitlines()[:2]]
    prepared = [collator.prepare(parse_cocoa_row(r, cpt_jsonl.parent)) for r in rows]
    prepared[1].b_ids = prepared[1].b_ids[:10]  # sample 1 shorter: sample 0 sits next to padding
    return collator, prepared


def _model(processor, attn):
    from moca_train.presets import build_model

    hf = build_model("tiny", processor.tokenizer, seed=0)
    hf.set_attn_implementation(attn)
    return CocoaModel(hf).eval()


def _run(model, batch, patch: dict | None = None, record: dict | None = None):
    """Final hidden states; ``record`` collects each layer's input at the EOS positions, ``patch`` overwrites them."""
    eos = batch["segments"] == EOS
    hooks = []
    for i, layer in enumerate(model.model.model.language_model.layers):
        def pre(module, args, kwargs, i=i):
            h = kwargs["hidden_states"] if "hidden_states" in kwargs else args[0]
            if record is not None:
                record[i] = h[eos].clone()
            if patch is not None:
                h = h.clone()
                h[eos] = patch[i]
                if "hidden_states" in kwargs:
                    kwargs["hidden_states"] = h
                else:
                    args = (h, *args[1:])
            return args, kwargs
        hooks.append(layer.register_forward_pre_hook(pre, with_kwargs=True))
    try:
        with torch.no_grad():
            return model.hidden_states(batch)
    finally:
        for h in hooks:
            h.remove()


@pytest.mark.parametrize("attn", ["sdpa", "eager"])
def test_the_block_mask_has_no_leaks(samples, processor, attn):
    collator, prepared = samples
    model = _model(processor, attn)
    batch = collator(prepared, generator=torch.Generator().manual_seed(0))
    seg = batch["segments"][0]
    a, e, b = seg == BLOCK_A, seg == EOS, seg == BLOCK_B
    assert batch["attention_mask"][1].sum() < batch["attention_mask"].shape[1]  # sample 1 is padded
    base = _run(model, batch)
    assert torch.isfinite(base[batch["attention_mask"].bool()]).all()

    # 1. Another block B (same length): A and EOS states unchanged, B's changed.
    other_b = dict(batch, input_ids=batch["input_ids"].clone())
    other_b["input_ids"][0, b] = (other_b["input_ids"][0, b] + 17) % 1000 + 100
    out = _run(model, other_b)
    assert torch.allclose(out[0, a], base[0, a], atol=1e-5) and torch.allclose(out[0, e], base[0, e], atol=1e-5)
    assert not torch.allclose(out[0, b], base[0, b], atol=1e-3)

    # 2. Another block A (text tokens and pixels, same shapes): B changes -- but not once EOS is pinned to its
    # original state at every layer, so A reaches B only through EOS.
    other_a = dict(batch, input_ids=batch["input_ids"].clone(), pixel_values=batch["pixel_values"] + 0.5)
    text_a = a & (batch["mm_token_type_ids"][0] == 0) & (batch["input_ids"][0] != collator.block_a.vision_start_id) \
        & (batch["input_ids"][0] != collator.block_a.vision_end_id)
    other_a["input_ids"][0, text_a] = (other_a["input_ids"][0, text_a] + 29) % 1000 + 100
    changed = _run(model, other_a)
    recorded: dict = {}
    _run(model, batch, record=recorded)
    pinned = _run(model, other_a, patch=recorded)
    through_eos = float((changed[0, b] - base[0, b]).abs().max())
    leak = float((pinned[0, b] - base[0, b]).abs().max())
    assert through_eos > 1e-5 and leak < 1e-6 and leak < through_eos / 100, (through_eos, leak)
    assert not torch.allclose(pinned[0, a], base[0, a], atol=1e-3)  # A itself did change

    # The loss: each masked B token predicted from the position before it.
    labels = batch["labels"][0]
    first_b = int(b.nonzero()[0])
    assert (labels[~(e | b)] == IGNORE_INDEX).all()
    masked = batch["input_ids"][0, b] == collator.mask_id
    assert masked.float().mean() > 0.4
    target_pos = (labels != IGNORE_INDEX).nonzero().squeeze(1) + 1
    assert (batch["input_ids"][0, target_pos] == collator.mask_id).all() and target_pos.min() >= first_b


def test_flash_attention_is_refused(tmp_path):
    with pytest.raises(ValueError, match="cannot apply CoCoA's block attention mask"):
        check_block_mask_support("flash_attention_2")
    with pytest.raises(ValueError, match="use sdpa or eager"):
        CocoaTask(CocoaConfig(data=["x.jsonl"], attn_implementation="flash_attention_2"))


def test_cocoa_then_eos_contrastive(cpt_jsonl, pair_sources, tmp_path):
    from moca_train.modeling import MoCaEncoder
    from moca_train.trainer import read_train_log

    t = {"max_steps": 1, "lr": 1e-3, "warmup_ratio": 0.0, "precision": "fp32", "gradient_checkpointing": False,
         "tensorboard": False, "prefetch": 0, "out": str(tmp_path)}
    cfg = CocoaConfig.from_dict({
        "base": "tiny", "data": [str(cpt_jsonl)], "min_pixels": 16 * 28 * 28, "max_pixels": 32 * 28 * 28,
        "max_len": 96, "target_len": 32, "token_budget": 1024, "pool_rows": 8, "train": t,
        "contrastive": {"data": [str(pair_sources["text"])], "batch_size": 3, "hard_negatives": 0,
                        "temperature": 0.02, "max_text_tokens": 32, "train": {**t, "max_steps": 1}},
    })
    summary = run_cocoa(cfg)
    assert summary["exported"] == str(tmp_path)
    recon = read_train_log(tmp_path / "reconstruction")
    assert len(recon) == 1 and all(r["loss"] > 0 and r["tokens"] > 0 for r in recon)
    assert json.loads((tmp_path / "reconstruction" / "docrag_encoder.json").read_text())["pooling"] == "eos"
    assert len(read_train_log(tmp_path)) == 1
    enc = MoCaEncoder.from_pretrained(tmp_path)
    assert enc.pooling == "eos" and enc.encode_queries(["a query"]).shape == (1, 64)
    assert isinstance(CocoaRow("t"), CocoaRow)
