"""Rows -> model inputs, one module per stage: `cpt` (MLM + MAE), `contrastive` (queries and documents
with their prompts), `cocoa` (EOS-bridged block-masked sequences)."""

from .common import IGNORE_INDEX, MASK_TOKEN, check_vocab, ensure_mask_token
from .cpt import CPTCollator, CPTSample

__all__ = ["IGNORE_INDEX", "MASK_TOKEN", "CPTCollator", "CPTSample", "check_vocab", "ensure_mask_token"]
