"""`docrag eval DATASET` (scores retrieval on an evaluation set) and `docrag eval build` (writes one from PDFs).

`docrag eval DATASET …` is `docrag eval run DATASET …`: the group runs ``run`` when its first word is not one
of its commands (so a dataset folder literally named ``build`` needs ``docrag eval run build``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from typer.core import TyperGroup

from .errors import fail

MODE_CHOICES = ("text", "dense", "visual", "hybrid", "all")


class _RunByDefault(TyperGroup):
    def parse_args(self, ctx, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["run", *args]
        return super().parse_args(ctx, args)


eval_app = typer.Typer(cls=_RunByDefault, no_args_is_help=True,
                       help="Score retrieval on an evaluation set (docrag eval DATASET), or build one from PDFs.")


@eval_app.command("run")
def run(
    dataset: Path = typer.Argument(..., help="Evaluation set folder (BEIR/ViDoRe-v2, ViDoRe-v1, saved HF dataset)."),
    encoder: str | None = typer.Option(None, "--encoder", help="none | auto | checkpoint folder | hub id."),
    processor: str | None = typer.Option(None, help="Tokenizer/image-processor folder or hub id for --encoder."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="Dense text vectors: auto (default: the "
                                            "built-in model, as a new index) | none | builtin | "
                                            "sentence-transformers folder | hub id."),
    mode: str | None = typer.Option(None, help="text | dense | visual | hybrid | all (default, all: every mode the "
                                    "index has)."),
    ocr: str | None = typer.Option(None, "--ocr", help="OCR pages without a usable text layer: auto (default) | "
                                   "always | never."),
    ocr_lang: str | None = typer.Option(None, "--ocr-lang", help="OCR languages, Tesseract codes: eng+fra+jpn."),
    ocr_engine: str | None = typer.Option(None, "--ocr-engine", help="tesseract (default) | rapidocr."),
    rrf_k: int | None = typer.Option(None, "--rrf-k", min=1, help="Hybrid: RRF k (default: the configured)."),
    weight_text: float | None = typer.Option(None, "--weight-text", min=0, help="Hybrid: weight of BM25."),
    weight_dense: float | None = typer.Option(None, "--weight-dense", min=0, help="Hybrid: weight of dense text."),
    weight_visual: float | None = typer.Option(None, "--weight-visual", min=0, help="Hybrid: weight of visual."),
    rerank: str | None = typer.Option(None, "--rerank", help="Also score each mode reranked: cross-encoder:NAME | "
                                      "llm (rows MODE+rerank beside the plain ones)."),
    top_k: int = typer.Option(100, "--top-k", help="Pages retrieved per query."),
    compare: str | None = typer.Option(None, "--compare", help="A second encoder, scored on the same set."),
    index_dir: Path | None = typer.Option(None, "--index-dir", help="Index folder; the eval index goes in evals/."),
    name: str | None = typer.Option(None, "--name", help="Name of the eval index (default: from the folder)."),
    temporary: bool = typer.Option(False, "--temporary", help="Index into a scratch folder, removed afterwards."),
    dpi: int | None = typer.Option(None, help="Render resolution for indexing (default 144)."),
    json_out: bool = typer.Option(False, "--json", help="Print {mode: {metric: value, …, subsets}} as JSON."),
    out: Path | None = typer.Option(None, "--out", help="Also write the full report (metrics, speed) as JSON."),
) -> None:
    """Index the set's corpus, run its queries in each mode, report nDCG@5/10, Recall@1/5/10, MRR@10."""
    from .evaluation.dataset import load_dataset

    if mode is not None and mode not in MODE_CHOICES:
        fail(f"unknown mode {mode!r}; choose one of {', '.join(MODE_CHOICES)}")
    if top_k < 10:
        fail("--top-k must be at least 10 (nDCG@10 and Recall@10 look at 10 pages)")
    try:
        import pytrec_eval  # noqa: F401
    except ImportError:
        fail("docrag eval needs pytrec-eval-terrier (the trec_eval bindings): pip install 'docrag[eval]'")
    config = _config(index_dir=index_dir, encoder=encoder, processor=processor, dpi=dpi, text_encoder=text_encoder,
                     ocr=ocr, ocr_lang=ocr_lang, ocr_engine=ocr_engine, rrf_k=rrf_k, weight_text=weight_text,
                     weight_dense=weight_dense, weight_visual=weight_visual, rerank=rerank)
    ds = _guard(load_dataset, dataset, config.index_dir / "evals" / "hf-images")
    modes = None if mode in (None, "all") else [mode]
    with _CliEvents(quiet=json_out) as events:
        from .evaluation.runner import EvalRunner

        runner = EvalRunner(ds, config, events, name=name, temporary=temporary)
        a = _guard(runner.run, modes, top_k)
        b = _guard(runner.run, modes, top_k, compare) if compare else None
    if b is None:
        if out:
            _write_json(out, a.report())
        if json_out:
            typer.echo(json.dumps(a.metrics_json(), indent=2))
        else:
            _print_result(a)
        return
    from .evaluation.compare import compare_results

    significance = compare_results(a, b)
    payload = {"a": {"encoder": a.encoder, "metrics": a.metrics_json()},
               "b": {"encoder": b.encoder, "metrics": b.metrics_json()}, "significance": significance}
    if out:
        _write_json(out, {"a": a.report(), "b": b.report(), "significance": significance})
    if json_out:
        typer.echo(json.dumps(payload, indent=2))
    else:
        _print_result(a)
        _print_result(b)
        _print_significance(a.encoder, b.encoder, significance)


