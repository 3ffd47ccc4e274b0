"""Rows -> model inputs, one module per stage: `cpt` (MLM + MAE), `contrastive` (queries and documents
with their prompts, chunked for GradCache), `cocoa` (EOS-bridged block-masked sequences)."""

from .cocoa import CocoaCollator, CocoaSample, additive_mask, block_mask
from .common import IGNORE_INDEX, MASK_TOKEN, check_vocab, ensure_mask_token
from .contrastive import PairCollator
from .cpt import CPTCollator, CPTSample

__all__ = ["IGNORE_INDEX", "MASK_TOKEN", "CPTCollator", "CPTSample", "CocoaCollator", "CocoaSample", "PairCollator",
           "additive_mask", "block_mask", "check_vocab", "ensure_mask_token"]
