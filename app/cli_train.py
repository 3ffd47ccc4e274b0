"""`docrag train ...`: model initialisation, training data, training stages."""

from __future__ import annotations

from pathlib import Path

import typer

from .errors import fail

train_app = typer.Typer(help="Build and train MoCa encoders.", no_args_is_help=True)


@train_app.command("init")
def init(
    preset: str = typer.Option("tiny", help="Model shape: tiny | small | 3b | 7b."),
    out: Path = typer.Option(..., help="Checkpoint folder to write."),
    family: str = typer.Option("qwen2_5_vl", help="Backbone family: qwen2_5_vl | qwen2_vl."),
    seed: int = typer.Option(0, help="Random seed for the initial weights."),
    pooling: str = typer.Option("mean", help="mean (MoCa) | eos (CoCoA)."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint folder."),
) -> None:
    """Write a randomly initialised encoder checkpoint (standard Qwen2.5-VL layout, bidirectional)."""
    from moca_train.presets import PRESETS, init_checkpoint

    if preset not in PRESETS:
        fail(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    if out.exists() and any(out.iterdir()) and not force:
        fail(f"{out}: folder exists and is not empty (use --force to overwrite)")
    path = init_checkpoint(preset, out, family=family, seed=seed, pooling=pooling)
    typer.echo(f"wrote {preset} {family} encoder to {path}")
