"""One-line errors for the CLI: the user sees the file and the reason, never a traceback."""

from __future__ import annotations

from typing import NoReturn

import typer


def fail(message: str, code: int = 1) -> NoReturn:
    """Print ``error: MESSAGE`` as exactly one line on stderr (never wrapped, whatever its length) and exit."""
    line = " ".join(str(message).split())  # an exception's text may hold newlines: one error is one line
    typer.secho(f"error: {line}", err=True, fg=typer.colors.RED)
    raise typer.Exit(code)
