"""Stage 2: heterogeneous contrastive fine-tuning (MoCa CL) on the shared trainer.

Start from a CPT output (or any encoder checkpoint / preset), bidirectional, mean pooling (or EOS
pooling after CoCoA). Data: pair JSONL sources mixed by weight, each with its own prompts
(`moca_train.data.pairs`). Batching is task-aware: every per-device batch comes from one source
(`moca_train.batching.TaskBatchSampler`). Loss: InfoNCE at temperature 0.03 over in-batch negatives
gathered from every rank plus each query's hard negatives (`moca_train.losses.info_nce`).

GradCache (``chunk_size > 0``): the batch's embeddings are first computed chunk by chunk without a
graph; the loss and its gradients with respect to those cached embeddings follow; then each chunk is
run again with a graph and backpropagated with its cached gradient. Peak memory is one chunk's
activations, and the gradients equal the plain loss's (tested). It works under FSDP2 (every rank runs
the same number of chunk passes) and with gradient checkpointing.

Run: ``docrag train contrastive --config cl.yaml`` or, on several GPUs,
``torchrun --nproc_per_node 8 -m moca_train.stages.contrastive --config moca_train/configs/cl_3b.yaml``.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import nn

from ..batching import TaskBatchSampler
from ..collators.contrastive import PairCollator
from ..data.pairs import PairFile, PairSource
from ..losses import info_nce
from ..pooling import POOLINGS, pool
from ..processing import MAX_PIXELS, MIN_PIXELS
from ..trainer import TrainConfig, Trainer
from .common import (
    StageConfig,
    add_lora,
    enable_checkpointing,
    idle_vision,
    load_base,
    load_base_processor,
    save_encoder,
    shard_units,
    stage_main,
    write_stage_config,
)


@dataclass
class ContrastiveConfig(StageConfig):
    base: str = "tiny"  # a CPT output folder, any encoder checkpoint / hub id, or a preset (random init)
    data: list = field(default_factory=list)  # pair sources: "a.jsonl", "a.jsonl:0.3" or {path, weight, name, prompts}
    prompts: dict | None = None  # prompt overrides for every source (RECIPE.md's prompts by default)
    processor: str | None = None
    family: str = "qwen2_5_vl"
    min_pixels: int = MIN_PIXELS
    max_pixels: int = MAX_PIXELS
    max_text_tokens: int = 512  # per query / document text, before the prompt (images are never cut)
    pooling: str = "mean"  # mean (MoCa) | eos (CoCoA)
    temperature: float = 0.03
    hard_negatives: int = 2  # per query, as extra columns
    # False (MoCa's and CoCoA's reference code): a query scores only its own hard negatives, as extra columns.
    # True is our deviation: every query also scores every other query's hard negatives.
    shared_negatives: bool = False
    symmetric: bool = False  # add the document -> query direction
    gather: bool = True  # in-batch negatives from every rank
    batch_size: int = 24  # rows per device per micro-batch (one source each)
    chunk_size: int = 0  # GradCache chunk (inputs per pass); 0 = off
    attn_implementation: str = "sdpa"
    lora: dict | None = None  # {r, alpha, dropout, target_modules}; e.g. {r: 16, alpha: 64}
    seed: int = 0
    train: TrainConfig = field(default_factory=TrainConfig)

    PREFIX = "cl"
    LABEL = "contrastive"


class EncoderModel(nn.Module):
    """A Qwen-VL model as an embedder: backbone -> pooled, L2-normalised float32 vectors."""

    def __init__(self, model: nn.Module, pooling: str = "mean") -> None:
        super().__init__()
        if pooling not in POOLINGS:
            raise ValueError(f"unknown pooling {pooling!r}; choose one of {POOLINGS}")
        self.model = model
        self.pooling = pooling

    def forward(self, inputs: dict) -> torch.Tensor:
        # FSDP: every rank runs every sharded module in the same order, so a text-only pass runs the vision
        # tower idly first, where an image pass runs it.
        extra = idle_vision(self.model, inputs["input_ids"].device) if inputs.get("pixel_values") is None else None
        hidden = self.model.model(
            input_ids=inputs["input_ids"],
            attention_mask=inputs["attention_mask"],
            pixel_values=inputs.get("pixel_values"),
            image_grid_thw=inputs.get("image_grid_thw"),
            mm_token_type_ids=inputs.get("mm_token_type_ids"),
            use_cache=False,
        ).last_hidden_state
        emb = pool(hidden, inputs["attention_mask"], self.pooling)
        return emb if extra is None else emb + 0.0 * extra


class PairSteps:
    """Contrastive micro-batches for one rank: the task-aware sampler's slice, collated. Resumable."""

    def __init__(self, files: list[PairFile], collator: PairCollator, config: ContrastiveConfig,
                 rank: int, world: int, micro: int) -> None:
        self.files, self.collator, self.rank = files, collator, rank
        self.sampler = TaskBatchSampler([len(f) for f in files], [f.source.weight for f in files],
                                        config.batch_size, world=world, micro=micro, seed=config.seed,
                                        names=[f.source.path for f in files])

    def next_step(self) -> list[dict]:
        plan = self.sampler.rank_slice(self.sampler.next_step(), self.rank)
        return [self.collator([self.files[src].row(i) for i in rows]) for src, rows in plan]

    def state_dict(self) -> dict:
        return self.sampler.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.sampler.load_state_dict(state)


