"""``ratchet train`` (starts the train flow) and ``ratchet models cancel`` (no flow).

Registered into :mod:`flows.cli` by :func:`register`. ``models cancel`` joins the ``models``
command group when one is already registered (``ratchet models list/show/...``) and makes the
group otherwise, so either module may be registered first.
"""

from __future__ import annotations

import json
import re
from typing import Annotated, Any

import typer

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$")


def parse_params(items: list[str] | None) -> dict[str, Any]:
    """``key=value`` pairs; a value that reads as JSON (``3``, ``0.1``, ``true``, ``[1,2]``) is
    that value, anything else is the text as given. Errors name the key, never the value."""
    out: dict[str, Any] = {}
    for i, item in enumerate(items or [], start=1):
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not _KEY.match(key):
            raise ValueError(
                f"--param #{i}: expected key=value with a plain key (letters, digits, _ . -)"
            )
        if key in out:
            raise ValueError(f"--param {key}: given twice")
        try:
            out[key] = json.loads(raw)
        except ValueError:
            out[key] = raw
    return out


def train(
    dataset: Annotated[str, typer.Option("--dataset", help="Dataset version id to train from.")],
    strategy: Annotated[
        str | None,
        typer.Option(
            help="sft | dpo | kto | few_shot | prompt (default: training.default_strategy)."
        ),
    ] = None,
    backend: Annotated[
        str | None, typer.Option(help="openai | trl | local (default: training.default_backend).")
    ] = None,
    base: Annotated[
        str | None,
        typer.Option(help="Base model version id (default: the agent's production version)."),
    ] = None,
    param: Annotated[
        list[str] | None,
        typer.Option(
            "--param",
            help="Training parameter key=value (repeatable): n_epochs=3, k=4, system_prompt=...",
        ),
    ] = None,
    notes: Annotated[
        str | None, typer.Option(help="A note kept on the training record (why this run).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Train a candidate model version from a dataset version (or reuse the one already made)."""
    from flows import cli
    from ratchet.backends import BACKENDS
    from ratchet.backends.base import STRATEGIES

    cli._quiet_prefect()
    cli._check_config()
    if strategy is not None and strategy not in STRATEGIES:
        raise cli._fail(f"--strategy must be one of {', '.join(STRATEGIES)}", 2)
    if backend is not None and backend not in BACKENDS:
        raise cli._fail(f"--backend must be one of {', '.join(sorted(BACKENDS))}", 2)
    try:
        params = parse_params(param)
    except ValueError as exc:
        raise cli._fail(str(exc), 2) from None
    factory, _ = cli._db_and_store()
    with factory() as s:
        agent = cli._get_version(s, dataset).agent_id
    from flows.train import train_flow

    summary = cli._run_flow(
        train_flow,
        dataset=dataset,
        strategy=strategy,
        backend=backend,
        base=base,
        params=params,
        agent=agent,
        notes=notes,
    )
    if as_json:
        cli._echo_json(summary)
    else:
        cli._print_summary("train", summary)


def models_cancel(
    training_id: Annotated[str, typer.Argument(help="Training run id (the training record).")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Cancel a training run: stop its job on the backend and record it cancelled."""
    from flows import cli
    from ratchet.backends.base import BackendError
    from ratchet.config import load_config
    from ratchet.db import NotFoundError
    from ratchet.settings import get_settings
    from ratchet.training import TrainingContext, cancel_training

    cli._check_config()
    factory, store = cli._db_and_store()
    settings = get_settings()
    ctx = TrainingContext(
        sessions=factory, store=store, config=load_config(settings), settings=settings
    )
    try:
        status = cancel_training(ctx, training_id)
    except NotFoundError:
        raise cli._fail(f"no training run {training_id!r}", 2) from None
    except BackendError as exc:
        raise cli._fail_exc(exc) from None
    if as_json:
        cli._echo_json({"training_run_id": training_id, "status": status})
    else:
        typer.echo(f"training run {training_id}: {status}")


def _models_group(app: typer.Typer) -> typer.Typer:
    for group in app.registered_groups:
        if group.name == "models" and group.typer_instance is not None:
            return group.typer_instance
    models_app = typer.Typer(no_args_is_help=True, help="Model versions and training runs.")
    app.add_typer(models_app, name="models")
    return models_app


def register(app: typer.Typer) -> None:
    """Add ``train`` and ``models cancel`` to the ``ratchet`` app."""
    app.command("train")(train)
    _models_group(app).command("cancel")(models_cancel)