@eval_app.command("calibrate")
def calibrate(
    dataset: Path = typer.Argument(..., help="Evaluation set over your own pages (`docrag eval build` writes one)."),
    index_dir: Path | None = typer.Option(None, "--index-dir", help="The index whose search settings to tune (its "
                                          "docrag.toml gets them); its encoders are used."),
    encoder: str | None = typer.Option(None, "--encoder", help="Visual encoder (default: the index's own)."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="Dense text encoder (default: the "
                                            "index's own)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the tuning / held-out split of the queries."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show the table; write nothing."),
    json_out: bool = typer.Option(False, "--json", help="Print the calibration as JSON."),
) -> None:
    """Tune hybrid's RRF k and per-source weights on half the set's queries, check them on the other half, and
    write them into the index's docrag.toml (never settings that lose on the held-out half)."""
    import time

    from .config import write_settings
    from .evaluation.calibrate import Calibrator
    from .evaluation.dataset import load_dataset
    from .service import TEXT_ENCODER_META, DocRag

    config = _config(index_dir=index_dir)
    target = config.index_dir
    owner = DocRag(config)
    recorded_visual, recorded_text = owner.recorded_encoder(), owner.recorded_encoder(TEXT_ENCODER_META)
    overrides = {"encoder": encoder or recorded_visual or "none", "text_encoder": text_encoder or recorded_text}
    if overrides["text_encoder"] is None:
        overrides["text_encoder"] = "auto" if owner.is_new_index() else "none"
    config = _config(index_dir=index_dir, **overrides)
    ds = _guard(load_dataset, dataset, config.index_dir / "evals" / "hf-images")
    with _CliEvents(quiet=json_out) as events:
        cal = _guard(Calibrator(ds, config, events, encoder=config.encoder, seed=seed).run)
    written = None
    if not dry_run and cal.after.config_values() != cal.before.config_values():
        written = target / "docrag.toml"
        stamp = f"docrag eval calibrate {dataset.name} ({time.strftime('%Y-%m-%d')}): tuned on {cal.n_tune} queries"
        _guard(write_settings, written, cal.after.config_values(), stamp)
    if json_out:
        typer.echo(json.dumps({**cal.as_dict(), "written": str(written) if written else None}, indent=2))
        return
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{dataset}[/bold]: {cal.n_tune} tuning / {cal.n_held_out} held-out queries, "
                  f"{cal.grid_size} settings tried (nDCG@5)", highlight=False, soft_wrap=True)
    table = Table("setting", "tune", "held-out", box=None)
    for row in cal.rows:
        table.add_row(row["setting"], f"{row['tune']:.3f}", f"{row['held_out']:.3f}")
    console.print(table)
    for note in cal.notes():
        typer.secho(note, fg=typer.colors.YELLOW, err=True)
    if written:
        typer.echo(f"wrote {cal.after.describe()} to {written}")
    elif dry_run and cal.after.config_values() != cal.before.config_values():
        typer.echo(f"would write {cal.after.describe()} to {target / 'docrag.toml'} (--dry-run)")
    else:
        typer.echo(f"unchanged: {cal.after.describe()}")


