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


# ---- training data --------------------------------------------------------------------------------------------

data_app = typer.Typer(help="Build training data (JSONL) from documents.", no_args_is_help=True)
train_app.add_typer(data_app, name="data")


@data_app.command("cpt")
def data_cpt(
    pdfs: list[Path] = typer.Argument(..., help="PDF files or folders (searched recursively)."),
    out: Path = typer.Option(..., help="JSONL file to write (one row per page)."),
    image_dir: Path | None = typer.Option(None, help="Where page images go (default: OUT's folder/pages)."),
    dpi: int = typer.Option(144, help="Rendering resolution."),
    max_pages: int | None = typer.Option(None, help="At most this many pages per document."),
    renderer: str = typer.Option("pymupdf", help="pymupdf | pdf2image."),
) -> None:
    """Continual pre-training rows from PDFs: each page's image interleaved with its text layer."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from indexing.render import DocumentError, make_renderer
    from indexing.scan import scan
    from moca_train.data import build_cpt_data

    if dpi <= 0:
        fail(f"--dpi must be positive, got {dpi}")
    if max_pages is not None and max_pages <= 0:
        fail(f"--max-pages must be positive, got {max_pages}")
    try:
        rend = make_renderer(renderer, dpi=dpi)
    except (ValueError, RuntimeError) as e:
        fail(str(e))
    files, scan_problems = scan(pdfs)
    total = 0
    for f in files:  # page counts up front, for an honest progress bar (opening a PDF costs ~ms)
        if f.kind == "pdf":
            try:
                n = rend.page_count(f.path)
            except DocumentError:
                continue
            total += min(n, max_pages) if max_pages else n
    if total == 0:
        problems = "; ".join(str(p) for p in scan_problems)
        fail(f"no readable PDF pages in {', '.join(map(str, pdfs))}" + (f" ({problems})" if problems else ""))
    console = Console(stderr=True)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, disable=not console.is_terminal) as progress:
        task = progress.add_task("pages", total=total)
        report = build_cpt_data(pdfs, out, image_dir=image_dir, dpi=dpi, max_pages=max_pages, renderer=renderer,
                                progress=lambda name, n: progress.advance(task, n))
    for problem in report.problems:
        typer.secho(f"skipped {problem}", err=True, fg=typer.colors.YELLOW)
    if report.pages == 0:
        fail("no pages were written")
    typer.echo(f"wrote {report.pages} pages of {report.documents} documents to {out}")


# ---- stage 1: continual pre-training ---------------------------------------------------------------------------


@train_app.command("cpt")
def cpt(
    config: str = typer.Option("tiny", help="YAML config file, or a packaged one: tiny | 3b | 7b."),
    base: str | None = typer.Option(None, help="Preset name (random init), checkpoint folder or hub id."),
    data: list[str] | None = typer.Option(None, help="JSONL source, PATH or PATH:WEIGHT (repeatable)."),
    out: Path | None = typer.Option(None, help="Output folder (checkpoints, logs, the final encoder)."),
    max_steps: int | None = typer.Option(None, help="Optimizer steps (the schedule ends here)."),
    stop_at: int | None = typer.Option(None, help="Stop and checkpoint after this step (same schedule)."),
    save_every: int | None = typer.Option(None, help="Checkpoint every N steps (0: only at the end)."),
    resume: bool = typer.Option(True, help="Continue from the newest checkpoint in OUT."),
    nproc_per_node: int = typer.Option(1, help="Processes (GPUs) on this machine; >1 launches torchrun + FSDP."),
) -> None:
    """MoCa stage 1: joint MLM + MAE continual pre-training of a bidirectional encoder."""
    import subprocess
    import sys

    from moca_train.data import DataError, Source
    from moca_train.stages.cpt import CPTConfig, resolve_config, run_cpt

    overrides = {"base": base, "data": data or None, "train.out": str(out) if out else None,
                 "train.max_steps": max_steps, "train.stop_at": stop_at, "train.save_every": save_every,
                 "train.resume": None if resume else False}
    try:
        cfg = CPTConfig.load(config, overrides)
    except (FileNotFoundError, ValueError, TypeError) as e:
        fail(str(e))
    if not cfg.data:
        fail("no training data: pass --data PATH (see `docrag train data cpt`) or list it in the config")
    for src in cfg.data:
        path = Source.parse(src).path
        if not Path(path).is_file():
            fail(f"{path}: data file not found")
    if nproc_per_node > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
               "-m", "moca_train.stages.cpt", "--config", str(resolve_config(config))]
        for key, flag in (("base", "--base"), ("train.out", "--out"), ("train.max_steps", "--max-steps"),
                          ("train.stop_at", "--stop-at"), ("train.save_every", "--save-every")):
            if overrides[key] is not None:
                cmd += [flag, str(overrides[key])]
        for src in data or []:
            cmd += ["--data", src]
        if not resume:
            cmd.append("--no-resume")
        raise typer.Exit(subprocess.call(cmd))
    from moca_train.checkpoint import CheckpointError

    try:
        summary = run_cpt(cfg)
    except (OSError, CheckpointError, DataError, ValueError) as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if summary["exported"]:
        typer.echo(f"wrote encoder to {summary['exported']} (load it with `docrag index --encoder {summary['out']}`)")
    else:
        typer.echo(f"stopped at step {summary['step']}; checkpoint in {summary['out']}/checkpoints (rerun to resume)")
