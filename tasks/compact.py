"""Prefect task of the weekly flow's store maintenance: compaction after ingest, before curate.

Ingest of a shuffled week leaves one small part per (agent, day) per batch; curation, the audit
and every later read pay per file. This step merges them (:func:`ratchet.compaction.compact`:
one ledger transaction per partition) and purges the files earlier runs retired. It returns
counts only. Its failure does not fail the run: compaction only changes how records are laid
out, never which records a reader sees, so curation is right either way; the weekly report
and a warning say it failed. ``NO_CACHE``: a compaction acts on the store as it is now.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ratchet.compaction import compact
from ratchet.config import load_config
from tasks import runtime

log = logging.getLogger("ratchet.tasks.compact")


@task(
    name="compact-store",
    task_run_name="compact-{agent}",
    cache_policy=NO_CACHE,
    retries=runtime.RETRIES,
    retry_delay_seconds=runtime.RETRY_DELAYS,
    retry_jitter_factor=runtime.RETRY_JITTER,
    retry_condition_fn=runtime.retry_transient,
)
def compact_store_task(agent: str | None) -> dict[str, Any]:
    """Compact one agent's partitions (every agent's when ``agent`` is None); counts only."""
    s = runtime.settings()
    config = load_config(s)
    report = compact(runtime.store(s), runtime.sessions(s), config.store, agent_id=agent)
    out = report.as_dict()
    del out["purge"]  # its paths stay out of Prefect's records: a count is enough
    out["purged_files"] = len(report.purge["deleted"]) if report.purge else 0  # type: ignore[arg-type]
    return out


def compact_written(agent: str | None) -> tuple[dict[str, Any] | None, str | None]:
    """Run the task; ``(counts, None)``, or ``(None, reason)`` when it failed (not fatal)."""
    try:
        return compact_store_task(agent), None
    except Exception as exc:  # a maintenance step: reported, the run goes on
        reason = f"compact: {type(exc).__name__}: {exc}"
        log.warning("%s (the run goes on: compaction never changes what readers see)", reason)
        return None, reason
