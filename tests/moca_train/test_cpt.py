"""Stage 1 (CPT): the tiny preset learns on real PDF pages, the export is a plain encoder, the MAE
corruption and decoder behave as RECIPE.md says, LoRA merges, configs parse."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import load_file

from moca_train.collators import IGNORE_INDEX, CPTCollator
from moca_train.data import CPTRow
from moca_train.stages.cpt import CPTConfig, CPTModel, CPTTask, merge_lora, run_cpt
from moca_train.trainer import read_train_log


def _mean(rows, key, sl):
    return float(np.mean([r[key] for r in rows[sl]]))


def test_forty_steps_on_pdf_pages_lower_both_losses(straight_run):
    rows = read_train_log(straight_run)
    assert len(rows) == 40
    for key in ("mlm_loss", "mae_loss"):
        first, last = _mean(rows, key, slice(0, 5)), _mean(rows, key, slice(-5, None))
        assert last < 0.7 * first, (key, first, last)  # a drop of more than 30%
    assert _mean(rows, "mlm_acc", slice(-5, None)) > _mean(rows, "mlm_acc", slice(0, 5))
    assert rows[0]["mlm_loss"] == pytest.approx(np.log(151_936), rel=0.05)  # random init: uniform over the vocab


def test_export_is_a_plain_encoder_with_the_trained_weights(straight_run, cpt_jsonl, make_cpt_config):
    from moca_train.modeling import MoCaEncoder
    from moca_train.presets import build_model

    enc = MoCaEncoder.from_pretrained(straight_run)  # strict: no missing or unexpected keys
    assert enc.model.config.text_config.is_causal is False and enc.pooling == "mean"
    tok = enc.processor.tokenizer
    assert tok.convert_tokens_to_ids("<|mask|>") == 151665
    settings = json.loads((straight_run / "docrag_encoder.json").read_text())
    assert settings["stage"] == "cpt" and settings["max_pixels"] == 32 * 28 * 28
    # The weights are the trained ones, not the initial ones.
    init = build_model("tiny", tok, seed=0).state_dict()
    trained = enc.model.state_dict()
    changed = [k for k in init if not torch.equal(init[k], trained[k])]
    assert any("visual" in k for k in changed) and any("language_model.layers" in k for k in changed)
    assert any("embed_tokens" in k for k in changed)
    # It embeds pages and queries.
    rows = [json.loads(line) for line in cpt_jsonl.read_text().splitlines()[:2]]
    pages = [Image.open(cpt_jsonl.parent / r["images"][0]) for r in rows]
    docs = enc.encode_documents(pages)
    assert docs.shape == (2, 64) and np.isfinite(docs).all() and np.allclose(np.linalg.norm(docs, axis=1), 1, 1e-5)
    # The MAE parts are stored aside, not in the encoder.
    heads = load_file(str(straight_run / "cpt_heads.safetensors"))
    assert {k.split(".")[0] for k in heads} == {"mae_decoder", "mae_head"}  # the fill is drawn per batch
    assert heads["mae_head.weight"].shape == (4 * 1176, 64)
    assert not any("mae" in k for k in trained)


@pytest.fixture(scope="module")
def tiny(cpt_jsonl, make_cpt_config, tmp_path_factory):
    cfg = make_cpt_config([str(cpt_jsonl)], tmp_path_factory.mktemp("unit"))
    task = CPTTask(cfg)
    model = task.build_model().eval()
    collator = task.collator()
    rows = [json.loads(line) for line in cpt_jsonl.read_text().splitlines()[:3]]
    samples = [collator.prepare(CPTRow(r["text"], r["images"], base_dir=str(cpt_jsonl.parent))) for r in rows]
    return task, model, collator, samples


def _loss(task, model, batch):
    with torch.no_grad():
        return model(batch, task.counts(batch))


def test_mae_masks_at_the_vision_input(tiny):
    task, model, collator, samples = tiny
    batch = collator(samples, generator=torch.Generator().manual_seed(0))
    seen = {}
    hook = model.model.model.visual.register_forward_pre_hook(lambda m, args, kw: seen.update(pv=args[0].clone()),
                                                             with_kwargs=True)
    try:
        loss, metrics = _loss(task, model, batch)
    finally:
        hook.remove()
    rows = batch["mae_mask"].repeat_interleave(4)
    assert rows.any() and (~rows).any()
    assert torch.equal(seen["pv"][rows], batch["mae_fill"].expand(int(rows.sum()), -1))  # the batch's vector
    assert torch.equal(seen["pv"][~rows], batch["pixel_values"][~rows])
    # So the model cannot see masked pixels: changing them changes nothing; changing a visible one does.
    hidden_change = dict(batch, pixel_values=batch["pixel_values"].clone())
    hidden_change["pixel_values"][rows] += 5.0
    assert torch.equal(_loss(task, model, hidden_change)[0], loss)
    visible_change = dict(batch, pixel_values=batch["pixel_values"].clone())
    visible_change["pixel_values"][~rows] += 5.0
    assert not torch.equal(_loss(task, model, visible_change)[0], loss)
    assert float(metrics["mae_loss"]) > 0 and float(metrics["mlm_loss"]) > 0


def test_the_mae_fill_is_a_fresh_vector_per_batch_by_default_and_fixed_on_request(tiny):
    # MoCa's reference code draws the fill per batch; docrag's earlier fixed vector stays an option.
    task, model, collator, samples = tiny
    assert CPTConfig().mask_fill == "per_batch" and model.mae_fill is None
    first, second = (collator(samples, generator=torch.Generator().manual_seed(k)) for k in (0, 1))
    again = collator(samples, generator=torch.Generator().manual_seed(0))
    assert first["mae_fill"].shape == (1176,) and not torch.equal(first["mae_fill"], second["mae_fill"])
    assert torch.equal(first["mae_fill"], again["mae_fill"])  # from the batch's generator: resumable, rank-free
    # Drawing the fill leaves the masks as they were.
    plain = CPTCollator(task.processor, mlm_ratio=0.4, mae_ratio=0.5, max_len=task.config.max_len)(
        samples, generator=torch.Generator().manual_seed(0))
    assert "mae_fill" not in plain
    assert torch.equal(plain["mae_mask"], first["mae_mask"]) and torch.equal(plain["labels"], first["labels"])
    with pytest.raises(ValueError, match="per_batch"):
        _loss(task, model, plain)
    for name in ("fixed", "random"):  # "random": the old name of fixed, in configs written before
        fixed = CPTModel(model.model, mask_fill=name)
        assert isinstance(fixed.mae_fill, torch.Tensor) and torch.equal(fixed.fill_for(first), fixed.fill_for(second))
    with pytest.raises(ValueError, match="per_batch, fixed, learned"):
        CPTModel(model.model, mask_fill="zeros")


def test_mae_decoder_is_the_middle_layer_and_sees_the_backbone_mask(tiny):
    task, model, collator, samples = tiny
    fresh = CPTModel(model.model, mask_fill="learned")
    middle = model.model.model.language_model.layers[1]  # 2 layers: the middle one is index 1
    for (k, a), (_, b) in zip(fresh.mae_decoder.state_dict().items(), middle.state_dict().items(), strict=True):
        assert torch.equal(a, b), k
    assert isinstance(fresh.mae_fill, torch.nn.Parameter)
    # Sample A alone vs A padded next to a longer row: A's reconstructions must not change (padding is masked
    # in the decoder layer too, and it gets the same M-RoPE positions as the backbone).
    short, long = sorted(samples[:2], key=lambda s: s.length)
    long.input_ids = long.input_ids + long.input_ids[-20:]  # make sure it is longer (text tail)
    preds = []
    hook = model.mae_head.register_forward_hook(lambda m, i, o: preds.append(o.detach()))
    try:
        for group in ([short], [short, long]):
            batch = CPTCollator(task.processor, mlm_ratio=0.0, mae_ratio=0.0)(group)
            batch["mae_fill"] = torch.zeros(1176)  # the same fill for both
            batch["mae_mask"] = torch.ones_like(batch["mae_mask"])
            batch["mae_targets"] = batch["pixel_values"].view(-1, 4, 1176)
            _loss(task, model, batch)
    finally:
        hook.remove()
    n = short.image_tokens
    assert batch["attention_mask"][0].sum() < batch["attention_mask"].shape[1]  # A really was padded
    assert torch.allclose(preds[0], preds[1][:n], atol=1e-5)


def test_text_only_batches_still_run_the_vision_tower(tiny):
    task, model, collator, _ = tiny
    batch = collator([collator.prepare(CPTRow("only words here, about revenue and costs " * 4))],
                     generator=torch.Generator().manual_seed(0))
    model.zero_grad()
    loss, metrics = model(batch, task.counts(batch))
    loss.backward()
    assert float(metrics["mae_loss"]) == 0.0 and float(metrics["mlm_loss"]) > 0
    # Every parameter got a gradient (zeros for the vision tower): FSDP ranks stay in step.
    for name, p in model.named_parameters():
        if p.requires_grad:
            assert p.grad is not None, name
    assert float(model.model.model.visual.blocks[0].attn.qkv.weight.grad.abs().sum()) == 0.0
    model.zero_grad()


def test_lora_trains_adapters_and_exports_a_merged_encoder(cpt_jsonl, make_cpt_config, tmp_path):
    from moca_train.modeling import MoCaEncoder
    from moca_train.presets import build_model

    cfg = make_cpt_config([str(cpt_jsonl)], tmp_path, max_steps=3, lr=1.0e-2)
    cfg.lora = {"r": 4, "alpha": 8}
    summary = run_cpt(cfg)
    assert summary["exported"]
    enc = MoCaEncoder.from_pretrained(tmp_path)
    init = build_model("tiny", enc.processor.tokenizer, seed=0).state_dict()
    trained = enc.model.state_dict()
    q = "model.language_model.layers.0.self_attn.q_proj.weight"
    assert not torch.equal(init[q], trained[q])  # the merged LoRA delta
    for frozen in ("model.visual.blocks.0.attn.qkv.weight", "model.language_model.embed_tokens.weight",
                   "model.language_model.layers.0.input_layernorm.weight"):
        assert torch.equal(init[frozen], trained[frozen]), frozen
    a, b = torch.randn(4, 6), torch.randn(5, 4)
    merged = merge_lora({"x.base_layer.weight": torch.zeros(5, 6), "x.lora_A.default.weight": a,
                         "x.lora_B.default.weight": b, "y": torch.ones(1)}, {"r": 4, "alpha": 8})
    assert set(merged) == {"x.weight", "y"} and torch.allclose(merged["x.weight"], 2.0 * b @ a)


def test_packaged_configs_hold_the_paper_settings():
    tiny = CPTConfig.load("tiny")
    assert tiny.base == "tiny" and tiny.train.precision == "fp32"
    for name, base in (("3b", "Qwen/Qwen2.5-VL-3B-Instruct"), ("7b", "Qwen/Qwen2.5-VL-7B-Instruct")):
        cfg = CPTConfig.load(name)
        assert cfg.base == base
        assert (cfg.mlm_ratio, cfg.mae_ratio, cfg.mae_weight, cfg.max_len) == (0.4, 0.5, 0.5, 1280)
        assert (cfg.min_pixels, cfg.max_pixels) == (256 * 28 * 28, 1024 * 28 * 28)
        t = cfg.train
        assert (t.lr, t.warmup_ratio, t.grad_clip, t.precision, t.gradient_checkpointing) == (2e-6, 0.1, 5.0, "bf16",
                                                                                            True)
    over = CPTConfig.load("tiny", {"base": "small", "train.max_steps": 7, "data": ["x.jsonl:0.5"]})
    assert over.base == "small" and over.train.max_steps == 7 and over.data == ["x.jsonl:0.5"]
    with pytest.raises(ValueError, match="unknown CPT settings: bogus"):
        CPTConfig.from_dict({"bogus": 1})
    with pytest.raises(FileNotFoundError, match="packaged configs"):
        CPTConfig.load("huge")


def test_mntp_predicts_each_masked_token_from_the_position_before_it(tiny):
    # CoCoA's warm-up (RECIPE.md): masked next-token prediction, labels shifted as in causal LM.
    task, model, collator, samples = tiny
    batch = collator(samples, generator=torch.Generator().manual_seed(0))
    mntp = CPTModel(model.model, mntp=True).eval()
    mntp.load_state_dict(model.state_dict())
    counts = CPTTask.counts_for(batch, mntp=True)
    assert counts["mlm"] == float((batch["labels"][:, 1:] != IGNORE_INDEX).sum())
    seen = []
    hook = model.model.lm_head.register_forward_hook(lambda m, args, out: seen.append(args[0].detach()))
    try:
        with torch.no_grad():
            _, metrics = mntp(batch, counts)
    finally:
        hook.remove()
    with torch.no_grad():
        hidden = model.model.model(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                                   pixel_values=torch.where(batch["mae_mask"].repeat_interleave(4)[:, None],
                                                            batch["mae_fill"][None], batch["pixel_values"]),
                                   image_grid_thw=batch["image_grid_thw"],
                                   mm_token_type_ids=batch.get("mm_token_type_ids"), use_cache=False).last_hidden_state
        labels = batch["labels"][:, 1:]
        sel = labels != IGNORE_INDEX
        expected = torch.nn.functional.cross_entropy(model.model.lm_head(hidden[:, :-1][sel]).float(), labels[sel])
    assert float(metrics["mlm_loss"]) == pytest.approx(float(expected), rel=1e-5)
    # The LM head saw the states one position before the masked tokens, not the masked positions themselves.
    assert torch.allclose(seen[0], hidden[:, :-1][sel], atol=1e-5)
    assert not torch.allclose(seen[0], hidden[batch["labels"] != IGNORE_INDEX], atol=1e-3)


def test_an_unknown_text_objective_is_refused():
    with pytest.raises(ValueError, match="text_objective"):
        CPTTask(CPTConfig.from_dict({"data": ["x.jsonl"], "text_objective": "clm"}))
