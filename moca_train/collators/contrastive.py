"""Pair rows -> model inputs for contrastive training: queries and documents with their source's prompts.

A batch of B rows becomes the queries (B inputs), the documents (B positives, then each row's first K
hard negatives, only the real ones), ``neg_mask`` [B, K] and document keys (``pos_ids``, ``neg_ids``) so
the loss never counts another copy of a query's own positive as a negative. Each side is cut into chunks of
``chunk_size`` inputs (GradCache runs one chunk at a time; without it there is one chunk), every chunk a
ready processor output (``input_ids``, ``attention_mask``, ``mm_token_type_ids``, ``pixel_values``,
``image_grid_thw``). Texts are truncated to ``max_text_tokens`` before the prompt is applied, so an
image is never cut. With EOS pooling every input ends with the EOS token.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path

import torch

from ..data.common import load_image
from ..data.pairs import Doc, PairRow


class PairCollator:
    def __init__(
        self,
        processor,
        prompts_by_source: dict[str, dict],
        hard_negatives: int = 2,
        chunk_size: int | None = None,
        max_text_tokens: int = 512,
        pooling: str = "mean",
    ) -> None:
        self.processor = processor
        self.tokenizer = processor.tokenizer
        self.prompts = prompts_by_source
        self.k = hard_negatives
        self.chunk_size = chunk_size or None
        self.max_text_tokens = max_text_tokens
        self.eos = self.tokenizer.eos_token if pooling == "eos" else ""

    def _truncate(self, text: str) -> str:
        ids = self.tokenizer(text, add_special_tokens=False, split_special_tokens=True)["input_ids"]
        if len(ids) <= self.max_text_tokens:
            return text
        return self.tokenizer.decode(ids[: self.max_text_tokens])

    @staticmethod
    def doc_key(doc: Doc, base_dir: str) -> int:
        """A stable 63-bit id of a document (its resolved image path, else its text): in-batch copies of a
        query's own positive are not negatives."""
        if doc.image is not None and not doc.image.startswith("data:"):
            key = "image:" + str((Path(base_dir) / doc.image).resolve())
        else:
            key = f"image:{doc.image}" if doc.image is not None else f"text:{(doc.text or '').strip()}"
        return int.from_bytes(hashlib.sha1(key.encode()).digest()[:8], "big") >> 1

    def render(self, doc: Doc, prompts: dict, side: str, base_dir: str) -> tuple[str, object | None]:
        """(prompted text, decoded image or None) of one query or document."""
        text = self._truncate(doc.text or "")
        if doc.image is not None:
            template = prompts[f"{side}_image"]
            return template.replace("{text}", text) + self.eos, load_image(doc.image, base_dir)
        return prompts[side].replace("{text}", text) + self.eos, None

    def encode(self, items: Sequence[tuple[str, object | None]]) -> list[dict]:
        """Processor outputs, one per chunk of ``items``."""
        size = self.chunk_size or len(items)
        chunks = []
        for start in range(0, len(items), size):
            part = items[start:start + size]
            images = [im for _, im in part if im is not None]
            out = self.processor(text=[t for t, _ in part], images=images or None, padding=True,
                                 return_tensors="pt")
            chunk = {k: v for k, v in out.items()}
            if "pixel_values" in chunk:
                chunk["pixel_values"] = chunk["pixel_values"].float()
            chunks.append(chunk)
        return chunks

    def __call__(self, rows: Sequence[PairRow]) -> dict:
        if not rows:
            raise ValueError("empty batch")
        queries, docs = [], []
        neg_mask = torch.zeros(len(rows), self.k, dtype=torch.bool)
        pos_ids = torch.zeros(len(rows), dtype=torch.long)
        neg_ids = torch.full((len(rows), self.k), -1, dtype=torch.long)
        negs = []
        for i, row in enumerate(rows):
            prompts = self.prompts[row.source]
            queries.append(self.render(row.query_doc, prompts, "query", row.base_dir))
            docs.append(self.render(row.positive, prompts, "doc", row.base_dir))
            pos_ids[i] = self.doc_key(row.positive, row.base_dir)
            for j, neg in enumerate(row.negatives[: self.k]):
                negs.append(self.render(neg, prompts, "doc", row.base_dir))
                neg_mask[i, j] = True
                neg_ids[i, j] = self.doc_key(neg, row.base_dir)
        q_chunks, d_chunks = self.encode(queries), self.encode(docs + negs)
        tokens = sum(int(c["attention_mask"].sum()) for c in q_chunks + d_chunks)
        # A one-token input for the idle passes that keep FSDP ranks in step (GradCache with uneven chunks).
        idle = {"input_ids": torch.tensor([[self.tokenizer.eos_token_id]]), "attention_mask": torch.ones(1, 1,
                                                                                                        dtype=torch.long)}
        return {"queries": q_chunks, "docs": d_chunks, "neg_mask": neg_mask, "pos_ids": pos_ids, "neg_ids": neg_ids,
                "tokens": tokens, "idle": idle}


__all__ = ["PairCollator"]
