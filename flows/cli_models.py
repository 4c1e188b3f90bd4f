"""``ratchet models ...`` and ``ratchet ask``: the model registry's read and record commands.

None of them starts a Prefect flow: they talk to the database and the store directly, and
import what they need only when run, so they answer fast. Exit codes as everywhere in the CLI:
0 success, 1 failure (one-line reason), 2 bad usage (an unknown version, a missing option).
Registered into the main app by :func:`register_models_commands`; other ``models``
subcommands (``cancel``) attach to :data:`models_app`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

models_app = typer.Typer(
    no_args_is_help=True, help="List and show model versions; register an agent's logs model."
)


def _cli() -> Any:
    from flows import cli

    return cli


def _row(v: Any) -> dict[str, Any]:
    return {
        "version": v.id,
        "agent": v.agent_id,
        "backend": v.backend,
        "model_ref": v.model_ref,
        "status": v.status,
        "traffic_share": v.traffic_share,
        "parent": v.parent_id,
        "training_run": v.training_run_id,
        "created": v.created_at.isoformat(),
        "promoted": v.promoted_at.isoformat() if v.promoted_at else None,
        "retired": v.retired_at.isoformat() if v.retired_at else None,
    }


def _get_model(session: Any, version: str) -> Any:
    from ratchet.db import NotFoundError, repo

    try:
        return repo.get_model_version(session, version)
    except NotFoundError:
        raise _cli()._fail(f"no model version {version!r} (see: ratchet models list)", 2) from None


@models_app.command("list")
def models_list(
    agent: Annotated[str | None, typer.Option(help="Only this agent.")] = None,
    status: Annotated[
        str | None, typer.Option(help="Only this status: candidate, production, retired, rejected.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Model versions, newest first.

    --json: a list of objects with version, agent, backend, model_ref, status, traffic_share,
    parent, training_run, created, promoted, retired (ISO-8601 UTC times; null when unset).
    """
    from sqlalchemy import select

    from ratchet.db.models import MODEL_STATUSES, ModelVersion

    cli = _cli()
    cli._check_config()
    if status is not None and status not in MODEL_STATUSES:
        raise cli._fail(f"--status must be one of {', '.join(MODEL_STATUSES)}", 2)
    factory, _ = cli._db_and_store()
    stmt = select(ModelVersion)
    if agent is not None:
        stmt = stmt.where(ModelVersion.agent_id == agent)
    if status is not None:
        stmt = stmt.where(ModelVersion.status == status)
    with factory() as s:
        rows = [
            _row(v)
            for v in s.execute(
                stmt.order_by(ModelVersion.created_at.desc(), ModelVersion.id)
            ).scalars()
        ]
    if as_json:
        cli._echo_json(rows)
        return
    if not rows:
        typer.echo("no model versions")
        return
    typer.echo(f"{'version':<34}{'agent':<20}{'backend':<9}{'status':<12}created")
    for r in rows:
        typer.echo(
            f"{r['version']:<34}{r['agent']:<20}{r['backend']:<9}{r['status']:<12}"
            f"{r['created'][:19]}"
        )


