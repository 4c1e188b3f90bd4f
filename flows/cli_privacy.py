"""``ratchet forget`` and ``ratchet retention``: the privacy operations that start a flow.

``forget`` takes raw ids on the command line and never lets them past this process: a user id
is hashed with the ingest's keyed pseudonym, an interaction id is mapped the way ingest stores
it (kept as given, or its keyed pseudonym when it holds PII), and only the results reach the
flow, through a 0600 request file under ``$RATCHET_HOME/inputs`` that is deleted when the run
ends (see :mod:`flows.forget`).

``--ids-file FILE``: one id per line; ``user:<id>`` or ``interaction:<id>`` names the kind, a
bare line is a user id; blank lines and lines starting with ``#`` are skipped.

Exit codes: 0 done (a dry run too), 1 the run failed, 2 bad usage.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer


def _cli() -> Any:
    from flows import cli

    return cli


def read_ids_file(path: Path) -> tuple[list[str], list[str]]:
    """(user ids, interaction ids) of an ids file (see the module docstring)."""
    users: list[str] = []
    interactions: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("interaction:"):
            interactions.append(line.removeprefix("interaction:").strip())
        else:
            users.append(line.removeprefix("user:").strip())
    return [u for u in users if u], [i for i in interactions if i]


def stored_ids(
    users: list[str], interactions: list[str], config: Any, key: bytes
) -> tuple[list[str], list[str]]:
    """The ids as ingest stores them: user pseudonyms, interaction ids (pseudonymised when the
    redactor would change them, exactly as :class:`ratchet.ingest.identity.IdGuard` does)."""
    from ratchet.ingest.identity import IdGuard
    from ratchet.redaction import Redactor, pseudonymise

    guard = IdGuard(Redactor(config.redaction), key)
    guard.check(interactions)
    return (
        [pseudonymise(u, key) for u in users],
        [guard.pseudonym.get(i, i) for i in interactions],
    )


def _print(title: str, out: dict[str, Any]) -> None:
    typer.echo(f"{title}{' (dry run: nothing changed)' if out['dry_run'] else ''}:")
    typer.echo(f"  rows removed: {out['rows_removed_total']}")
    for table, n in sorted(out["rows_removed"].items()):
        typer.echo(f"    {table}: {n}")
    for key in (
        "files_rewritten", "files_deleted", "versions_superseded", "exports_rewritten",
        "models_marked", "model_folders_rewritten", "tombstones_added",
    ):  # fmt: skip
        typer.echo(f"  {key.replace('_', ' ')}: {out[key]}")
    if out.get("dataset_versions"):
        typer.echo("  dataset versions that held the data: " + ", ".join(out["dataset_versions"]))
    if out.get("model_versions"):
        typer.echo(
            "  model versions trained on it (marked trained on erased data): "
            + ", ".join(out["model_versions"])
        )


def forget(
    user: Annotated[
        str | None, typer.Option("--user", help="A user id as the logs give it.")
    ] = None,
    interaction: Annotated[
        str | None, typer.Option("--interaction", help="An interaction id as the logs give it.")
    ] = None,
    ids_file: Annotated[
        Path | None,
        typer.Option("--ids-file", help="A file of ids (user:<id> / interaction:<id> lines)."),
    ] = None,
    agent: Annotated[str | None, typer.Option(help="Only this agent (default: all).")] = None,
    reason: Annotated[
        str | None,
        typer.Option(help="Why (kept on the tombstone), e.g. consent-withdrawn."),
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be touched; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Erase a user's or an interaction's data from the store, every dataset version and export,
    cached answers, evaluation results, the review queue, quarantine and retrieval models;
    mark the model versions trained on it; record a tombstone so re-ingest does not restore it.

    --json: rows_removed (per table), files_rewritten, files_deleted, versions_superseded,
    exports_rewritten, models_marked, model_folders_rewritten, tombstones_added, dry_run,
    dataset_versions, new_versions, model_versions.
    """
    cli = _cli()
    users: list[str] = [user] if user else []
    interactions: list[str] = [interaction] if interaction else []
    if ids_file is not None:
        try:
            more_users, more_interactions = read_ids_file(ids_file)
        except (OSError, UnicodeDecodeError) as exc:
            raise cli._fail(f"--ids-file cannot be read ({type(exc).__name__})", 2) from None
        users += more_users
        interactions += more_interactions
    if not users and not interactions:
        raise cli._fail("give --user, --interaction or --ids-file", 2)
    cli._quiet_prefect()
    cli._check_config()
    from flows.forget import forget_flow, remove_request, write_request
    from ratchet.config import load_config
    from ratchet.settings import get_settings
    from tasks import runtime

    settings = get_settings()
    try:
        key = runtime.pseudonym_key(settings)
    except Exception as exc:
        raise cli._fail_exc(exc) from None
    hashed_users, stored_interactions = stored_ids(users, interactions, load_config(settings), key)
    del users, interactions
    ref = write_request(
        settings.home, users=hashed_users, interactions=stored_interactions,
        reason=reason, agent=agent,
    )  # fmt: skip
    try:
        out = cli._run_flow(forget_flow, request=ref, agent=agent, dry_run=dry_run)
    finally:
        remove_request(settings.home, ref)
    if as_json:
        cli._echo_json(out)
    else:
        _print("forget", out)


def retention(
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be deleted; change nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Delete what is older than the configured maximum age per table (config ``retention``),
    with the same reach as ``forget``; also sweeps pending erasures.

    --json: the erasure counts (as ``forget``) plus cutoffs (per table, ISO time or null).
    """
    cli = _cli()
    cli._quiet_prefect()
    cli._check_config()
    from flows.retention import retention_flow

    out = cli._run_flow(retention_flow, dry_run=dry_run)
    if as_json:
        cli._echo_json(out)
    else:
        _print("retention", out)
        for table, cutoff in sorted(out.get("cutoffs", {}).items()):
            typer.echo(
                f"  {table}: {'kept (no maximum age)' if cutoff is None else 'before ' + cutoff}"
            )


def register(app: typer.Typer) -> None:
    """Add ``forget`` and ``retention`` to the ``ratchet`` app."""
    app.command("forget")(forget)
    app.command("retention")(retention)
