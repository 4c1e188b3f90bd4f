"""Prefect task wrapper for ingest: one task run per input file (a coarse shard).

It resolves its services from settings, calls the core, and returns the file's report (counts
and part paths: small), never a frame.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ratchet.config import PipelineConfig
from ratchet.ingest.pipeline import Format, IngestContext, Kind, ingest_file
from ratchet.redaction import Redactor
from tasks import runtime


@task(
    name="ingest-file", task_run_name="ingest-{kind}-{path_name}", cache_policy=NO_CACHE,
    retries=runtime.RETRIES, retry_delay_seconds=runtime.RETRY_DELAYS,
    retry_jitter_factor=runtime.RETRY_JITTER, retry_condition_fn=runtime.retry_transient,
)
def ingest_file_task(
    path: str,
    path_name: str,
    kind: Kind,
    fmt: Format,
    agent: str | None,
    config: PipelineConfig,
    now: datetime,
    flow_run_id: str | None,
) -> dict[str, Any]:
    """Ingest one file; returns its report as a plain dict (counts, parts, quality summary).

    ``path_name`` is only for the task run's name in the UI (the file name, which the flow has
    already redacted). No cache policy: results hold counts only, and persisting them would
    gain nothing.
    """
    s = runtime.settings()
    ctx = IngestContext(
        store=runtime.store(s),
        sessions=runtime.sessions(s),
        config=config,
        redactor=Redactor(config.redaction),
        pseudonym_key=runtime.pseudonym_key(s),
        now=now,
        flow_run_id=flow_run_id,
    )
    return ingest_file(ctx, Path(path), kind=kind, fmt=fmt, default_agent=agent).as_dict()
