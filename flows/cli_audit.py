"""``ratchet audit pii`` and ``ratchet audit lineage``: what Ratchet keeps, checked and traced.

Neither starts a Prefect flow: both read the store and the database directly
(:mod:`ratchet.privacy.audit`, :mod:`ratchet.privacy.lineage`). Exit codes: ``audit pii`` 0 when
clean, 1 on any finding (or a file it cannot read: not provably clean); ``audit lineage`` 0, or
2 for an unknown version. Output names tables, files, columns, ids and pseudonyms, never a value.
Registered into :mod:`flows.cli` by :func:`register`.
"""

from __future__ import annotations

from typing import Annotated, Any

import typer

audit_app = typer.Typer(
    no_args_is_help=True, help="Audit what is kept: PII scan of the store, lineage of a version."
)


def _cli() -> Any:
    from flows import cli

    return cli


@audit_app.command("pii")
def audit_pii(
    agent: Annotated[
        str | None, typer.Option(help="Only this agent's files and rows (default: everything).")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """Scan the store, the exports, the model folders and the database for PII with the full
    redaction rule set and Presidio's recognizers (the `privacy` extra; without it, the rules
    only, and the output says so). Exit 1 on any finding.

    --json: an object with clean, agent, files_scanned, rows_scanned, db_tables_scanned,
    files_not_scanned, unreadable, second_opinion, second_opinion_rows, hits_by_type, seconds
    and findings (table, file, column, detector, types, rows): never a value.
    """
    from ratchet.config import load_config
    from ratchet.privacy.audit import audit_pii as run_audit
    from ratchet.settings import get_settings

    cli = _cli()
    cli._check_config()
    factory, store = cli._db_and_store()
    report = run_audit(store, factory, load_config(get_settings()), agent=agent)
    if as_json:
        cli._echo_json(report.as_dict())
    else:
        scope = f"agent {agent}" if agent else "everything"
        typer.echo(
            f"PII audit of {scope}: {report.files_scanned} file(s), {report.rows_scanned} "
            f"row(s), {report.db_tables_scanned} database table(s) in {report.seconds:.1f} s"
        )
        typer.echo(
            f"second opinion (Presidio): {report.second_opinion}"
            + (
                f", {report.second_opinion_rows} sampled row(s)"
                if report.second_opinion_rows
                else ""
            )
        )
        if report.files_not_scanned:
            typer.echo(f"not scanned (not text): {cli._readable(dict(report.files_not_scanned))}")
        for f in report.findings:
            typer.echo(
                f"  HIT {f.table} {f.file} [{f.column}] {cli._readable(dict(f.types))} "
                f"in {f.rows} row(s) ({f.detector})"
            )
        for u in report.unreadable:
            typer.echo(f"  UNREADABLE {u['file']} ({u['error']})")
        typer.echo("clean" if report.clean else "PII FOUND" if report.findings else "INCOMPLETE")
    if not report.clean:
        raise typer.Exit(1)


@audit_app.command("lineage")
def audit_lineage(
    version: Annotated[str, typer.Argument(help="A dataset version id or a model version id.")],
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
) -> None:
    """The feedback events, interactions and source files a dataset or model version came
    from: ids, pseudonyms and source files by their hash and redacted name only.

    --json: an object with version, type (dataset_version | model_version), agent, interactions
    (interaction_id, user, part, source_file), feedback (feedback_id, interaction_id,
    annotator, part, source_file), source_files (id, name, kind), users, not_in_store; a dataset
    version adds kind, rows, flow_run, parts, derived_from_versions, unresolved_cases; a model
    version adds backend, status, parent, training_run, strategy and dataset.
    """
    from ratchet.privacy.lineage import LineageError, lineage

    cli = _cli()
    cli._check_config()
    factory, store = cli._db_and_store()
    with factory() as s:
        try:
            out = lineage(s, store, version)
        except LineageError as exc:
            raise cli._fail(str(exc), 2) from None
    if as_json:
        cli._echo_json(out)
        return
    typer.echo(f"{out['type'].replace('_', ' ')} {out['version']} (agent {out['agent']})")
    if out["type"] == "model_version":
        typer.echo(f"  backend: {out['backend']}; training run: {out['training_run'] or '-'}")
        ds = out.get("dataset")
        typer.echo(f"  trained on: {ds['kind'] + ' ' + ds['version'] if ds else '-'}")
    else:
        typer.echo(f"  kind: {out['kind']}; rows: {out['rows']}; parts: {len(out['parts'])}")
    typer.echo(
        f"  interactions: {len(out['interactions'])}; feedback events: {len(out['feedback'])}; "
        f"users: {len(out['users'])}; source files: {len(out['source_files'])}"
    )
    for sf in out["source_files"]:
        typer.echo(f"  source file {sf['id']} {sf['name']} ({sf['kind']})")
    for r in out["interactions"]:
        typer.echo(f"  interaction {r['interaction_id']} user {r['user'] or '-'}")
    for r in out["feedback"]:
        typer.echo(
            f"  feedback {r['feedback_id']} on {r['interaction_id']} by {r['annotator'] or '-'}"
        )


def register(app: typer.Typer) -> None:
    """Add ``audit pii`` and ``audit lineage`` to the ``ratchet`` app."""
    app.add_typer(audit_app, name="audit")
