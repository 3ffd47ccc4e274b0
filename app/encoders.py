"""Which encoders a `DocRag` uses and what their folders say, without loading a model: GPU detection without
torch, checks of a named checkpoint folder, and docrag's own notes beside a checkpoint (`docrag_encoder.json`:
whether it was ever trained, the fusion weight a training run calibrated for it)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from indexing.run import EmbedderUnavailable

ENCODER_FILE = "docrag_encoder.json"  # moca_train.checkpoint.ENCODER_FILE, read here without importing torch


class EncoderUnavailable(EmbedderUnavailable):
    """The encoder cannot be used as configured (a missing folder, a checkpoint that does not load)."""


# Files that exist only where an NVIDIA driver is loaded (Linux; /dev/dxg: WSL's GPU bridge).
_NVIDIA_MARKERS = ("/proc/driver/nvidia/gpus", "/dev/nvidiactl", "/dev/nvidia0", "/dev/dxg")


def cuda_available() -> bool:
    """Whether a CUDA GPU can be used, without importing torch (~1 s, ~190 MB) where the answer is plainly no.

    No NVIDIA driver on the machine, or ``CUDA_VISIBLE_DEVICES`` set to none, means no; only otherwise is torch
    asked (it is about to be needed anyway: the encoder is a torch model).
    """
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None and visible.strip() in ("", "-1", "none", "NoDevFiles"):
        return False
    if "torch" not in sys.modules and not any(os.path.exists(m) for m in _NVIDIA_MARKERS):
        return False
    import torch

    return bool(torch.cuda.is_available())


def looks_like_folder(name: str) -> bool:
    """A path the user meant as a folder, not a hub id ("org/name")."""
    return (name.startswith((".", "/", "~")) or "\\" in name or name.count("/") != 1
            or Path(name).expanduser().exists())


def check_encoder_folder(name: str) -> None:
    """Say what is wrong with a folder the user named, not what a hub would make of its name."""
    folder = Path(name).expanduser()
    if not looks_like_folder(name):
        return
    if not folder.exists():
        raise EncoderUnavailable(f"encoder folder {name} does not exist")
    if not folder.is_dir():
        raise EncoderUnavailable(f"encoder {name} is not a folder (expected a checkpoint folder with config.json)")
    if not (folder / "config.json").is_file():
        raise EncoderUnavailable(f"encoder folder {name} has no config.json: not a saved checkpoint "
                                 "(`docrag train init` or a training run writes one)")


def encoder_notes(name: str | None) -> dict[str, Any]:
    """``docrag_encoder.json`` of a local checkpoint folder; {} for a hub id, a missing or unreadable file."""
    if not name:
        return {}
    try:
        data = json.loads((Path(name).expanduser() / ENCODER_FILE).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def is_untrained(name: str | None) -> bool:
    """Whether the checkpoint was written by `docrag train init` and never trained since (its vectors are noise)."""
    return bool(encoder_notes(name).get("untrained"))


def calibrated_weight(name: str | None, key: str = "weight_visual") -> float | None:
    """The fusion weight a training run calibrated for this encoder on its held-out split, if any."""
    value = (encoder_notes(name).get("fusion") or {}).get(key)
    return float(value) if isinstance(value, int | float) and value >= 0 else None
