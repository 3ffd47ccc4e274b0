"""The `docrag` command line."""

from __future__ import annotations

import typer

from .cli_train import train_app

app = typer.Typer(
    name="docrag",
    help="Search PDFs by their pages' pictures: index, search, ask, train.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
)
app.add_typer(train_app, name="train")


def main() -> None:
    app()
