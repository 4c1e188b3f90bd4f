"""``ratchet store compact``: merge small parts into parts of the target size (issue 13).

It only touches the store and the ledger (no pipeline stage, so no Prefect flow and no
temporary server): registered on :data:`flows.cli.store_app` by :func:`register`, next to
``store gc``. Exit codes as everywhere: 0 success, 1 failure (a partition left for the next run
is reported and counts as success), 2 bad usage.
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Annotated, Any

import typer


def _cli() -> Any:
    from flows import cli

    return cli


def parse_grace(text: str) -> timedelta:
    """``30m``, ``1h``, ``2d`` or plain seconds (as ``store gc --grace``)."""
    match = re.fullmatch(r"\s*(\d+)\s*([smhd]?)\s*", text)
    if match is None:
        raise ValueError("--grace must be a number of seconds or like 30m, 1h, 2d")
    unit = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
    return timedelta(seconds=int(match.group(1)) * unit)


def store_compact(
    agent: Annotated[
        str | None, typer.Option("--agent", help="Only this agent's partitions.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Say what would be merged; write nothing.")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="JSON output.")] = False,
    grace: Annotated[
        str | None,
        typer.Option(
            help="Delete files of parts compacted longer ago than this (30m, 1h, 2d, or "
            "seconds); default store.compaction_grace_s."
        ),
    ] = None,
) -> None:
    """Merge the small parts of each partition (agent, day, table) into parts of
    store.compaction_target_rows rows, in one ledger transaction per partition; then delete the
    files compaction retired more than --grace ago (and orphans, as store gc)."""
    from ratchet.compaction import compact
    from ratchet.config import ConfigError, load_config
    from ratchet.settings import get_settings

    cli = _cli()
    try:
        wait = parse_grace(grace) if grace is not None else None
    except ValueError as exc:
        raise cli._fail(str(exc), 2) from None
    try:
        config = load_config(get_settings())
    except ConfigError as exc:
        raise cli._fail(str(exc), 1) from None
    sessions, store = cli._db_and_store()
    report = compact(store, sessions, config.store, agent_id=agent, dry_run=dry_run, grace=wait)
    if as_json:
        cli._echo_json(report.as_dict())
        return
    verb = "would compact" if dry_run else "compacted"
    typer.echo(
        f"{verb} {report.partitions} partition(s): {report.parts_in} parts -> "
        f"{report.parts_out}, {report.rows} rows"
        + ("" if dry_run else f"; {report.indexed_parts} feedback part(s) indexed")
    )
    for label in report.conflicts:
        typer.echo(f"  skipped {label}: changed while compacting; run again")
    if report.purge is not None:
        deleted = report.purge["orphans" if dry_run else "deleted"]
        typer.echo(
            f"{'would delete' if dry_run else 'deleted'} {len(deleted)} retired or orphan part "  # type: ignore[arg-type]
            f"file(s), {report.purge['bytes']} bytes"
        )


def register(store_app: typer.Typer) -> None:
    """Add ``compact`` to ``ratchet store``."""
    store_app.command("compact")(store_compact)
