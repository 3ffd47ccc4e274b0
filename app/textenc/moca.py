"""A docrag/MoCa encoder as the dense text encoder (`--text-encoder FOLDER` of `docrag train` output).

The same weights that embed page images embed page texts and text queries, as MoCa's text-text pairs train
them: both sides raw text, no prompt. A page text is cut to its first `max_tokens` tokens, as the contrastive
stage cuts a text document (`max_text_tokens`).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .base import TextEncoderUnavailable

SETTINGS_FILE = "docrag_encoder.json"  # what marks a docrag encoder folder (moca_train.checkpoint writes it)
MAX_TOKENS = 512  # the contrastive stage's default max_text_tokens


def is_moca_folder(name: str) -> bool:
    return (Path(name) / SETTINGS_FILE).is_file()


class MoCaTextEncoder:
    """`TextEmbedder` (indexing.text_dense) over `moca_train.MoCaEncoder`, plus `encode_queries`."""

    def __init__(self, path: str, *, device: str | None = None, max_tokens: int = MAX_TOKENS) -> None:
        from moca_train import MoCaEncoder
        from moca_train.checkpoint import CheckpointError

        try:
            self.encoder = MoCaEncoder.from_pretrained(path, device=None if device in (None, "auto") else device)
        except (CheckpointError, OSError) as e:
            raise TextEncoderUnavailable(f"cannot load text encoder {path}: {str(e).splitlines()[0]}") from e
        self.name = str(path)
        self.max_tokens = max_tokens

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def _cut(self, text: str) -> str:
        tok = self.encoder.processor.tokenizer
        ids = tok(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        return text if len(ids) <= self.max_tokens else tok.decode(ids[: self.max_tokens])

    def encode_texts(self, texts: Sequence[str]) -> np.ndarray:
        """One L2-normalised vector per page text (its first `max_tokens` tokens)."""
        if not texts:
            return np.zeros((0, self.dim), np.float32)
        return self.encoder.encode_queries([self._cut(t) for t in texts])

    def encode_queries(self, queries: Sequence[str]) -> np.ndarray:
        return self.encoder.encode_queries(list(queries))
