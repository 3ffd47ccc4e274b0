"""The MoCa encoder and its training stages.

>>> from moca_train import MoCaEncoder
>>> enc = MoCaEncoder.from_pretrained("moca-embed/MoCa-Qwen25VL-3B")

Public names load on first use, so that importing the package (every CLI call) does not import torch.
"""

import importlib
from typing import TYPE_CHECKING, Any

_EXPORTS = {
    "modeling": ("MoCaEncoder",),
    "presets": ("PRESETS", "init_checkpoint"),
    "processing": ("load_processor",),
}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["PRESETS", "MoCaEncoder", "init_checkpoint", "load_processor"]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'moca_train' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


if TYPE_CHECKING:
    from .modeling import MoCaEncoder
    from .presets import PRESETS, init_checkpoint
    from .processing import load_processor
