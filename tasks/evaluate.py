"""Prefect task wrapper for evaluation: one task run per evaluation (candidate and baseline).

It resolves its services from settings, calls the core (:func:`ratchet.evaluation.evaluate.
evaluate`: answer or replay, score, write results, record the runs and their metrics) and returns
the value-free report (ids, counts, paths, the comparison rows). Answers are cached in the store
on (model version, input hash), so a retry of a transient failure pays only for what was not
answered yet. ``NO_CACHE``: Prefect must not persist a result, whatever it holds.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ratchet.config import PipelineConfig
from ratchet.evaluation.evaluate import EvalContext, EvalRequest, evaluate
from ratchet.redaction import Redactor
from tasks import runtime


@task(
    name="evaluate-models",
    task_run_name="evaluate-{candidate}",
    cache_policy=NO_CACHE,
    retries=runtime.RETRIES,
    retry_delay_seconds=runtime.RETRY_DELAYS,
    retry_jitter_factor=runtime.RETRY_JITTER,
    retry_condition_fn=runtime.retry_transient,
)
def evaluate_task(
    candidate: str,
    baseline: str | None,
    suites: list[str],
    config: PipelineConfig,
    flow_run_id: str | None,
) -> dict[str, Any]:
    """Evaluate ``candidate`` (against ``baseline``) on ``suites``; returns the report."""
    s = runtime.settings()
    redactor = Redactor(config.redaction)
    ctx = EvalContext(
        store=runtime.store(s),
        sessions=runtime.sessions(s),
        config=config,
        settings=s,
        redact=lambda text: redactor.redact_text(text)[0],
        flow_run_id=flow_run_id,
    )
    return evaluate(ctx, EvalRequest(candidate, baseline, tuple(suites)))
