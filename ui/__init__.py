"""The Gradio web app (a thin layer over app.service): `ui.app.build_app`, `ui.server.launch`, `ui.cli`.

Importing `ui` does not import Gradio; `build_app` and `launch` load it on first use.
"""

import importlib
from typing import TYPE_CHECKING, Any

from .offline import go_offline

go_offline()  # before any ui module imports Gradio

_EXPORTS = {"app": ("DocRagUI", "build_app"), "server": ("launch",), "uploads": ("UploadRefused", "store_upload")}
_MODULE_OF = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = ["DocRagUI", "UploadRefused", "build_app", "launch", "store_upload"]


def __getattr__(name: str) -> Any:
    module = _MODULE_OF.get(name)
    if module is None:
        raise AttributeError(f"module 'ui' has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)


if TYPE_CHECKING:
    from .app import DocRagUI, build_app
    from .server import launch
    from .uploads import UploadRefused, store_upload
