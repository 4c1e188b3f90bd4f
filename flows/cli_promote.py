"""``ratchet promote``, ``ratchet rollback`` and ``ratchet models route``.

``promote`` starts the promote flow (it reads evaluation results); ``rollback`` and
``models route`` only record or read, so they talk to the database directly and answer fast.
Registered into :mod:`flows.cli` by :func:`register`. Exit codes as everywhere: 0 success (a
rejection is a decision taken, so 0 too; ``--json`` says ``"action": "reject"``), 1 failure,
2 bad usage (an unknown version, a missing option).
"""

from __future__ import annotations

from typing import Annotated, Any

import typer


def _cli() -> Any:
    from flows import cli

    return cli


def _print_outcome(out: dict[str, Any]) -> None:
    typer.echo(
        f"{out['action']}: {out['candidate']} (agent {out['agent']}, baseline "
        f"{out['baseline'] or 'none'})"
    )
    for reason in out.get("reasons") or []:
        typer.echo(f"  - {reason}")
    gate = out.get("gate")
    if gate:
        for r in gate["rules"]:
            mark = "pass" if r["passed"] else "FAIL"
            typer.echo(
                f"  {mark:4} {r['rule']}{'' if r['gated'] else ' (reported)'}: {r['detail']}"
            )


def promote(
    version: Annotated[str, typer.Argument(help="Candidate model version id.")],
    force: Annotated[
        bool,
        typer.Option("--force", help="Promote whatever the gate says (needs --reason; recorded)."),
    ] = False,
    reason: Annotated[
        str | None, typer.Option(help="Why a forced promotion (kept on the audit record).")
    ] = None,
    rollout: Annotated[
        bool,
        typer.Option(
            "--rollout",
            help="Step the candidate's traffic share (gates.yaml rollout_shares) "
            "instead of promoting at once; the last step promotes.",
        ),
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Judge and report; change and record nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Gate a candidate against production and promote it, or reject it with its reasons.

    --json: an object with action (promote | reject | rollout | none), agent, candidate,
    baseline, passed, reasons, decision (the audit record id), traffic_share, gate (every rule
    with its numbers) and eval_runs.
    """
    cli = _cli()
    if force and not (reason or "").strip():
        raise cli._fail("--force needs --reason TEXT (it is recorded)", 2)
    if force and dry_run:
        raise cli._fail("--force and --dry-run exclude each other", 2)
    cli._quiet_prefect()
    cli._check_config()
    factory, _ = cli._db_and_store()
    from flows.cli_models import _get_model

    with factory() as s:
        model = _get_model(s, version)
        if model.status != "candidate":
            raise cli._fail(f"model version {version!r} is {model.status}, not a candidate", 2)
    from flows.promote import promote_flow

    out = cli._run_flow(
        promote_flow,
        candidate=version,
        force=force,
        reason=reason,
        rollout=rollout,
        dry_run=dry_run,
    )
    if as_json:
        cli._echo_json(out)
    else:
        _print_outcome(out)


def rollback(
    agent: Annotated[
        str | None,
        typer.Option(
            help="Agent id (default: the agent of --to, or the only agent with a production)."
        ),
    ] = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to", help="A retired version to restore (default: the one production replaced)."
        ),
    ] = None,
    reason: Annotated[str | None, typer.Option(help="Why (kept on the audit record).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Restore the previous production version (or --to VERSION); no flow, one transaction.

    --json: an object with action (rollback), agent, candidate (the restored version),
    baseline (the demoted one), reasons and decision (the audit record id).
    """
    from sqlalchemy import select

    from ratchet.db import InvalidTransitionError
    from ratchet.db.models import ModelVersion
    from ratchet.promotion import roll_back
    from ratchet.settings import get_settings

    cli = _cli()
    cli._check_config()
    factory, _ = cli._db_and_store()
    from flows.cli_models import _get_model

    with factory() as s:
        if to is not None:
            target = _get_model(s, to)
            if agent is not None and agent != target.agent_id:
                raise cli._fail(f"--to {to!r} is a version of another agent", 2)
            agent = target.agent_id
        if agent is None:
            agents = sorted(
                s.execute(
                    select(ModelVersion.agent_id).where(ModelVersion.status == "production")
                ).scalars()
            )
            if len(agents) != 1:
                raise cli._fail(
                    "--agent is needed (agents with a production version: "
                    f"{', '.join(agents) or 'none'})",
                    2,
                )
            agent = agents[0]
    try:
        with factory() as s, s.begin():
            out = roll_back(
                s, agent, decided_by=get_settings().user or "cli", to=to, reason=reason
            ).as_dict()
    except InvalidTransitionError as exc:
        raise cli._fail(str(exc), 1) from None
    if as_json:
        cli._echo_json(out)
    else:
        typer.echo(
            f"rolled back agent {out['agent']}: {out['candidate']} serves again "
            f"({out['baseline']} retired)"
        )


def models_route(
    agent: Annotated[str, typer.Option("--agent", help="Agent id.")],
    user: Annotated[str, typer.Option("--user", help="User id as serving code sees it.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """The model version that answers this user (sticky per user; the candidate gets its
    rollout share of users). The same call as ratchet.routing.choose_version.

    --json: an object with agent, version, production, candidate, candidate_share.
    """
    from ratchet.routing import pick, route_of

    cli = _cli()
    cli._check_config()
    factory, _ = cli._db_and_store()
    with factory() as s:
        route = route_of(s, agent)
    if route is None:
        raise cli._fail(f"agent {agent!r} has no production model version", 2)
    version = pick(route, user)
    if as_json:
        cli._echo_json(
            {
                "agent": agent,
                "version": version,
                "production": route.production_id,
                "candidate": route.candidate_id,
                "candidate_share": route.candidate_share,
            }
        )
    else:
        typer.echo(version)


def register(app: typer.Typer) -> None:
    """Add ``promote``, ``rollback`` and ``models route`` to the ``ratchet`` app."""
    from flows.cli_train import _models_group

    app.command("promote")(promote)
    app.command("rollback")(rollback)
    _models_group(app).command("route")(models_route)
