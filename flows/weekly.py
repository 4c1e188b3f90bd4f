"""The weekly improvement flow: the stages built so far, chained, on one window of logs.

Today: ingest → curate (which writes the exports of the versions it makes). Fine-tuning,
evaluation and the gate join as they land; each stage is its own flow (a subflow here), so each
is also deployable and runnable alone.

The curate window is on feedback arrival (the ledger's commit time): ``[until - window_days,
until)`` with ``until`` the run's scheduled start, or, when the run ingests and no ``until`` is
given, the moment its ingest finished (so the feedback this run received is curated by this run,
not a week later), unless ``since``/``until`` are given, or ``all_time`` (the bundled sample, a
backfill) curates everything received before ``until``.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from prefect import flow
from prefect.runtime import flow_run

from flows.curate import curate_flow
from flows.ingest import ingest_flow
from ratchet.curation.select import to_utc


@flow(name="weekly-improvement", flow_run_name="weekly-improvement")
def weekly_flow(
    paths: list[str],
    feedback_paths: list[str] | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    window_days: int = 7,
    all_time: bool = False,
) -> dict[str, Any]:
    """Run every stage in order; a failed stage fails the run with its reason."""
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    start = flow_run.scheduled_start_time
    end = to_utc(until) or (to_utc(start) if start else None) or datetime.now(UTC)
    out: dict[str, Any] = {}
    if paths or feedback_paths:
        out["ingest"] = ingest_flow(paths=paths, feedback_paths=feedback_paths or [], agent=agent)
        if until is None:  # the window is on arrival: what this run just received counts now
            end = datetime.now(UTC)
    begin = None if all_time else (to_utc(since) or end - timedelta(days=window_days))
    out["curate"] = curate_flow(agent=agent, since=begin, until=end)
    return out
