"""Dense text encoders for the `text_dense` vector: the built-in model (`builtin`: all-MiniLM-L6-v2, int8 ONNX,
no torch), a docrag encoder folder (`moca`: what `docrag train` writes), or any sentence-transformers folder /
hub id (`sentence`)."""

from __future__ import annotations

from typing import Any

from .base import TextEncoderUnavailable
from .builtin import BUILTIN_NAME, BuiltinTextEncoder, builtin_missing, is_builtin
from .moca import MoCaTextEncoder, is_moca_folder  # torch: on use
from .sentence import SentenceTextEncoder, init_tiny_cross_encoder, init_tiny_text_encoder  # torch: on use

__all__ = ["BUILTIN_NAME", "DEFAULT_TEXT_ENCODER", "BuiltinTextEncoder", "MoCaTextEncoder", "SentenceTextEncoder",
           "TextEncoderUnavailable", "builtin_missing", "init_tiny_cross_encoder", "init_tiny_text_encoder",
           "is_builtin", "load_text_encoder"]

# What a new index gets with `text_encoder = "auto"` (see README "Text retrieval").
DEFAULT_TEXT_ENCODER = BUILTIN_NAME


def load_text_encoder(name: str, device: str | None = None) -> Any:
    """The built-in model for `builtin` or its name, a docrag encoder folder, else a sentence-transformers folder
    or hub id."""
    if is_builtin(name):
        return BuiltinTextEncoder()
    if is_moca_folder(name):
        return MoCaTextEncoder(name, device=device)
    return SentenceTextEncoder(name, device=device)
