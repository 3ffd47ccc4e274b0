"""Model shapes by name: tiny/small for CPU smoke runs and tests, 3b/7b for the real thing.

tiny and small keep Qwen's real 151,936-row vocabulary (so the real tokenizer works unchanged):
the embedding table dominates their parameter count.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from transformers import Qwen2_5_VLConfig, Qwen2VLConfig

if TYPE_CHECKING:
    import torch
    from transformers import PreTrainedModel

QWEN_VOCAB_ROWS = 151_936  # Qwen's padded embedding matrix (ids up to 151,664 are used)


@dataclass(frozen=True)
class Preset:
    hidden: int
    intermediate: int
    layers: int
    heads: int
    kv_heads: int
    mrope_section: tuple[int, int, int]
    vision_depth: int
    vision_hidden: int
    vision_intermediate: int
    vision_heads: int
    fullatt_blocks: tuple[int, ...]
    tie_embeddings: bool = True
    extra: dict = field(default_factory=dict)
    # What `init_checkpoint` writes under dtype="auto". float32 for the CPU presets: their tests and CPU training run
    # in float32 (CPU loading upcasts anyway) and the files are small. bfloat16 for the 3b/7b shapes, as the released
    # Qwen2.5-VL/MoCa checkpoints are: GPU loading uses bf16 anyway, and float32 doubles the file (3b: 15 GB vs 7.5).
    init_dtype: str = "float32"


PRESETS: dict[str, Preset] = {
    # ~10 M parameters, of which 9.7 M are the real vocabulary's embeddings (~0.3 M elsewhere).
    "tiny": Preset(64, 128, 2, 4, 2, (2, 3, 3), 2, 64, 128, 4, (1,)),
    # ~45 M parameters, about 39 M of them embeddings.
    "small": Preset(256, 768, 4, 8, 2, (4, 6, 6), 4, 256, 512, 4, (1, 3)),
    # Qwen2.5-VL-3B-Instruct's shape.
    "3b": Preset(2048, 11008, 36, 16, 2, (16, 24, 24), 32, 1280, 3420, 16, (7, 15, 23, 31), init_dtype="bfloat16"),
    # Qwen2.5-VL-7B-Instruct's shape.
    "7b": Preset(3584, 18944, 28, 28, 4, (16, 24, 24), 32, 1280, 3420, 16, (7, 15, 23, 31), tie_embeddings=False,
                 init_dtype="bfloat16"),
}


def token_ids(tokenizer) -> dict[str, int]:
    """The multimodal token ids a Qwen-VL config needs, looked up (never hard-coded)."""
    ids = {
        "image_token_id": tokenizer.convert_tokens_to_ids("<|image_pad|>"),
        "video_token_id": tokenizer.convert_tokens_to_ids("<|video_pad|>"),
        "vision_start_token_id": tokenizer.convert_tokens_to_ids("<|vision_start|>"),
        "vision_end_token_id": tokenizer.convert_tokens_to_ids("<|vision_end|>"),
    }
    unk = getattr(tokenizer, "unk_token_id", None)
    bad = [k for k, v in ids.items() if v is None or v == unk]
    if bad:
        raise ValueError(f"tokenizer lacks Qwen-VL vision tokens: {', '.join(bad)}")
    return ids


def make_config(preset: str | Preset, tokenizer, family: str = "qwen2_5_vl", bidirectional: bool = True):
    """A Qwen2.5-VL (or Qwen2-VL) config of the given shape, bidirectional by default."""
    p = PRESETS[preset] if isinstance(preset, str) else preset
    vocab = max(QWEN_VOCAB_ROWS, len(tokenizer))
    ids = token_ids(tokenizer)
    text = dict(
        vocab_size=vocab,
        hidden_size=p.hidden,
        intermediate_size=p.intermediate,
        num_hidden_layers=p.layers,
        num_attention_heads=p.heads,
        num_key_value_heads=p.kv_heads,
        max_position_embeddings=32768,
        tie_word_embeddings=p.tie_embeddings,
        rope_parameters={"rope_type": "default", "rope_theta": 1e6, "mrope_section": list(p.mrope_section)},
        bos_token_id=tokenizer.convert_tokens_to_ids("<|endoftext|>"),
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    if family == "qwen2_5_vl":
        vision = dict(
            depth=p.vision_depth,
            hidden_size=p.vision_hidden,
            intermediate_size=p.vision_intermediate,
            num_heads=p.vision_heads,
            out_hidden_size=p.hidden,
            fullatt_block_indexes=list(p.fullatt_blocks),
        )
        config = Qwen2_5_VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=p.tie_embeddings, **ids)
    elif family == "qwen2_vl":
        vision = dict(
            depth=p.vision_depth,
            embed_dim=p.vision_hidden,
            hidden_size=p.hidden,
            num_heads=p.vision_heads,
            mlp_ratio=max(1, round(p.vision_intermediate / p.vision_hidden)),  # Qwen2-VL validates an int
        )
        config = Qwen2VLConfig(text_config=text, vision_config=vision, tie_word_embeddings=p.tie_embeddings, **ids)
    else:
        raise ValueError(f"unknown model family {family!r}; choose qwen2_5_vl or qwen2_vl")
    config.text_config.is_causal = not bidirectional
    return config


INIT_DTYPES = ("auto", "float32", "bfloat16")  # what `init_checkpoint` offers (bf16/fp32 are accepted too)


def resolve_init_dtype(preset: str, dtype: str = "auto") -> torch.dtype:
    """The dtype `init_checkpoint` writes for a preset: its own (`Preset.init_dtype`) under "auto"."""
    from .checkpoint import DTYPE_NAMES

    if preset not in PRESETS:
        raise ValueError(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    name = PRESETS[preset].init_dtype if dtype == "auto" else dtype
    resolved = DTYPE_NAMES.get(name)
    # float16 is left out: Qwen-VL weights are trained and released in bf16, and fp16's range is narrower.
    if resolved is None or resolved == DTYPE_NAMES["float16"]:
        raise ValueError(f"unknown dtype {dtype!r}; choose one of {', '.join(INIT_DTYPES)}")
    return resolved


def build_model(
    preset: str | Preset, tokenizer, family: str = "qwen2_5_vl", seed: int = 0, bidirectional: bool = True,
    dtype: torch.dtype | None = None,
) -> PreTrainedModel:
    """A randomly initialised Qwen-VL ``*ForConditionalGeneration`` of a preset's shape, in ``dtype`` (default
    float32). The weights are created in that dtype, not cast afterwards: a 3B model in bf16 never needs the 15 GB
    of a float32 copy."""
    import torch

    from .checkpoint import model_class

    config = make_config(preset, tokenizer, family=family, bidirectional=bidirectional)
    torch.manual_seed(seed)
    # dtype=None keeps torch's default (float32) and leaves config.dtype unset, as before.
    model = model_class(config)._from_config(config, attn_implementation="sdpa", dtype=dtype)
    return model.eval()


def init_checkpoint(
    preset: str, out: str | os.PathLike, *, family: str = "qwen2_5_vl", seed: int = 0, pooling: str = "mean",
    min_pixels: int | None = None, max_pixels: int | None = None, dtype: str = "auto",
) -> Path:
    """Write a complete, loadable checkpoint folder of a randomly initialised encoder, its weights in ``dtype``
    ("auto": bf16 for 3b/7b, float32 for tiny/small; see `Preset.init_dtype`). config.json records the dtype."""
    from .checkpoint import save_pretrained_encoder
    from .processing import load_processor, pixel_bounds

    weights_dtype = resolve_init_dtype(preset, dtype)  # validates preset and dtype before any slow work
    processor = load_processor(min_pixels=min_pixels, max_pixels=max_pixels)
    model = build_model(preset, processor.tokenizer, family=family, seed=seed, dtype=weights_dtype)
    lo, hi = pixel_bounds(processor.image_processor)
    # untrained: its vectors are noise, so `auto` search never fuses them (app.encoders.is_untrained); a training
    # run's export writes its own settings without the mark.
    settings = {"pooling": pooling, "min_pixels": lo, "max_pixels": hi, "format": 1, "preset": preset,
                "untrained": True}
    return save_pretrained_encoder(model, processor, out, settings=settings)
