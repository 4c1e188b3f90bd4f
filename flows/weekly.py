"""The weekly improvement flow: the stages built so far, chained, on one window of logs.

Today: ingest. Curation, export, fine-tuning, evaluation and the gate join as they land; each
stage is its own flow (a subflow here), so each is also deployable and runnable alone.
"""

from __future__ import annotations

from typing import Any

from prefect import flow

from flows.ingest import ingest_flow


@flow(name="weekly-improvement", flow_run_name="weekly-improvement")
def weekly_flow(
    paths: list[str],
    feedback_paths: list[str] | None = None,
    agent: str | None = None,
) -> dict[str, Any]:
    """Run every stage in order; a failed stage fails the run with its reason."""
    ingest = ingest_flow(paths=paths, feedback_paths=feedback_paths or [], agent=agent)
    return {"ingest": ingest}
