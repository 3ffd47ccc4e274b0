"""Choosing a renderer by name, as the user configures it."""

from __future__ import annotations

from .base import DEFAULT_DPI, DEFAULT_MAX_PIXELS, Renderer
from .mupdf import PyMuPDFRenderer
from .poppler import Pdf2ImageRenderer

RENDERERS: dict[str, type] = {"pymupdf": PyMuPDFRenderer, "pdf2image": Pdf2ImageRenderer}


def make_renderer(
    name: str = "pymupdf", dpi: int = DEFAULT_DPI, max_pixels: int = DEFAULT_MAX_PIXELS, text: bool = True
) -> Renderer:
    """The renderer called `name` ("pymupdf" or "pdf2image"), as configured by the user."""
    key = (name or "").strip().lower()
    if key not in RENDERERS:
        raise ValueError(f"unknown renderer {name!r}: choose one of {', '.join(RENDERERS)}")
    return RENDERERS[key](dpi=dpi, max_pixels=max_pixels, text=text)

