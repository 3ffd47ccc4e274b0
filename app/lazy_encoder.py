"""The visual encoder, loaded on first use: a run with nothing to embed (a no-op re-index of an index built with
an encoder) never pays for torch and the model (seconds, and a GPU's memory)."""

from __future__ import annotations

import json
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np


def config_dim(name: str) -> int | None:
    """The embedding dimension a checkpoint folder declares (its language model's hidden size), without torch;
    None when it cannot tell (a hub id, an unusual config)."""
    path = Path(name).expanduser() / "config.json"
    try:
        cfg = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    dim = (cfg.get("text_config") or {}).get("hidden_size") or cfg.get("hidden_size")
    return int(dim) if isinstance(dim, int) and dim > 0 else None


class LazyEncoder:
    """Stands in for a `MoCaEncoder` (the `indexing.Embedder` protocol and `encode_queries`); `load()` builds the
    real one, on the first embedding or the first question it cannot answer from the checkpoint's config."""

    def __init__(self, name: str, load: Callable[[], Any]) -> None:
        self.name = name
        self._load = load
        self._dim = config_dim(name)
        self._model: Any | None = None

    @property
    def loaded(self) -> bool:
        return self._model is not None

    def load(self) -> Any:
        if self._model is None:
            self._model = self._load()
            self._dim = self._model.dim
        return self._model

    @property
    def dim(self) -> int:
        return self._dim if self._dim is not None else self.load().dim

    def encode_documents(self, images: Sequence[Any], **kwargs: Any) -> np.ndarray:
        return self.load().encode_documents(images, **kwargs)

    def encode_queries(self, queries: Sequence[str], **kwargs: Any) -> np.ndarray:
        return self.load().encode_queries(queries, **kwargs)

    def __getattr__(self, attr: str) -> Any:  # anything else a caller asks of the encoder (device, processor, …)
        if attr.startswith("_"):
            raise AttributeError(attr)
        return getattr(self.load(), attr)

    def __repr__(self) -> str:
        return f"LazyEncoder({self.name!r}, loaded={self.loaded})"
