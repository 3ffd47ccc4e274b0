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
    dtype: str = typer.Option("auto", help="Weights' dtype: auto (bfloat16 for 3b/7b, float32 for tiny/small) | "
                                           "float32 | bfloat16."),
    force: bool = typer.Option(False, "--force", help="Overwrite an existing checkpoint folder."),
) -> None:
    """Write a randomly initialised encoder checkpoint (standard Qwen2.5-VL layout, bidirectional)."""
    from moca_train.presets import PRESETS, init_checkpoint, resolve_init_dtype

    if preset not in PRESETS:
        fail(f"unknown preset {preset!r}; choose one of {', '.join(PRESETS)}")
    try:
        weights = resolve_init_dtype(preset, dtype)
    except ValueError as e:
        fail(str(e))
    if out.exists() and any(out.iterdir()) and not force:
        fail(f"{out}: folder exists and is not empty (use --force to overwrite)")
    path = init_checkpoint(preset, out, family=family, seed=seed, pooling=pooling, dtype=dtype)
    typer.echo(f"wrote {preset} {family} encoder ({str(weights).removeprefix('torch.')}) to {path}")


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


# ---- training stages (one launcher: config + overrides, torchrun for several processes) ------------------------


def _launch(stage: str, config_cls, run, config: str, overrides: dict, data: list[str] | None, resume: bool,
            nproc_per_node: int, what_data: str) -> None:
    """Load the stage's config, check its data, then run it here or under torchrun (FSDP2)."""
    import subprocess
    import sys

    from moca_train.checkpoint import CheckpointError
    from moca_train.data import DataError, Source
    from moca_train.stages.common import resolve_config

    overrides = {**overrides, "data": data or None, "train.resume": None if resume else False}
    try:
        cfg = config_cls.load(config, overrides)
    except (FileNotFoundError, ValueError, TypeError) as e:
        fail(str(e))
    if not cfg.data:
        fail(f"no training data: pass --data PATH ({what_data}) or list it in the config")
    for src in cfg.data:
        path = src["path"] if isinstance(src, dict) else Source.parse(src).path
        if not Path(path).is_file():
            fail(f"{path}: data file not found")
    if nproc_per_node > 1:
        cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={nproc_per_node}",
               "-m", f"moca_train.stages.{stage}", "--config", str(resolve_config(config, config_cls.PREFIX))]
        for key, flag in (("base", "--base"), ("train.out", "--out"), ("train.max_steps", "--max-steps"),
                          ("train.stop_at", "--stop-at"), ("train.save_every", "--save-every")):
            if overrides.get(key) is not None:
                cmd += [flag, str(overrides[key])]
        for src in data or []:
            cmd += ["--data", src]
        if not resume:
            cmd.append("--no-resume")
        raise typer.Exit(subprocess.call(cmd))
    try:
        summary = run(cfg)
    except (OSError, CheckpointError, DataError, ValueError) as e:
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if summary.get("exported"):
        typer.echo(f"wrote encoder to {summary['exported']} (load it with `docrag index --encoder {summary['out']}`)")
    else:
        typer.echo(f"stopped at step {summary['step']}; checkpoint in {summary['out']}/checkpoints (rerun to resume)")


def _overrides(base, out, max_steps, stop_at, save_every) -> dict:
    return {"base": base, "train.out": str(out) if out else None, "train.max_steps": max_steps,
            "train.stop_at": stop_at, "train.save_every": save_every}


BaseOpt = typer.Option(None, help="Preset name (random init), checkpoint folder (e.g. a CPT output) or hub id.")
OutOpt = typer.Option(None, help="Output folder (checkpoints, logs, the final encoder).")
MaxStepsOpt = typer.Option(None, help="Optimizer steps (the schedule ends here).")
StopAtOpt = typer.Option(None, help="Stop and checkpoint after this step (same schedule).")
SaveEveryOpt = typer.Option(None, help="Checkpoint every N steps (0: only at the end).")
ResumeOpt = typer.Option(True, help="Continue from the newest checkpoint in OUT.")
NprocOpt = typer.Option(1, help="Processes (GPUs) on this machine; >1 launches torchrun + FSDP.")


@train_app.command("cpt")
def cpt(
    config: str = typer.Option("tiny", help="YAML config file, or a packaged one: tiny | 3b | 7b (MoCa paper), "
                                            "3b_script | 7b_script (MoCa's script: MAE weight 0.1), "
                                            "cocoa_tiny | cocoa_3b | cocoa_7b (CoCoA warm-up, its script), "
                                            "cocoa_3b_paper | cocoa_7b_paper (its paper: 50% MAE)."),
    base: str | None = BaseOpt,
    data: list[str] | None = typer.Option(None, help="JSONL source, PATH or PATH:WEIGHT (repeatable)."),
    out: Path | None = OutOpt,
    max_steps: int | None = MaxStepsOpt,
    stop_at: int | None = StopAtOpt,
    save_every: int | None = SaveEveryOpt,
    resume: bool = ResumeOpt,
    nproc_per_node: int = NprocOpt,
) -> None:
    """MoCa stage 1: joint MLM + MAE continual pre-training of a bidirectional encoder."""
    from moca_train.stages.cpt import CPTConfig, run_cpt

    _launch("cpt", CPTConfig, run_cpt, config, _overrides(base, out, max_steps, stop_at, save_every), data, resume,
            nproc_per_node, "see `docrag train data cpt`")


