"""`docrag train pipeline`: the domain-variant pipeline (`app.train_pipeline`) with a rich display per phase."""

from __future__ import annotations

import contextlib
from pathlib import Path

import typer

from .cli_train import train_app
from .errors import fail


@train_app.command("pipeline")
def pipeline(
    pdfs: list[Path] = typer.Argument(..., help="PDF files or folders (searched recursively)."),
    base: str = typer.Option(..., help="Starting encoder: a preset name (random init), a checkpoint folder or hub id."),
    out: Path = typer.Option(..., help="Output folder: the final encoder, eval.json, pipeline.json, work/."),
    preset: str = typer.Option("tiny", help="Training recipe: tiny (CPU, minutes) | small | 3b."),
    steps_cpt: int | None = typer.Option(None, help="CPT optimizer steps (default: the preset's; 0 skips CPT)."),
    steps_cl: int | None = typer.Option(None, help="Contrastive optimizer steps (default: the preset's)."),
    split: float = typer.Option(0.2, help="Fraction of pages held out for evaluation (never trained on)."),
    seed: int = typer.Option(0, help="Seed of the split, the queries and the training."),
    queries_per_page: int = typer.Option(3, help="Training queries synthesised from each train page."),
    eval_queries_per_page: int = typer.Option(2, help="Evaluation queries made from each test page."),
    dpi: int | None = typer.Option(None, help="Render resolution (default: the preset's)."),
    min_pixels: int | None = typer.Option(None, help="Smallest page image the encoder sees (pixels)."),
    max_pixels: int | None = typer.Option(None, help="Largest page image the encoder sees (pixels)."),
    llm: bool = typer.Option(False, "--llm", help="Add questions written by the configured LLM."),
    processor: str | None = typer.Option(None, help="Tokenizer/image processor for a base that lacks one."),
    stop_after: str | None = typer.Option(None, help="Stop once this phase is done (rerun to continue)."),
) -> None:
    """Train a domain variant end to end: PDFs -> CPT data, eval set, pairs -> eval before -> CPT ->
    contrastive -> eval after -> the encoder in OUT (`docrag index --encoder OUT`) and OUT/eval.json.
    Rerun the same command to resume where it stopped."""
    from .train_pipeline import PipelineError, PipelineOptions, run_pipeline

    if queries_per_page < 1 or eval_queries_per_page < 1:
        fail("--queries-per-page and --eval-queries-per-page must be at least 1")
    if dpi is not None and dpi <= 0:
        fail(f"--dpi must be positive, got {dpi}")
    options = PipelineOptions(pdfs=pdfs, base=base, out=out, preset=preset, steps_cpt=steps_cpt, steps_cl=steps_cl,
                              seed=seed, split=split, eval_queries_per_page=eval_queries_per_page,
                              pair_queries_per_page=queries_per_page, dpi=dpi, min_pixels=min_pixels,
                              max_pixels=max_pixels, llm=llm, processor=processor)
    events = RichPipelineEvents()
    try:
        result = run_pipeline(options, events, stop_after=stop_after)
    except PipelineError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted: rerun the same command to resume", code=130)
    except (ValueError, OSError, RuntimeError) as e:  # the builders' and the eval runner's one-line errors
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    if result.stopped_after:
        typer.echo(f"stopped after {result.stopped_after}; rerun the same command to continue ({result.out})")
        return
    _print_eval(result.eval)
    typer.echo(f"wrote encoder to {result.out} (use it with `docrag index --encoder {result.out}`) "
               f"and {result.out / 'eval.json'}")


class RichPipelineEvents:
    """One header line per phase, a rich bar for its work (silent when stderr is not a terminal)."""

    def __init__(self) -> None:
        from rich.console import Console

        self.console = Console(stderr=True)
        self.live = self.console.is_terminal

    def phase(self, number: int, total: int, name: str, title: str, skipped: bool) -> None:
        state = "[dim]done already[/dim]" if skipped else ""
        self.console.print(f"[bold][{number}/{total}][/bold] {name}: {title} {state}", highlight=False, soft_wrap=True)

    def phase_done(self, name: str, summary: dict) -> None:
        brief = ", ".join(f"{k} {_short(v)}" for k, v in summary.items() if isinstance(v, int | float | str))
        if brief:
            self.console.print(f"      {brief}", highlight=False, soft_wrap=True)

    @contextlib.contextmanager
    def bar(self, description: str, total: int | None):
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        with Progress(TextColumn("      {task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=self.console, disable=not self.live) as progress:
            task = progress.add_task(description, total=total)
            yield _RichBar(progress, task)

    @contextlib.contextmanager
    def evaluation(self):
        from .cli_eval import _CliEvents  # `docrag eval`'s display: indexing bars, then one bar per mode

        with _CliEvents(quiet=False) as events:
            yield events

    def note(self, text: str) -> None:
        from rich.markup import escape

        self.console.print(f"      [yellow]{escape(text)}[/yellow]", highlight=False, soft_wrap=True)


class _RichBar:
    def __init__(self, progress, task) -> None:
        self.progress, self.task = progress, task

    def advance(self, n: int = 1) -> None:
        self.progress.advance(self.task, n)

    def update(self, completed: int) -> None:
        self.progress.update(self.task, completed=completed)


def _short(v) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _print_eval(report: dict | None) -> None:
    if not report:
        return
    from rich.console import Console
    from rich.table import Table

    from .evaluation.metrics import METRICS

    table = Table("encoder", *METRICS, "queries", box=None)
    for label, key in (("before (visual)", "before"), ("after (visual)", "after"), ("BM25 (text)", "bm25"),
                       ("after (hybrid)", "hybrid_after")):
        m = report.get(key)
        if m:
            table.add_row(label, *(f"{m[k]:.3f}" for k in METRICS), str(m["n_queries"]))
    console = Console()
    (console if console.is_terminal else Console(width=200)).print(table)
