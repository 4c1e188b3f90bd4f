"""The ``retention`` flow: delete what is older than ``retention`` allows, then sweep pending
erasures. Scheduled daily by ``deployments/prefect.yaml`` (``retention-daily``); by hand with
``ratchet retention [--dry-run]``.

Ages are measured from the run's scheduled start (a late run deletes what the schedule meant,
not more). What expires and why is in :mod:`ratchet.privacy.retention`; the reach (every
dataset version, export, cached answer, eval result and retrieval model) is the erasure
engine's, :mod:`ratchet.privacy.erasure`. The artifact holds counts only.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from flows.forget import publish
from ratchet.config import load_config
from ratchet.db import repo
from ratchet.privacy import retention
from ratchet.privacy.erasure import ErasureContext
from ratchet.settings import get_settings
from tasks import runtime


def _now() -> datetime:
    scheduled = flow_run.scheduled_start_time
    return scheduled.astimezone(UTC) if scheduled is not None else datetime.now(UTC)


@task(name="apply-retention", cache_policy=NO_CACHE)
def apply_retention(ctx: ErasureContext, now: datetime, dry_run: bool) -> dict[str, Any]:
    return retention.apply(ctx, ctx.config.retention, now, dry_run=dry_run)


@flow(name="retention", flow_run_name="retention-{dry_run}", log_prints=False)
def retention_flow(dry_run: bool = False) -> dict[str, Any]:
    """Apply the retention config (and finish pending erasures); returns counts and cutoffs."""
    runtime.route_core_logs()
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(settings)
    ctx = ErasureContext(
        runtime.store(settings), runtime.sessions(settings), config,
        runtime.pseudonym_key(settings),
    )  # fmt: skip
    with ctx.sessions() as s, s.begin():
        run_id = repo.start_pipeline_run(
            s, flow_name="retention", flow_run_id=str(flow_run.get_id() or "") or None,
            parameters={"dry_run": dry_run},
        ).id  # fmt: skip
    try:
        out = apply_retention(ctx, _now(), dry_run)
    except Exception as exc:
        with ctx.sessions() as s, s.begin():
            repo.finish_pipeline_run(s, run_id, status="failed", error=type(exc).__name__)
        raise
    with ctx.sessions() as s, s.begin():
        repo.finish_pipeline_run(s, run_id, status="completed", counts=out)
    publish("Retention", out, "retention-summary")
    kept = [t for t, c in out["cutoffs"].items() if c is None]
    logger.info(
        "retention%s: %d rows removed, %d files deleted; kept for good: %s",
        " (dry run)" if dry_run else "", out["rows_removed_total"], out["files_deleted"],
        ", ".join(kept) or "nothing",
    )  # fmt: skip
    return out
