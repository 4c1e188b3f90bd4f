"""Prefect task wrapper for ingest: one task run per input file (a coarse shard).

It resolves its services from settings, calls the core, and returns the file's report (counts
and part paths: small), never a frame. It is given an input list reference and an index, never
a path, and its run is named by the file's hash: Prefect records a task run's name and inputs.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from prefect import task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import task_run

from ratchet.config import PipelineConfig
from ratchet.ingest.inputs import display_name, read_input_list
from ratchet.ingest.pipeline import Format, IngestContext, Kind, ingest_file
from ratchet.ingest.ranges import ByteRange
from ratchet.redaction import Redactor
from tasks import runtime


def _task_run_name() -> str:
    params = task_run.parameters
    name = f"ingest-{params.get('kind')}-{str(params.get('source'))[:12]}"
    part = params.get("byte_range")
    return f"{name}-from-line-{part[2]}" if part else name


@task(
    name="ingest-file",
    task_run_name=_task_run_name,
    cache_policy=NO_CACHE,
    retries=runtime.RETRIES,
    retry_delay_seconds=runtime.RETRY_DELAYS,
    retry_jitter_factor=runtime.RETRY_JITTER,
    retry_condition_fn=runtime.retry_transient,
)
def ingest_file_task(
    inputs: str,
    index: int,
    source: str,
    kind: Kind | Literal["auto"],
    fmt: Format,
    agent: str | None,
    config: PipelineConfig,
    now: datetime,
    flow_run_id: str | None,
    byte_range: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """Ingest file ``index`` of input list ``inputs``, whose sha256 is ``source``; returns its
    report as a plain dict (counts, parts, quality summary).

    ``byte_range`` ``(start, end, first line)``: only that share of the file (a parallel task
    on a Dask worker; the flow owns the file's ledger row then). Three integers, so nothing of
    the file crosses to the worker: it opens the file itself, which must be at the same path
    there (a shared volume on a cluster).

    No cache policy: results hold counts only, and persisting them would gain nothing.
    """
    s = runtime.settings()
    path = read_input_list(s.home, inputs)[index][1]
    redactor = Redactor(config.redaction)
    ctx = IngestContext(
        store=runtime.store(s),
        sessions=runtime.sessions(s),
        config=config,
        redactor=redactor,
        pseudonym_key=runtime.pseudonym_key(s),
        now=now,
        flow_run_id=flow_run_id,
        on_batch=runtime.batch_progress(path, display_name(redactor, path.name)),
    )
    report = ingest_file(
        ctx, path, kind=kind, fmt=fmt, default_agent=agent, source=source,
        byte_range=ByteRange(*byte_range) if byte_range else None,
    )  # fmt: skip
    return report.as_dict()
