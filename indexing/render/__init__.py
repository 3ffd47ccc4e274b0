"""Documents -> page images + text layer, one page at a time.

Two rasterisers behind one `Renderer` protocol: PyMuPDF (`mupdf`, fast, the default) and pdf2image/poppler
(`poppler`, a second opinion for PDFs that MuPDF draws badly); single images are handled alike by both
(`images`). Both stream pages (a 1000-page PDF never sits in RAM), cap a page's pixel count (a poster page
must not blow memory), and turn every whole-document failure into a `DocumentError` with a one-line human
reason, and every single-page failure into a `PageProblem` that is reported while the rest of the document
goes on. What they share lives in `base`; `registry` picks one by name.
"""

from .base import (
    DEFAULT_DPI,
    DEFAULT_MAX_PIXELS,
    MAX_GUNZIPPED_BYTES,
    PDF2IMAGE_HINT,
    THUMBNAIL_SIDE,
    DocumentError,
    OnProblem,
    Page,
    PageProblem,
    RenderDocument,
    Renderer,
    normalize_text,
    thumbnail_of,
)
from .mupdf import PyMuPDFRenderer, document_title
from .poppler import Pdf2ImageRenderer
from .registry import RENDERERS, make_renderer

__all__ = [
    "DEFAULT_DPI", "DEFAULT_MAX_PIXELS", "MAX_GUNZIPPED_BYTES", "PDF2IMAGE_HINT", "RENDERERS", "DocumentError",
    "OnProblem", "Page", "PageProblem", "Pdf2ImageRenderer", "PyMuPDFRenderer", "RenderDocument", "Renderer",
    "THUMBNAIL_SIDE", "document_title", "make_renderer", "normalize_text", "thumbnail_of",
]
