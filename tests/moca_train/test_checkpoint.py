import json

import numpy as np
import pytest
import torch
from safetensors.torch import load_file, save_file

from moca_train.checkpoint import CheckpointError
from moca_train.modeling import MoCaEncoder


def test_train_init_writes_standard_layout(tiny_ckpt):
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLModel

    for name in ("config.json", "model.safetensors", "tokenizer.json", "preprocessor_config.json"):
        assert (tiny_ckpt / name).exists(), name
    config = json.loads((tiny_ckpt / "config.json").read_text())
    assert config["text_config"]["is_causal"] is False
    for cls in (Qwen2_5_VLForConditionalGeneration, Qwen2_5_VLModel):
        _, info = cls.from_pretrained(str(tiny_ckpt), output_loading_info=True)
        assert not info["missing_keys"] and not info["unexpected_keys"]


def test_train_init_writes_float32_for_cpu_presets(tiny_ckpt):
    assert {t.dtype for t in load_file(str(tiny_ckpt / "model.safetensors")).values()} == {torch.float32}
    assert json.loads((tiny_ckpt / "config.json").read_text())["dtype"] == "float32"


def test_train_init_bf16_writes_bf16_and_loads(tmp_path):
    from moca_train.presets import init_checkpoint

    out = init_checkpoint("tiny", tmp_path / "bf16", dtype="bfloat16", min_pixels=16 * 28 * 28, max_pixels=64 * 28 * 28)
    assert {t.dtype for t in load_file(str(out / "model.safetensors")).values()} == {torch.bfloat16}
    config = json.loads((out / "config.json").read_text())
    assert config["dtype"] == config["text_config"]["dtype"] == config["vision_config"]["dtype"] == "bfloat16"
    enc = MoCaEncoder.from_pretrained(out)  # strict: a missing or unexpected key would raise
    query = enc.encode_queries(["revenue by quarter"])
    assert np.isfinite(query).all() and np.allclose(np.linalg.norm(query, axis=1), 1.0, atol=1e-5)


@pytest.mark.parametrize(("preset", "asked", "written"), [
    ("3b", "auto", torch.bfloat16), ("7b", "auto", torch.bfloat16), ("tiny", "auto", torch.float32),
    ("small", "auto", torch.float32), ("3b", "float32", torch.float32), ("tiny", "bf16", torch.bfloat16),
])
def test_init_dtype_resolution(preset, asked, written):
    from moca_train.presets import resolve_init_dtype

    assert resolve_init_dtype(preset, asked) == written


@pytest.mark.parametrize("asked", ["float16", "int8", "bogus"])
def test_unknown_init_dtype_is_an_error(asked):
    from moca_train.presets import resolve_init_dtype

    with pytest.raises(ValueError, match=f"unknown dtype '{asked}'; choose one of auto, float32, bfloat16"):
        resolve_init_dtype("3b", asked)

def test_save_then_load_gives_same_embeddings(tiny_ckpt, tmp_path, page_images):
    enc = MoCaEncoder.from_pretrained(tiny_ckpt)
    before = enc.encode_documents(page_images[:2])
    enc.save_pretrained(tmp_path / "copy")
    after = MoCaEncoder.from_pretrained(tmp_path / "copy").encode_documents(page_images[:2])
    assert np.array_equal(before, after)


def test_legacy_layout_loads_to_identical_outputs(tiny_ckpt, tmp_path, page_images, legacy_copy):
    legacy = legacy_copy(tiny_ckpt, tmp_path / "legacy")
    enc = MoCaEncoder.from_pretrained(legacy, processor=tiny_ckpt)
    assert enc.model.config.text_config.is_causal is False
    ref = MoCaEncoder.from_pretrained(tiny_ckpt)
    assert np.array_equal(enc.encode_documents(page_images[:2]), ref.encode_documents(page_images[:2]))
    assert np.array_equal(enc.encode_queries(["tables"]), ref.encode_queries(["tables"]))


def test_legacy_without_processor_uses_offline_processor(tiny_ckpt, tmp_path, legacy_copy):
    legacy = legacy_copy(tiny_ckpt, tmp_path / "legacy")
    enc = MoCaEncoder.from_pretrained(legacy)
    assert enc.processor.tokenizer.convert_tokens_to_ids("<|image_pad|>") == 151655


@pytest.mark.parametrize("key", ["model.norm.weight", "visual.blocks.0.attn.qkv.weight"])
def test_missing_weight_is_an_error_naming_it(tiny_ckpt, tmp_path, key, legacy_copy):
    broken = legacy_copy(tiny_ckpt, tmp_path / "broken", drop=key)
    with pytest.raises(CheckpointError, match="missing keys") as err:
        MoCaEncoder.from_pretrained(broken, processor=tiny_ckpt)
    assert key.split(".")[-2] in str(err.value)


def test_unexpected_weight_is_an_error(tiny_ckpt, tmp_path):
    extra = tmp_path / "extra"
    extra.mkdir()
    weights = load_file(str(tiny_ckpt / "model.safetensors"))
    weights["model.layers.9.mlp.up_proj.weight"] = weights["model.layers.0.mlp.up_proj.weight"].clone()
    save_file(weights, str(extra / "model.safetensors"), metadata={"format": "pt"})
    (extra / "config.json").write_text((tiny_ckpt / "config.json").read_text())
    with pytest.raises(CheckpointError, match="unexpected keys.*layers.9"):
        MoCaEncoder.from_pretrained(extra, processor=tiny_ckpt)


def test_not_a_checkpoint_is_a_clear_error(tmp_path):
    with pytest.raises(CheckpointError, match="cannot read a model config"):
        MoCaEncoder.from_pretrained(tmp_path)
