"""Training data, one module per stage: `cpt` (interleaved rows), `pairs` (contrastive pairs), `cocoa`
(EOS-bridged input/target rows), `mining` (hard negatives); `common` holds images, weighted sources and
the data error."""

from .cocoa import CocoaRow, CocoaStream, parse_cocoa_row
from .common import DataError, Source, data_uri, image_size, iter_jsonl, load_image, open_image
from .cpt import IMAGE_PLACEHOLDER, BuildReport, CPTRow, CPTStream, build_cpt_data, page_row, parse_row
from .mining import Candidate, MiningReport, mine_hard_negatives, select_negatives
from .pairs import DEFAULT_PROMPTS, Doc, PairFile, PairRow, PairSource, parse_pair, read_pairs, write_pairs

__all__ = [
    "DEFAULT_PROMPTS",
    "IMAGE_PLACEHOLDER",
    "BuildReport",
    "CPTRow",
    "CPTStream",
    "Candidate",
    "CocoaRow",
    "CocoaStream",
    "DataError",
    "Doc",
    "MiningReport",
    "PairFile",
    "PairRow",
    "PairSource",
    "Source",
    "build_cpt_data",
    "data_uri",
    "image_size",
    "iter_jsonl",
    "load_image",
    "mine_hard_negatives",
    "open_image",
    "page_row",
    "parse_cocoa_row",
    "parse_pair",
    "parse_row",
    "read_pairs",
    "select_negatives",
    "write_pairs",
]