@models_app.command("show")
def models_show(
    version: Annotated[str, typer.Argument(help="A model version id.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """One model version: what answers, its status, its parameters and its training run.

    --json: an object with version, agent, backend, model_ref, status, traffic_share, parent,
    training_run, created, promoted, retired, system_prompt, parameters, training (null, or
    an object with id, status, training_type, dataset_version, base_model_version, cost_usd),
    trained_on_erased_data (bool) and erased_data_at (null, or when; see ``ratchet forget``).
    """
    from ratchet.db import repo

    cli = _cli()
    cli._check_config()
    factory, _ = cli._db_and_store()
    with factory() as s:
        v = _get_model(s, version)
        info = _row(v) | {"system_prompt": v.system_prompt, "parameters": dict(v.parameters)}
        training = None
        if v.training_run_id:
            run = repo.get_training_run(s, v.training_run_id)
            training = {
                "id": run.id,
                "status": run.status,
                "training_type": run.training_type,
                "dataset_version": run.dataset_version_id,
                "base_model_version": run.base_model_version,
                "cost_usd": run.cost_usd,
            }
        info["training"] = training
        erased = v.erased_data_at  # set by `ratchet forget` (issue 12)
        info["trained_on_erased_data"] = erased is not None
        info["erased_data_at"] = erased.isoformat() if erased else None
    if as_json:
        cli._echo_json(info)
        return
    for key in (
        "version",
        "agent",
        "backend",
        "model_ref",
        "status",
        "traffic_share",
        "parent",
        "training_run",
        "created",
        "promoted",
        "retired",
    ):
        typer.echo(f"{key}: {info[key] if info[key] is not None else 'none'}")
    prompt = info["system_prompt"]
    typer.echo(f"system prompt: {len(prompt)} characters" if prompt else "system prompt: none")
    typer.echo("parameters:")
    for key, value in sorted(info["parameters"].items()):
        typer.echo(f"  {key}: {value}")
    if training:
        typer.echo("training: " + ", ".join(f"{k} {v}" for k, v in training.items()))
    if info["trained_on_erased_data"]:
        typer.echo(
            f"trained on erased data: yes (records it was trained on were erased at "
            f"{info['erased_data_at']}; retrain to be rid of them)"
        )


@models_app.command("register-logs")
def models_register_logs(
    agent: Annotated[str, typer.Option("--agent", help="The agent whose logs answer.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Register the agent's logs model (the agent as its logs show it).

    It answers with the logged answer of the nearest logged question; production if the agent
    has none yet, else a candidate. Run again on the same ingested data, it registers nothing.

    --json: an object with version, agent, status, model_ref, created (false: registered
    before), interactions (read), questions (distinct, indexed).
    """
    from ratchet.backends.base import BackendError
    from ratchet.backends.logs import register_logs_model
    from ratchet.config import load_config
    from ratchet.settings import get_settings
    from ratchet.store import StoreError

    cli = _cli()
    cli._check_config()
    factory, store = cli._db_and_store()
    config = load_config(get_settings())
    try:
        with factory() as s, s.begin():
            model = register_logs_model(s, store, agent, config.backends, created_by="cli")
    except (BackendError, StoreError) as exc:
        raise cli._fail_exc(exc) from None
    out = {
        "version": model.version_id,
        "agent": model.agent_id,
        "status": model.status,
        "model_ref": model.model_ref,
        "created": model.created,
        "interactions": model.interactions,
        "questions": model.questions,
    }
    if as_json:
        cli._echo_json(out)
        return
    if model.created:
        typer.echo(
            f"registered {model.version_id} ({model.status}) for agent {agent}: "
            f"{model.questions} questions from {model.interactions} interactions"
        )
    else:
        typer.echo(f"already registered: {model.version_id} ({model.status}); nothing new")


def ask(
    text: Annotated[str, typer.Argument(help="The question (a user message).")],
    model: Annotated[
        str, typer.Option("--model", help="A model version id, or 'production' (needs --agent).")
    ],
    agent: Annotated[
        str | None, typer.Option(help="The agent (needed with --model production).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Print a model version's answer to one question (a quick look, and for scripts).

    --json: an object with version, agent, backend, answer, tool_calls, latency_ms, cost_usd,
    details (how the answer was made, e.g. source and similarity for local and logs models).
    """
    from ratchet.backends import BackendContext, answerer_for
    from ratchet.backends.base import BackendError, ModelSpec
    from ratchet.config import load_config
    from ratchet.db import repo
    from ratchet.settings import get_settings
    from ratchet.store import StoreError

    cli = _cli()
    cli._check_config()
    if not text.strip():
        raise cli._fail("the question is empty", 2)
    factory, store = cli._db_and_store()
    settings = get_settings()
    with factory() as s:
        if model == "production":
            if agent is None:
                raise cli._fail("--model production needs --agent", 2)
            row = repo.production_version(s, agent)
            if row is None:
                raise cli._fail(
                    f"agent {agent!r} has no production model version "
                    "(see: ratchet models register-logs --agent ...)",
                    1,
                )
        else:
            row = _get_model(s, model)
            if agent is not None and row.agent_id != agent:
                raise cli._fail(f"model version {model!r} belongs to another agent", 2)
        spec = ModelSpec(
            backend=row.backend,
            model_ref=row.model_ref,
            system_prompt=row.system_prompt,
            parameters=dict(row.parameters),
        )
        version, agent_id = row.id, row.agent_id
    context = BackendContext(store=store, settings=settings, config=load_config(settings))
    try:
        answer = answerer_for(spec, context).answer([{"role": "user", "content": text}])
    except (BackendError, StoreError) as exc:
        raise cli._fail_exc(exc) from None
    if as_json:
        cli._echo_json(
            {
                "version": version,
                "agent": agent_id,
                "backend": spec.backend,
                "answer": answer.text,
                "tool_calls": list(answer.tool_calls),
                "latency_ms": round(answer.latency_ms, 3),
                "cost_usd": answer.cost_usd,
                "details": dict(answer.details),
            }
        )
        return
    typer.echo(answer.text)


def register_models_commands(app: typer.Typer) -> None:
    """Attach ``models list/show/register-logs`` and ``ask`` to the main ``ratchet`` app.

    When a ``models`` group is already registered (flows/cli_train.py adds ``models cancel``),
    the commands join it, so the registration order does not matter.
    """
    group = next(
        (
            g.typer_instance
            for g in app.registered_groups
            if g.name == "models" and g.typer_instance is not None
        ),
        None,
    )
    if group is None:
        app.add_typer(models_app, name="models")
        group = models_app
    if group is not models_app:
        for command in models_app.registered_commands:
            group.registered_commands.append(command)
    app.command("ask")(ask)
