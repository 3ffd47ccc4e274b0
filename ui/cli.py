"""The full `docrag` command line: app's commands plus `docrag serve` (the web UI).

`app` must never import `ui`, so the composition happens here, at the top layer: this module adds
`serve` to app's Typer app, and the `docrag` console script points at `ui.cli:main`. Importing it stays
light: Gradio is imported only when `serve` runs.
"""

from __future__ import annotations

import sys
from pathlib import Path

import typer

from app.cli import _run, _service, app
from app.errors import fail


@app.command()
def serve(
    host: str | None = typer.Option(None, help="Address to bind (default 127.0.0.1: this machine only)."),
    port: int | None = typer.Option(None, help="Port (default 7860)."),
    auth: str | None = typer.Option(None, help="USER:PASSWORD required to open the UI (and its API)."),
    index_dir: Path | None = typer.Option(None, "--index-dir", help="Index folder (default ./.docrag)."),
    encoder: str | None = typer.Option(None, "--encoder", help="none | auto | checkpoint folder | hub id."),
    llm_base_url: str | None = typer.Option(None, "--llm-base-url", help="OpenAI-compatible endpoint for answers."),
    llm_model: str | None = typer.Option(None, "--llm-model", help="The endpoint's model, or a transformers folder."),
) -> None:
    """Serve the web UI: upload, search, ask, status (needs Gradio: the ui extra)."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None:  # not imported here: ui.offline must come first
        fail('the web UI needs Gradio: pip install "docrag[ui]"')
    from app.llm import LLMError

    from .server import launch

    svc = _service(index_dir=index_dir, encoder=encoder, llm_base_url=llm_base_url, llm_model=llm_model)
    config = svc.config
    try:
        # _run: the errors a user can cause (busy index, missing encoder, bad setting) are one line.
        _run(launch, config, host or config.ui_host, port or config.ui_port, auth)
    except (LLMError, OSError) as e:
        fail(str(e).splitlines()[0])


def main() -> None:
    app(prog_name="docrag")


if __name__ == "__main__":
    sys.exit(main())
