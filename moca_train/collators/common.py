"""What the stages' collators share: the ignore label, the added ``<|mask|>`` token, the vocabulary check."""

from __future__ import annotations

MASK_TOKEN = "<|mask|>"
IGNORE_INDEX = -100


def ensure_mask_token(tokenizer) -> int:
    """The id of ``<|mask|>``, adding it as a special token when the tokenizer lacks it.

    With Qwen's tokenizer it lands on 151665, inside the 151,936-row embedding matrix, so the model
    needs no resize (`check_vocab` says when one does).
    """
    tid = tokenizer.convert_tokens_to_ids(MASK_TOKEN)
    if tid is None or tid == tokenizer.unk_token_id:
        from tokenizers import AddedToken

        tokenizer.add_tokens([AddedToken(MASK_TOKEN, special=True, normalized=False)], special_tokens=True)
        tid = tokenizer.convert_tokens_to_ids(MASK_TOKEN)
    return int(tid)


def check_vocab(model, tokenizer) -> None:
    """Grow the embedding matrix only when the tokenizer outgrew it (never for Qwen + ``<|mask|>``)."""
    rows = model.get_input_embeddings().weight.shape[0]
    if len(tokenizer) > rows:
        model.resize_token_embeddings(len(tokenizer), pad_to_multiple_of=64)


__all__ = ["IGNORE_INDEX", "MASK_TOKEN", "check_vocab", "ensure_mask_token"]