@train_app.command("contrastive")
def contrastive(
    config: str = typer.Option("tiny", help="YAML config file, or a packaged one: tiny | 3b | 7b (cl_*.yaml)."),
    base: str | None = BaseOpt,
    data: list[str] | None = typer.Option(None, help="Pair JSONL source, PATH or PATH:WEIGHT (repeatable)."),
    out: Path | None = OutOpt,
    max_steps: int | None = MaxStepsOpt,
    stop_at: int | None = StopAtOpt,
    save_every: int | None = SaveEveryOpt,
    resume: bool = ResumeOpt,
    nproc_per_node: int = NprocOpt,
) -> None:
    """MoCa stage 2: heterogeneous contrastive fine-tuning (InfoNCE, task-aware batches, GradCache)."""
    from moca_train.stages.contrastive import ContrastiveConfig, run_contrastive

    _launch("contrastive", ContrastiveConfig, run_contrastive, config,
            _overrides(base, out, max_steps, stop_at, save_every), data, resume, nproc_per_node,
            "pair rows: query, pos/pos_image, negs/neg_images")


# ---- hard negatives ---------------------------------------------------------------------------------------------


@train_app.command("mine")
def mine(
    pairs: Path = typer.Argument(..., help="Pair JSONL to add hard negatives to."),
    out: Path = typer.Option(..., help="Pair JSONL to write."),
    index_dir: Path = typer.Option(..., help="Index folder to mine from (`docrag index` output)."),
    encoder: str | None = typer.Option(None, help="Trained encoder (the one the index was built with): visual search."),
    bm25: bool = typer.Option(False, "--bm25", help="Mine with BM25 over the pages' text layer instead."),
    negatives: int = typer.Option(2, help="Hard negatives to add per query."),
    window: int = typer.Option(1, help="Skip pages of the positive's document within this many pages of it."),
    top_k: int = typer.Option(30, help="Candidates retrieved per query."),
    replace: bool = typer.Option(False, "--replace", help="Drop the rows' own negatives first."),
) -> None:
    """Add hard negatives to a pair file: the top pages a retriever finds that are not the answer."""
    from indexing.lock import IndexBusy
    from moca_train.data import DataError
    from moca_train.data.mining import Candidate, MiningReport, mine_hard_negatives
    from moca_train.data.pairs import read_pairs, write_pairs

    from .config import load_config
    from .service import DocRag, EncoderUnavailable

    if bool(encoder) == bm25:
        fail("choose one retriever: --encoder PATH (visual) or --bm25 (text)")
    if negatives <= 0 or window < 0 or top_k <= 0:
        fail("--negatives and --top-k must be positive, --window not negative")
    if not pairs.is_file():
        fail(f"{pairs}: pair file not found")
    if not index_dir.is_dir():
        fail(f"{index_dir}: no such index folder")
    try:
        rows = read_pairs(pairs)
        svc = DocRag(load_config({"index_dir": index_dir, "encoder": encoder or "none"}))
    except (DataError, ValueError) as e:
        fail(str(e))
    mode = "text" if bm25 else "visual"

    def search(query: str) -> list[Candidate]:
        if not query.strip():  # an image-only query: nothing to search with here
            return []
        hits = svc.search(query, top_k=top_k, mode=mode)
        from .page_image import hit_image

        return [Candidate(h.doc_path, h.page, hit_image(svc.config.index_dir, h)[0] or "", h.text) for h in hits]

    report = MiningReport()
    try:
        n = write_pairs(mine_hard_negatives(rows, search, k=negatives, window=window, replace_existing=replace,
                                            report=report), out)
    except IndexBusy as e:
        fail(f"{e} (try again when it finishes)")
    except (EncoderUnavailable, ValueError, KeyError) as e:
        fail(str(e).strip("'\""))
    typer.echo(f"wrote {n} rows with {report.negatives} hard negatives to {out}"
               + (f" ({report.short} rows got fewer than {negatives})" if report.short else ""))


@train_app.command("cocoa")
def cocoa(
    config: str = typer.Option("tiny", help="YAML config file, or a packaged one: tiny | 3b | 7b (cocoa_*.yaml)."),
    base: str | None = BaseOpt,
    data: list[str] | None = typer.Option(None, help="Reconstruction rows (CPT format + optional target), PATH[:W]."),
    out: Path | None = OutOpt,
    max_steps: int | None = MaxStepsOpt,
    stop_at: int | None = StopAtOpt,
    save_every: int | None = SaveEveryOpt,
    resume: bool = ResumeOpt,
    nproc_per_node: int = NprocOpt,
) -> None:
    """CoCoA: EOS-bridged reconstruction (block attention mask), then contrastive training with EOS pooling
    when the config has a `contrastive:` section. --max-steps etc. apply to the reconstruction phase."""
    from moca_train.stages.cocoa import CocoaConfig, run_cocoa

    _launch("cocoa", CocoaConfig, run_cocoa, config, _overrides(base, out, max_steps, stop_at, save_every), data,
            resume, nproc_per_node, "see `docrag train data cpt`: page rows work as they are")
from . import cli_pipeline  # noqa: E402,F401  (registers `docrag train pipeline`)
