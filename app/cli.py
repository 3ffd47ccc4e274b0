"""The `docrag` command line."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import typer

from .cli_ask import ask
from .cli_train import train_app
from .errors import fail

app = typer.Typer(
    name="docrag",
    help="Search PDFs by their pages' pictures: index, search, ask, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
    # Usage errors in rich panels wrap at 80 columns when stderr is not a terminal: plain lines there (logs, grep).
    rich_markup_mode="rich" if sys.stderr.isatty() else None,
)
app.add_typer(train_app, name="train")
app.add_typer(__import__("app.cli_eval", fromlist=["eval_app"]).eval_app, name="eval")

IndexDir = typer.Option(None, "--index-dir", help="Index folder (default ./.docrag or $DOCRAG_INDEX_DIR).")
QdrantUrl = typer.Option(None, "--qdrant-url", help="Use a Qdrant server/cluster (API key: $QDRANT_API_KEY).")
EncoderOpt = typer.Option(None, "--encoder", help="none | auto | checkpoint folder | hub id.")
TextEncoderOpt = typer.Option(None, "--text-encoder", help="Dense text vectors: auto (the index's own; a new index: "
                              "the built-in all-MiniLM-L6-v2-int8) | none | builtin | sentence-transformers folder | "
                              "hub id.")


def _service(**overrides: Any):
    """Load the config (files, environment, these flags) and build the service; errors are one line."""
    from .config import load_config
    from .service import DocRag

    try:
        return DocRag(load_config(overrides))
    except ValueError as e:
        fail(str(e))


def _run(fn, *args, **kwargs):
    """Call into the service, turning the errors a user can cause into one-line messages."""
    from indexing.lock import IndexBusy
    from indexing.manifest import NoIndex
    from indexing.store import DimensionMismatch, StoreError

    from .service import EncoderUnavailable

    try:
        return fn(*args, **kwargs)
    except NoIndex as e:
        fail(str(e))
    except IndexBusy as e:
        fail(f"{e} (try again when it finishes)")
    except (EncoderUnavailable, DimensionMismatch, StoreError, KeyError, ValueError) as e:
        fail(str(e).strip("'\""))
    except KeyboardInterrupt:
        fail("interrupted: the index is consistent; run the same command again to finish", code=130)


@app.command()
def index(
    paths: list[Path] = typer.Argument(..., help="PDF files, images or folders (walked recursively)."),
    index_dir: Path | None = IndexDir,
    encoder: str | None = EncoderOpt,
    text_encoder: str | None = TextEncoderOpt,
    processor: str | None = typer.Option(None, help="Tokenizer/image-processor folder or hub id for --encoder."),
    renderer: str | None = typer.Option(None, help="pymupdf (default) | pdf2image."),
    dpi: int | None = typer.Option(None, help="Render resolution (default 144)."),
    batch_pages: int | None = typer.Option(None, help="Pages per write batch."),
    page_store: str | None = typer.Option(None, "--page-store", help="What to keep of each page's image: "
                                          "thumbnail (default) | full | none; full pages render on demand."),
    workers: int | None = typer.Option(None, "--workers", min=0, help="Render processes (default: the CPUs "
                                       "available; 0: render in this process)."),
    ocr: str | None = typer.Option(None, "--ocr", help="OCR pages without a usable text layer: auto (default) | "
                                   "always | never."),
    ocr_lang: str | None = typer.Option(None, "--ocr-lang", help="OCR languages, Tesseract codes: eng+fra+jpn."),
    ocr_engine: str | None = typer.Option(None, "--ocr-engine", help="tesseract (default) | rapidocr."),
    bm25_language: str | None = typer.Option(None, "--bm25-language", help="Stemmer/stop words of a new index "
                                             "(english, french, japanese, ...)."),
    qdrant_url: str | None = QdrantUrl,
    prune: bool = typer.Option(False, "--prune", help="Also remove files that disappeared from PATHS."),
    strict: bool = typer.Option(False, "--strict", help="Exit non-zero if any file failed."),
    json_out: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
) -> None:
    """Index PDFs and images: new and changed files are (re)indexed, unchanged ones skipped."""
    from .progress import RichIndexEvents

    svc = _service(index_dir=index_dir, encoder=encoder, processor=processor, renderer=renderer, dpi=dpi,
                   batch_pages=batch_pages, page_store=page_store, index_workers=workers, qdrant_url=qdrant_url,
                   ocr=ocr, ocr_lang=ocr_lang, ocr_engine=ocr_engine,
                   bm25_language=bm25_language, text_encoder=text_encoder)
    _run(svc.encoder)
    _run(svc.text_encoder)  # load (or decide against) the encoder before the progress bar starts
    for note in svc.notes:
        typer.secho(note, fg=typer.colors.YELLOW, err=True)
    svc.notes.clear()
    with RichIndexEvents(quiet=json_out) as events:
        report = _run(svc.index, [str(p) for p in paths], prune=prune, events=events)
    for note in svc.notes:
        typer.secho(note, fg=typer.colors.YELLOW, err=True)
    if json_out:
        typer.echo(json.dumps(report.as_dict(), indent=2))
    else:
        typer.echo(
            f"{report.new} new, {report.changed} changed, {report.unchanged} unchanged, {report.failed} failed"
            + (f", {report.removed} removed" if prune else "")
            + f"; {report.pages_rendered} pages rendered"
            + (f", {report.visual_added} pages got visual vectors" if report.visual_added else "")
            + (f", {report.text_dense_added} pages got text vectors" if report.text_dense_added else "")
            + (f", {report.ocr_pages} pages OCR'd" if report.ocr_pages else "")
            + (f" ({report.ocr_cached} from the OCR cache)" if report.ocr_cached else "")
            + f" in {report.seconds:.1f} s"
        )
    if report.pages_without_text and not json_out:
        hint = f": {report.without_text_hint}" if report.without_text_hint else ""
        typer.secho(f"{report.pages_without_text} pages without text{hint}", fg=typer.colors.YELLOW, err=True)
    if report.failed and (strict or not report.indexed_anything):
        raise typer.Exit(1)


@app.command()
def search(
    query: str = typer.Argument(..., help="What to look for."),
    top_k: int | None = typer.Option(None, "--top-k", "-k", min=1, help="Number of pages (default 5)."),
    mode: str | None = typer.Option(None, help="text | dense | visual | hybrid (default: hybrid, fusing every "
                                    "vector the index has)."),
    filter_: list[str] = typer.Option([], "--filter", help="doc=SUBSTRING: only documents whose path contains it."),
    index_dir: Path | None = IndexDir,
    encoder: str | None = EncoderOpt,
    text_encoder: str | None = TextEncoderOpt,
    qdrant_url: str | None = QdrantUrl,
    rerank: str | None = typer.Option(None, "--rerank", help="Reorder the top hits: none (default) | "
                                      "cross-encoder:FOLDER_OR_HUB_ID | llm."),
    json_out: bool = typer.Option(False, "--json", help="Print hits as JSON (snippet: matched terms in **bold**)."),
) -> None:
    """Search the index; prints rank, score, document, page and a snippet with the matched terms in bold."""
    doc = None
    for f in filter_:
        key, _, value = f.partition("=")
        if key != "doc" or not value:
            fail(f"unknown filter {f!r}; use --filter doc=SUBSTRING")
        doc = value
    svc = _service(index_dir=index_dir, encoder=encoder, text_encoder=text_encoder, qdrant_url=qdrant_url,
                   rerank=rerank)
    hits = _run(svc.search, query, top_k=top_k, mode=mode, doc=doc)
    for note in dict.fromkeys(svc.notes):
        typer.secho(note, fg=typer.colors.YELLOW, err=True)
    from .service import hit_to_dict

    rows = [hit_to_dict(h, svc.config.index_dir) for h in hits]
    if json_out:
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table

    if not rows:
        typer.echo("no matching pages")
        return
    console = Console()
    if not console.is_terminal:  # piped: never cut a path to fit an imaginary 80 columns
        console = Console(width=100_000)
    table = Table("rank", "score", "document", "page", "snippet", box=None)
    for i, r in enumerate(rows, 1):
        table.add_row(str(i), f"{r['score']:.4f}", _short(r["doc"]), str(r["page"]), _marked(r["snippet"]))
    table.columns[2].overflow = "fold"
    console.print(table)


@app.command()
def status(
    index_dir: Path | None = IndexDir,
    qdrant_url: str | None = QdrantUrl,
    json_out: bool = typer.Option(False, "--json", help="Print as JSON."),
) -> None:
    """What the index holds: documents, pages, pages with visual vectors, size, encoder."""
    svc = _service(index_dir=index_dir, qdrant_url=qdrant_url)
    info = _run(svc.status)
    if json_out:
        typer.echo(json.dumps(info, indent=2))
        return
    width = max(map(len, info))
    for key, value in info.items():
        typer.echo(f"{key.ljust(width)}  {value if value is not None else '-'}")
    if info["encoder_untrained"]:
        typer.secho(f"encoder {info['encoder']} is untrained (written by `docrag train init`): search leaves its "
                    "visual vectors out unless --mode visual or hybrid asks for them", fg=typer.colors.YELLOW, err=True)


@app.command()
def delete(
    path: Path = typer.Argument(..., help="A document's path as it was indexed."),
    index_dir: Path | None = IndexDir,
    qdrant_url: str | None = QdrantUrl,
) -> None:
    """Remove one document from the index."""
    svc = _service(index_dir=index_dir, qdrant_url=qdrant_url)
    removed = _run(svc.delete, path)
    typer.echo(f"removed {path} ({removed} pages)")


app.command("ask")(ask)


def _marked(snippet: str) -> str:
    """A snippet's **marked** terms in bold, everything else printed as it is (no Rich markup from page text)."""
    from rich.markup import escape

    from indexing.snippets import MARK

    parts = snippet.split(MARK)
    return "".join(f"[bold]{escape(p)}[/bold]" if i % 2 else escape(p) for i, p in enumerate(parts))


def _short(path: str) -> str:
    try:
        return str(Path(path).relative_to(Path.cwd()))
    except ValueError:
        return path


def main() -> None:
    app(prog_name="docrag")


if __name__ == "__main__":
    sys.exit(main())
