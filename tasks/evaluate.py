"""Prefect task wrappers for evaluation.

``evaluate-models``: one task run per evaluation (candidate and baseline, one after the other),
for ``runtime.task_runner: threads``. On a Dask cluster the flow fans out instead: ``plan-
evaluation`` resolves what to run, ``start-eval-run`` records each model's run, one
``evaluate-batch`` task per model and batch of ``runtime.eval_batch_cases`` cases answers and
scores on any worker, and ``finish-evaluation`` joins the batches and compares. Every task
rebuilds its services from settings (a worker is another machine) and passes references: plans,
run ids, batch file paths, never the cases or the answers.

Answers are cached in the store on (model version, input hash), so a retry of a transient
failure (or a batch rerun after its worker died) pays only for what was not answered yet.
``NO_CACHE``: Prefect must not persist a result, whatever it holds.
"""

from __future__ import annotations

from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ratchet.config import PipelineConfig
from ratchet.evaluation import model_run
from ratchet.evaluation.evaluate import (
    EvalContext,
    EvalPlan,
    EvalRequest,
    build_run_scorers,
    compare_runs,
    evaluate,
    model_version,
    plan_cases,
    plan_evaluation,
)
from ratchet.evaluation.model_run import BatchResult
from ratchet.redaction import Redactor
from tasks import runtime

_RETRIES: dict[str, Any] = {
    "retries": runtime.RETRIES,
    "retry_delay_seconds": runtime.RETRY_DELAYS,
    "retry_jitter_factor": runtime.RETRY_JITTER,
    "retry_condition_fn": runtime.retry_transient,
}


def _context(config: PipelineConfig, flow_run_id: str | None) -> EvalContext:
    s = runtime.settings()
    redactor = Redactor(config.redaction)
    return EvalContext(
        store=runtime.store(s),
        sessions=runtime.sessions(s),
        config=config,
        settings=s,
        redact=lambda text: redactor.redact_text(text)[0],
        flow_run_id=flow_run_id,
    )


@task(
    name="evaluate-models", task_run_name="evaluate-{candidate}", cache_policy=NO_CACHE, **_RETRIES
)
def evaluate_task(
    candidate: str,
    baseline: str | None,
    suites: list[str],
    config: PipelineConfig,
    flow_run_id: str | None,
) -> dict[str, Any]:
    """Evaluate ``candidate`` (against ``baseline``) on ``suites``; returns the report."""
    ctx = _context(config, flow_run_id)
    return evaluate(ctx, EvalRequest(candidate, baseline, tuple(suites)))


@task(name="plan-evaluation", cache_policy=NO_CACHE)
def plan_evaluation_task(
    candidate: str,
    baseline: str | None,
    suites: list[str],
    config: PipelineConfig,
    flow_run_id: str | None,
) -> EvalPlan:
    """Which models, which suites, how many cases (raises when it cannot start)."""
    return plan_evaluation(
        _context(config, flow_run_id), EvalRequest(candidate, baseline, tuple(suites))
    )


@task(
    name="start-eval-run", task_run_name="start-eval-run-{model_version_id}", cache_policy=NO_CACHE
)
def start_eval_run_task(
    model_version_id: str, plan: EvalPlan, config: PipelineConfig, flow_run_id: str | None
) -> str:
    ctx = _context(config, flow_run_id)
    return model_run.start_run(ctx, model_version(ctx, model_version_id), plan.suites)


@task(
    name="evaluate-batch",
    task_run_name="evaluate-{model_version_id}-from-{start}",
    cache_policy=NO_CACHE,
    **_RETRIES,
)
def evaluate_batch_task(
    plan: EvalPlan,
    model_version_id: str,
    eval_run_id: str,
    start: int,
    end: int,
    rate_share: float,
    config: PipelineConfig,
    flow_run_id: str | None,
) -> BatchResult:
    """Answer and score cases ``start`` to ``end`` (exclusive) of the plan for one model."""
    ctx = _context(config, flow_run_id)
    cases = plan_cases(ctx, plan)[start:end]
    version = model_version(ctx, model_version_id)
    scorers = build_run_scorers(ctx)
    return model_run.run_batch(ctx, version, eval_run_id, cases, start, scorers, rate_share)


@task(name="finish-evaluation", cache_policy=NO_CACHE)
def finish_evaluation_task(
    plan: EvalPlan,
    runs: dict[str, tuple[str, list[BatchResult]]],
    config: PipelineConfig,
    flow_run_id: str | None,
) -> dict[str, Any]:
    """Join each model's batches into its results and metrics, then compare; the report is
    the one :func:`evaluate_task` returns."""
    ctx = _context(config, flow_run_id)
    done = {
        version_id: model_run.finish_from_batches(ctx, version_id, run_id, batches)
        for version_id, (run_id, batches) in runs.items()
    }
    scorers = {s.name: s.version for s in build_run_scorers(ctx)}
    base = done.get(plan.baseline) if plan.baseline else None
    return compare_runs(ctx, plan, scorers, done[plan.candidate], base)


@task(name="fail-eval-runs", cache_policy=NO_CACHE)
def fail_eval_runs_task(
    eval_run_ids: list[str], reason: str, config: PipelineConfig, flow_run_id: str | None
) -> None:
    """Mark the runs failed (a batch failed for good): the gate never reads half a run."""
    ctx = _context(config, flow_run_id)
    for run_id in eval_run_ids:
        model_run.fail_run(ctx, run_id, reason)
