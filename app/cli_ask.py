"""`docrag ask "question"`: retrieve pages, stream an LLM's answer, list the pages it cites."""

from __future__ import annotations

import json
from pathlib import Path

import typer


def ask(
    question: str = typer.Argument(..., help="The question."),
    top_k: int | None = typer.Option(None, "--top-k", "-k", help="Pages sent to the LLM (default 3)."),
    mode: str | None = typer.Option(None, help="text | dense | visual | hybrid (default: hybrid, fusing every "
                                    "vector the index has)."),
    doc: str | None = typer.Option(None, "--doc", help="Only documents whose path contains this."),
    index_dir: Path | None = typer.Option(None, "--index-dir", help="Index folder (default ./.docrag)."),
    encoder: str | None = typer.Option(None, "--encoder", help="none | auto | checkpoint folder | hub id."),
    text_encoder: str | None = typer.Option(None, "--text-encoder", help="Dense text vectors: none | auto (the "
                                            "index's own) | folder | hub id."),
    llm: str | None = typer.Option(None, "--llm", help="none | auto | openai | transformers."),
    llm_base_url: str | None = typer.Option(None, "--llm-base-url", help="OpenAI-compatible endpoint URL."),
    llm_model: str | None = typer.Option(None, "--llm-model", help="Model name, or a transformers folder."),
    json_out: bool = typer.Option(False, "--json", help='Print {"answer", "citations", "pages"} as JSON.'),
) -> None:
    """Answer a question from the indexed pages, citing them as [1], [2], ..."""
    from .cli import _run, _service, _short
    from .errors import fail
    from .llm import HOW_TO_CONFIGURE, LLMError
    from .service import hit_to_dict

    svc = _service(index_dir=index_dir, encoder=encoder, text_encoder=text_encoder, llm=llm, llm_base_url=llm_base_url,
                   llm_model=llm_model)
    try:
        model = svc.llm()
    except (LLMError, ValueError) as e:
        fail(str(e))
    if model is None:
        # Still useful: the pages an answer would come from, and how to get answers.
        hits = _run(svc.search, question, top_k=top_k or svc.config.ask_top_k, mode=mode, doc=doc)
        rows = [hit_to_dict(h, svc.config.index_dir) for h in hits]
        if json_out:
            typer.echo(json.dumps({"answer": None, "citations": [], "pages": rows}, indent=2, ensure_ascii=False))
        else:
            for i, r in enumerate(rows, 1):
                typer.echo(f"[{i}] {_short(r['doc'])}, page {r['page']} (score {r['score']:.4f})")
            if not rows:
                typer.echo("no matching pages")
        typer.secho(HOW_TO_CONFIGURE, fg=typer.colors.YELLOW, err=True)
        return
    stream = _run(svc.ask, question, top_k=top_k, mode=mode, doc=doc)
    try:
        if json_out:
            answer = stream.result()
        else:
            for chunk in stream:
                typer.echo(chunk, nl=False)
            typer.echo()
            answer = stream.result()
    except LLMError as e:
        if not json_out and stream.text:
            typer.echo()
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted", code=130)
    if json_out:
        typer.echo(json.dumps(answer.as_dict(), indent=2, ensure_ascii=False))
        return
    if answer.citations:
        typer.echo("\nCited pages:")
        for c in answer.citations:
            typer.echo(f"[{c.n}] {_short(c.doc)}, page {c.page}")