def open_sources(config: ContrastiveConfig) -> list[PairFile]:
    if not config.data:
        raise ValueError("no training data: give at least one pair JSONL source")
    sources = [PairSource.parse(s, config.prompts) for s in config.data]
    names = [s.name for s in sources]
    if len(set(names)) != len(names):
        raise ValueError(f"two pair sources share a name ({', '.join(names)}): name them in the config")
    return [PairFile(s) for s in sources]


class ContrastiveTask:
    """MoCa stage 2 for `moca_train.trainer.Trainer` (with its own forward/backward for GradCache)."""

    def __init__(self, config: ContrastiveConfig, processor=None) -> None:
        self.config = config
        self.files = open_sources(config)
        self.processor = processor or load_base_processor(config)
        self.model_config = None

    def build_model(self) -> EncoderModel:
        model, _ = load_base(self.config, self.processor)
        self.model_config = model.config
        if self.config.lora:
            add_lora(model, self.config.lora)
        return EncoderModel(model, self.config.pooling)

    def shard_units(self, model: EncoderModel) -> list[nn.Module]:
        return shard_units(model.model)

    def enable_gradient_checkpointing(self, model: EncoderModel) -> None:
        enable_checkpointing(model.model)

    def collator(self) -> PairCollator:
        cfg = self.config
        return PairCollator(self.processor, {f.source.name: f.source.prompts for f in self.files},
                            hard_negatives=cfg.hard_negatives, chunk_size=cfg.chunk_size or None,
                            max_text_tokens=cfg.max_text_tokens, pooling=cfg.pooling)

    def make_steps(self, rank: int, world: int, micro_batches: int) -> PairSteps:
        return PairSteps(self.files, self.collator(), self.config, rank, world, micro_batches)

    def counts(self, batch: dict) -> dict[str, float]:
        return {"queries": float(batch["neg_mask"].shape[0])}

    # ---- the loss ----------------------------------------------------------------------------------------------
    def _loss(self, q: torch.Tensor, d: torch.Tensor, batch: dict, totals: dict) -> tuple:
        """(this micro-batch's share of the step loss, metrics) from the batch's embeddings."""
        cfg = self.config
        b = q.shape[0]
        neg_mask = batch["neg_mask"]
        positives, negatives = d[:b], None
        if cfg.hard_negatives > 0:
            # Scatter the real negatives into [B, K, D]; missing ones stay zero and are masked out.
            negatives = d.new_zeros(b * cfg.hard_negatives, d.shape[1])
            negatives = negatives.index_copy(0, neg_mask.reshape(-1).nonzero().squeeze(1), d[b:])
            negatives = negatives.view(b, cfg.hard_negatives, -1)
        total, stats = info_nce(q, positives, negatives, neg_mask, temperature=cfg.temperature,
                                symmetric=cfg.symmetric, shared_negatives=cfg.shared_negatives, gather=cfg.gather,
                                positive_ids=batch.get("pos_ids"), negative_ids=batch.get("neg_ids"))
        world = float(torch.distributed.get_world_size()) if cfg.gather and torch.distributed.is_initialized() else 1.0
        n = max(totals["queries"], 1.0)
        # Every rank holds the same global loss; the metrics are a 1/world share so the trainer's sum is right.
        metrics = {"loss": total.detach() / n / world, "acc": stats["correct"].float() / n / world}
        return total / n, metrics

    def loss(self, model: EncoderModel, batch: dict, totals: dict[str, float]) -> tuple[torch.Tensor, dict]:
        """The plain (non-GradCache) loss: every chunk with its graph."""
        q = torch.cat([model(c) for c in batch["queries"]])
        d = torch.cat([model(c) for c in batch["docs"]])
        loss, metrics = self._loss(q, d, batch, totals)
        metrics["tokens"] = float(batch["tokens"])
        # Not a 1/world share: the trainer multiplies by world and FSDP averages, and rank r's gradient must be
        # d(global loss)/d(its embeddings), so every rank backpropagates the whole global loss.
        return loss, metrics

    def forward_backward(self, model: EncoderModel, batch: dict, totals: dict[str, float], scale: float,
                         autocast: Callable) -> dict:
        if not self.config.chunk_size:
            with autocast():
                loss, metrics = self.loss(model, batch, totals)
            (loss * scale).backward()
            return metrics
        return grad_cache_step(model, batch, lambda q, d: self._loss(q, d, batch, totals),
                               scale, autocast) | {"tokens": float(batch["tokens"])}

    def export(self, state_dict: dict[str, torch.Tensor], out: Path) -> None:
        save_encoder(state_dict, self.model_config, self.processor, out, lora=self.config.lora,
                     extra={"stage": "contrastive", "base": self.config.base, "pooling": self.config.pooling})


