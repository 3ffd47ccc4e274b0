"""The training stages, siblings on one trainer: `cpt` (MoCa stage 1: MLM + MAE continual pre-training),
`contrastive` (MoCa stage 2: heterogeneous contrastive fine-tuning), `cocoa` (CoCoA: EOS-bridged
reconstruction, then contrastive with EOS pooling). `common` holds what they share.

Names are imported lazily: ``python -m moca_train.stages.cpt`` must not find its module already loaded.
"""

from __future__ import annotations

import importlib

_EXPORTS = {
    "CPTConfig": "cpt", "CPTTask": "cpt", "run_cpt": "cpt",
    "ContrastiveConfig": "contrastive", "ContrastiveTask": "contrastive", "run_contrastive": "contrastive",
    "CocoaConfig": "cocoa", "CocoaTask": "cocoa", "run_cocoa": "cocoa",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
