"""Prefect task wrapper for curation: one task run per agent (a coarse shard).

It resolves its services from settings, calls the core (:func:`ratchet.curation.registry.
curate_agent`: read from the ledger, curate, check, write, register, export) and returns the
agent's report: counts, version ids and paths, never a frame. A transient database or store
error (see :func:`tasks.runtime.is_transient`) is retried with backoff; curation is idempotent
(a version's id is its content hash), so a retry registers nothing twice. ``NO_CACHE``: any cache policy
turns on result persistence, and curation must never persist anything holding user text.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ratchet.config import PipelineConfig
from ratchet.curation.registry import CurationContext, curate_agent
from ratchet.curation.select import Window
from ratchet.redaction import Redactor
from tasks import runtime


@task(
    name="curate-agent",
    task_run_name="curate-{agent}",
    cache_policy=NO_CACHE,
    retries=runtime.RETRIES,
    retry_delay_seconds=runtime.RETRY_DELAYS,
    retry_jitter_factor=runtime.RETRY_JITTER,
    retry_condition_fn=runtime.retry_transient,
)
def curate_agent_task(
    agent: str,
    since: datetime | None,
    until: datetime,
    config: PipelineConfig,
    flow_run_id: str | None,
) -> dict[str, Any]:
    """Curate one agent's feedback window ``[since, until)``; returns its report."""
    s = runtime.settings()
    ctx = CurationContext(
        store=runtime.store(s),
        sessions=runtime.sessions(s),
        config=config,
        redactor=Redactor(config.redaction),
        flow_run_id=flow_run_id,
    )
    return curate_agent(ctx, agent, Window(since, until))
