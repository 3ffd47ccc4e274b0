"""Checkpoint I/O in the standard transformers Qwen2/2.5-VL layout.

Loading is strict: a missing, unexpected or mis-shaped weight is an error naming the keys, never a
silently random-initialised layer. Released MoCa checkpoints use the pre-4.52 key names
(``model.layers.*``, ``visual.*``) and a config without ``is_causal``; transformers' own key
conversion maps the names, and bidirectional attention is forced on the config here.
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path

import torch
from transformers import AutoConfig, PretrainedConfig, PreTrainedModel

ENCODER_FILE = "docrag_encoder.json"  # docrag's own settings (pooling) beside config.json
# Keys of it that describe the weights themselves: `untrained` (written by `docrag train init`, cleared by any
# training export: search leaves such vectors out of `auto`), `fusion` (the RRF weight calibrated for them).
WEIGHT_NOTES = ("untrained", "fusion", "preset")
FAMILIES = ("qwen2_5_vl", "qwen2_vl")


@contextlib.contextmanager
def quiet_transformers():
    """No per-shard "Loading weights" bars: docrag shows its own progress."""
    from transformers.utils import logging as hf_logging

    was_enabled = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was_enabled:
            hf_logging.enable_progress_bar()


class CheckpointError(RuntimeError):
    """A checkpoint that cannot be loaded as it is (with the reason and the keys)."""


def model_class(config: PretrainedConfig) -> type[PreTrainedModel]:
    """The ``*ForConditionalGeneration`` class of a Qwen-VL config (it keeps ``lm_head``, which
    stage 1 trains, and its layout is the one every Qwen-VL tool reads)."""
    from transformers import Qwen2_5_VLForConditionalGeneration, Qwen2VLForConditionalGeneration

    classes = {"qwen2_5_vl": Qwen2_5_VLForConditionalGeneration, "qwen2_vl": Qwen2VLForConditionalGeneration}
    if config.model_type not in classes:
        raise CheckpointError(f"model type {config.model_type!r} is not a Qwen2-VL/Qwen2.5-VL backbone")
    return classes[config.model_type]


def load_config(path: str | os.PathLike, bidirectional: bool = True) -> PretrainedConfig:
    try:
        config = AutoConfig.from_pretrained(str(path))
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot read a model config: {str(e).splitlines()[0]}") from e
    model_class(config)  # validates the family
    # Released MoCa configs predate the switch: attention must be forced bidirectional.
    config.text_config.is_causal = not bidirectional
    return config


def resolve_device(device: str | torch.device | None) -> torch.device:
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


DTYPE_NAMES = {"bf16": torch.bfloat16, "bfloat16": torch.bfloat16, "fp16": torch.float16, "float16": torch.float16,
               "fp32": torch.float32, "float32": torch.float32}


def resolve_dtype(dtype: str | torch.dtype | None, device: torch.device) -> torch.dtype:
    """bf16 on GPU, float32 on CPU unless asked otherwise."""
    if dtype is None or dtype == "auto":
        return torch.bfloat16 if device.type == "cuda" else torch.float32
    if isinstance(dtype, str):
        if dtype not in DTYPE_NAMES:
            raise ValueError(f"unknown dtype {dtype!r}; choose one of {sorted(DTYPE_NAMES)}")
        return DTYPE_NAMES[dtype]
    return dtype


def load_model(
    path: str | os.PathLike,
    *,
    device: str | torch.device | None = None,
    dtype: str | torch.dtype | None = None,
    attn_implementation: str = "sdpa",
    bidirectional: bool = True,
) -> PreTrainedModel:
    """Load a Qwen-VL ``*ForConditionalGeneration`` strictly (see module docstring)."""
    device = resolve_device(device)
    config = load_config(path, bidirectional=bidirectional)
    cls = model_class(config)
    try:
        with quiet_transformers():
            model, info = cls.from_pretrained(
                str(path),
                config=config,
                dtype=resolve_dtype(dtype, device),
                attn_implementation=attn_implementation,
                output_loading_info=True,
            )
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{path}: cannot load weights: {str(e).splitlines()[0]}") from e
    check_loading_info(path, info)
    return model.to(device).eval()


def check_loading_info(path, info: dict) -> None:
    problems = []
    for kind in ("missing_keys", "unexpected_keys", "mismatched_keys"):
        keys = sorted(str(k) for k in info.get(kind) or ())
        if keys:
            shown = ", ".join(keys[:8]) + (f" … (+{len(keys) - 8} more)" if len(keys) > 8 else "")
            problems.append(f"{kind.replace('_', ' ')}: {shown}")
    if problems:
        raise CheckpointError(f"{path}: checkpoint does not match the model ({'; '.join(problems)})")


def read_encoder_settings(path: str | os.PathLike) -> dict:
    f = Path(path) / ENCODER_FILE
    return json.loads(f.read_text()) if f.is_file() else {}


def save_pretrained_encoder(
    model: PreTrainedModel, processor, out: str | os.PathLike, settings: dict | None = None
) -> Path:
    """Write model, tokenizer and image-processor files (standard layout) plus docrag's settings."""
    from .processing import save_processor

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    model.config.text_config.is_causal = False
    with quiet_transformers():
        model.save_pretrained(str(out))
    if processor is not None:
        save_processor(processor, out)
    if settings is not None:
        (out / ENCODER_FILE).write_text(json.dumps(settings, indent=2) + "\n")
    return out