@eval_app.command("build")
def build(
    pdfs: list[Path] = typer.Argument(..., help="PDF files or folders (walked recursively)."),
    out: Path = typer.Option(..., "--out", help="Evaluation set folder to write."),
    queries_per_page: int = typer.Option(1, "--queries-per-page", help="Queries made from each page."),
    split: float = typer.Option(0.2, "--split", help="Fraction of pages held out for testing (the rest: train/)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the split and of the query synthesis."),
    llm: bool = typer.Option(False, "--llm", help="Questions written by the configured LLM."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Write a synthetic evaluation set (BEIR layout, split.json) from the text of your PDFs' pages."""
    from rich.console import Console
    from rich.markup import escape
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    from .evaluation.build import LLMUnavailable, build_eval_set, llm_question_writer

    writer = None
    if llm:
        try:
            writer = llm_question_writer(_config())
        except LLMUnavailable as e:
            fail(str(e))
    console = Console(stderr=True)
    bar = Progress(SpinnerColumn(), TextColumn("pages read: {task.completed}"), TimeElapsedColumn(),
                   console=console, disable=json_out or not console.is_terminal)

    def problem(path: str, reason: str) -> None:
        console.print(f"[red]failed[/red] {escape(path)}: {escape(reason)}", highlight=False, soft_wrap=True)

    with bar:
        task = bar.add_task("pages", total=None)
        report = _guard(build_eval_set, pdfs, out, queries_per_page, split, seed, writer, problem,
                        lambda: bar.advance(task))
    if json_out:
        typer.echo(json.dumps(report.as_dict(), indent=2))
        return
    kinds = ", ".join(f"{n} {k}" for k, n in sorted(report.types.items()))
    typer.echo(f"wrote {out}: {report.pages} pages from {report.documents} documents; "
               f"{report.test_queries} test queries on {report.test_pages} pages, "
               f"{report.train_queries} train queries on {report.train_pages} pages ({kinds})")


# ---- helpers ------------------------------------------------------------------------------------------------
def _config(**overrides: Any):
    from .config import load_config

    try:
        return load_config(overrides)
    except ValueError as e:
        fail(str(e))


def _guard(fn, *args, **kwargs):
    """Run ``fn``; the errors a user can cause become one line, never a traceback."""
    from indexing.lock import IndexBusy
    from indexing.store import DimensionMismatch, StoreError

    from .service import EncoderUnavailable

    try:
        return fn(*args, **kwargs)
    except IndexBusy as e:
        fail(f"{e} (try again when it finishes)")
    except (EncoderUnavailable, DimensionMismatch, StoreError, KeyError, ValueError, OSError) as e:
        fail(str(e).strip("'\""))
    except KeyboardInterrupt:
        fail("interrupted: the eval index is consistent; run the same command again to finish", code=130)


def _write_json(path: Path, payload: dict) -> None:
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(payload, indent=2) + "\n")
    except OSError as e:
        fail(f"{path}: cannot write: {e.strerror or e}")


class _CliEvents:
    """Indexing bars (the `docrag index` display), then one querying bar per mode; silent when piped."""

    def __init__(self, quiet: bool) -> None:
        from rich.console import Console

        self.quiet = quiet
        self.console = Console(stderr=True)
        self.live = not quiet and self.console.is_terminal
        self._bars = None  # the live display of the current phase: RichIndexEvents or a Progress

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self._end_phase()

    def _end_phase(self) -> None:
        # Rich allows one live display at a time: close this phase's before the next one starts.
        if self._bars is not None:
            self._bars.__exit__(None, None, None)
            self._bars = None

    # EvalEvents
    def indexing(self, encoder: str):
        from .progress import RichIndexEvents

        self._end_phase()
        self._bars = RichIndexEvents(quiet=self.quiet).__enter__()
        return self._bars

    def queries(self, mode: str, total: int) -> None:
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

        self._end_phase()
        self._bars = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                              TimeElapsedColumn(), console=self.console, disable=not self.live).__enter__()
        self._task = self._bars.add_task(f"queries ({mode})", total=total)

    def query_done(self) -> None:
        self._bars.advance(self._task)

    def note(self, text: str) -> None:
        if not self.quiet:
            typer.secho(text, fg=typer.colors.YELLOW, err=True)


def _console():
    from rich.console import Console

    console = Console()
    return console if console.is_terminal else Console(width=200)


def _print_result(result) -> None:
    from rich.table import Table

    from .evaluation.metrics import METRICS

    console = _console()
    console.print(f"[bold]{result.dataset}[/bold]  encoder: {result.encoder}  index: {result.index_dir}",
                  highlight=False, soft_wrap=True)
    table = Table("mode", *METRICS, "queries", box=None)
    for mode, r in result.modes.items():
        m = r.metrics
        table.add_row(mode, *(f"{m[k]:.3f}" for k in METRICS), str(m["n_queries"]))
        for name, s in m["subsets"].items():
            table.add_row(f"  {name}", *(f"{s[k]:.3f}" for k in METRICS), str(s["n_queries"]))
    for column in table.columns:
        column.no_wrap = True
    console.print(table)
    ix = result.indexing
    if ix["reused"]:
        console.print(f"index re-used ({ix['indexed_pages']} pages, unchanged)", highlight=False, soft_wrap=True)
    else:
        console.print(f"indexed {ix['pages']} pages in {ix['seconds']:.1f} s ({ix['pages_per_s']} pages/s)",
                      highlight=False, soft_wrap=True)
    for mode, r in result.modes.items():
        console.print(f"{mode}: search latency p50 {r.latency_ms['p50']:.1f} ms, p95 {r.latency_ms['p95']:.1f} ms",
                      highlight=False, soft_wrap=True)


def _print_significance(name_a: str, name_b: str, significance: dict) -> None:
    from rich.table import Table

    console = _console()
    console.print(f"B - A (A: {name_a}, B: {name_b}); paired randomisation test, bootstrap 95% CI",
                  highlight=False, soft_wrap=True)
    table = Table("mode", "metric", "A", "B", "B - A", "95% CI", "p", "", box=None)
    for mode, metrics in significance.items():
        for metric, t in metrics.items():
            table.add_row(mode, metric, f"{t['a']:.4f}", f"{t['b']:.4f}", f"{t['delta']:+.4f}",
                          f"[{t['ci95'][0]:+.4f}, {t['ci95'][1]:+.4f}]", f"{t['p_value']:.4f}",
                          "significant" if t["significant"] else "")
    console.print(table)
