"""The ``ratchet`` command line.

Commands that run a pipeline stage start a Prefect flow in process (a temporary Prefect server
starts unless ``PREFECT_API_URL`` points at a running one); commands that only read or record
talk to the store and the database directly, so they answer in well under a second.
Exit codes: 0 success, 1 the stage failed (the reason is printed), 2 bad usage or config.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(add_completion=False, no_args_is_help=True, help=__doc__.split("\n")[0])
config_app = typer.Typer(no_args_is_help=True, help="Show the effective configuration.")
app.add_typer(config_app, name="config")

SAMPLE_DIR = Path(__file__).resolve().parent.parent / "ratchet" / "data" / "sample"


def _quiet_prefect() -> None:
    """Defaults that keep an offline, local run quiet and fast; an operator's values win."""
    for key, value in {
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "GX_ANALYTICS_ENABLED": "false",
        "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "90",
        "PREFECT_LOGGING_LEVEL": "WARNING",
    }.items():
        os.environ.setdefault(key, value)


def _fail(message: str, code: int = 1) -> typer.Exit:
    typer.secho(f"error: {message}", fg=typer.colors.RED, err=True)
    return typer.Exit(code)


def _check_config() -> None:
    """Validate settings and config before any work (exit 2 naming the key)."""
    from pydantic import ValidationError

    from ratchet.config import ConfigError, load_config
    from ratchet.settings import get_settings

    try:
        load_config(get_settings())
    except ConfigError as exc:
        raise _fail(str(exc), 2) from None
    except ValidationError as exc:
        problems = "; ".join(
            f"RATCHET_{'.'.join(str(p) for p in e['loc']).upper()}: {e['msg']}"
            for e in exc.errors(include_input=False, include_url=False)
        )
        raise _fail(f"invalid settings: {problems}", 2) from None


def _print_summary(title: str, summary: dict[str, Any]) -> None:
    typer.echo(f"{title}:")
    for key, value in summary.items():
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
        typer.echo(f"  {key}: {value}")


@config_app.command("show")
def config_show(
    describe: Annotated[bool, typer.Option(help="List every key with its description.")] = False,
) -> None:
    """Print the effective settings (secrets masked) and pipeline config."""
    from ratchet.config import describe as describe_config
    from ratchet.config import load_config
    from ratchet.settings import get_settings

    _check_config()
    if describe:
        for key, text in describe_config():
            typer.echo(f"{key}: {text}")
        return
    settings = get_settings()
    out = {"settings": settings.masked(), "config": load_config(settings).model_dump()}
    typer.echo(json.dumps(out, indent=2, default=str))


@app.command()
def ingest(
    paths: Annotated[list[str], typer.Argument(help="Interaction files, globs or folders.")],
    feedback: Annotated[
        list[str] | None, typer.Option("--feedback", help="Feedback-event files (repeatable).")
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Agent id for lines that name none.")] = None,
    fmt: Annotated[
        str, typer.Option("--format", help="auto | canonical | openai-chat")
    ] = "auto",
) -> None:
    """Ingest agent logs (and feedback): redact, validate, store exactly once."""
    _quiet_prefect()
    _check_config()
    from flows.ingest import ingest_flow
    from ratchet.ingest.reader import InputError, expand_inputs

    try:
        expand_inputs(list(paths) + list(feedback or []))
    except InputError as exc:
        raise _fail(str(exc), 2) from None
    try:
        summary = ingest_flow(paths=list(paths), feedback_paths=list(feedback or []), agent=agent, fmt=fmt)
    except Exception as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    _print_summary("ingest", summary)


@app.command()
def weekly(
    sample: Annotated[
        bool, typer.Option(help="Run on the bundled sample (ratchet/data/sample).")
    ] = False,
    logs: Annotated[list[str] | None, typer.Option(help="Interaction files or folders.")] = None,
    feedback: Annotated[list[str] | None, typer.Option(help="Feedback files.")] = None,
) -> None:
    """The weekly improvement flow: every stage built so far, chained."""
    _quiet_prefect()
    _check_config()
    from flows.weekly import weekly_flow

    if sample:
        logs = [str(p) for p in sorted(SAMPLE_DIR.glob("interactions-*.jsonl*"))]
        logs += [str(p) for p in sorted(SAMPLE_DIR.glob("openai-chat*.jsonl*"))]
        feedback = [str(p) for p in sorted(SAMPLE_DIR.glob("feedback-*.jsonl*"))]
    if not logs and not feedback:
        raise _fail("give --sample, or --logs/--feedback files", 2)
    try:
        summary = weekly_flow(paths=list(logs or []), feedback_paths=list(feedback or []))
    except Exception as exc:
        raise _fail(f"{type(exc).__name__}: {exc}") from None
    for stage, result in summary.items():
        _print_summary(stage, result)


@app.command("sample")
def sample(
    out: Annotated[Path, typer.Option(help="Folder to write the sample into.")],
    args: Annotated[list[str] | None, typer.Argument(help="Options for the generator.")] = None,
) -> None:
    """Generate a seeded synthetic sample (see ratchet/data/sample/README.md)."""
    from ratchet import sample as sample_mod

    code = sample_mod.main(["--out", str(out), *(args or [])])
    raise typer.Exit(code or 0)


def main(argv: list[str] | None = None) -> None:
    app(args=argv if argv is not None else sys.argv[1:], prog_name="ratchet")


if __name__ == "__main__":
    main()
