"""Training data, one module per stage: `cpt` (interleaved rows), `pairs` (contrastive pairs),
`cocoa` (EOS-bridged input/target rows); `common` holds images, weighted sources and the data error."""

from .common import DataError, Source, data_uri, image_size, iter_jsonl, load_image, open_image
from .cpt import IMAGE_PLACEHOLDER, BuildReport, CPTRow, CPTStream, build_cpt_data, page_row, parse_row

__all__ = [
    "IMAGE_PLACEHOLDER",
    "BuildReport",
    "CPTRow",
    "CPTStream",
    "DataError",
    "Source",
    "build_cpt_data",
    "data_uri",
    "image_size",
    "iter_jsonl",
    "load_image",
    "open_image",
    "page_row",
    "parse_row",
]