def _passes(n: int) -> int:
    """The most chunk passes any rank needs: FSDP needs every rank to run the same number of them."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return n
    t = torch.tensor([n], dtype=torch.long)
    if torch.distributed.get_backend() == "nccl":
        t = t.cuda()
    torch.distributed.all_reduce(t, op=torch.distributed.ReduceOp.MAX)
    return int(t.item())


def grad_cache_step(model: nn.Module, batch: dict, loss_fn: Callable, scale: float, autocast: Callable) -> dict:
    """GradCache: embeddings without a graph, the loss's gradients at them, then chunked backward passes.
    ``loss_fn(q, d) -> (loss, metrics)``; leaves the gradients of ``scale x loss`` in the parameters. A rank
    with fewer chunks (fewer hard negatives) runs idle passes on ``batch["idle"]`` to keep FSDP in step."""
    sides = (batch["queries"], batch["docs"])
    passes = [_passes(len(chunks)) for chunks in sides]
    parts: list[list[torch.Tensor]] = [[], []]
    with torch.no_grad(), autocast():
        for side, chunks in enumerate(sides):
            for i in range(passes[side]):
                emb = model(chunks[i] if i < len(chunks) else batch["idle"])
                if i < len(chunks):
                    parts[side].append(emb)
    cached = [torch.cat(p).detach().requires_grad_() for p in parts]
    loss, metrics = loss_fn(*cached)
    (loss * scale).backward()
    for side, chunks in enumerate(sides):
        grads = cached[side].grad.split([len(p) for p in parts[side]])
        for i in range(passes[side]):
            with autocast():
                emb = model(chunks[i] if i < len(chunks) else batch["idle"])
            g = grads[i] if i < len(chunks) else torch.zeros_like(emb)
            torch.autograd.backward(emb, grad_tensors=g)
    return metrics


def run_contrastive(config: ContrastiveConfig) -> dict:
    """Train stage 2 as configured; returns the trainer's summary (``exported``: the encoder folder)."""
    write_stage_config(config, "contrastive")
    return Trainer(config.train, ContrastiveTask(config)).fit()


def main(argv: list[str] | None = None) -> int:
    return stage_main(argv, "python -m moca_train.stages.contrastive", "MoCa stage 2 (contrastive).",
                      ContrastiveConfig, run_contrastive)


__all__ = ["ContrastiveConfig", "ContrastiveTask", "EncoderModel", "PairSteps", "grad_cache_step", "run_contrastive"]


if __name__ == "__main__":
    sys.exit(main())
