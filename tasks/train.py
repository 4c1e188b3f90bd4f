"""Prefect tasks of the train flow: one per job step (plan, submit, wait, collect), never one
per example.

Each resolves its services from settings on the worker that runs it (trainers come from the
backend registry by name) and passes ids between steps, so a step can run on another worker
(a GPU pool for ``trl``). ``NO_CACHE`` everywhere: a cache policy would persist results, and
a paid step must be decided by the training record, not by a cache. Retries: only for transient
errors (a backend's ``retryable`` error, a database or store hiccup); submitting again is safe
because the record's id tags the job and the trainer finds it before creating one.

:func:`wait_training_task` turns the core's poll callback into the run's artifacts: the
``train-progress`` progress artifact and the ``train-events`` table (events and per-step
train/validation loss), republished as new events arrive.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ratchet.backends.base import BackendError, JobEvent, JobStatus
from ratchet.config import PipelineConfig
from ratchet.training import (
    Plan,
    TrainingContext,
    TrainRequest,
    collect_model,
    make_candidate,
    plan_training,
    reused,
    submit_job,
    wait_for_job,
)
from tasks import runtime

log = logging.getLogger("ratchet.tasks.train")
MAX_EVENT_ROWS = 500  # the events table keeps the newest rows (a long job has thousands)


def context(config: PipelineConfig) -> TrainingContext:
    s = runtime.settings()
    return TrainingContext(
        sessions=runtime.sessions(s), store=runtime.store(s), config=config, settings=s
    )


def retry_backend(task: Any, task_run: Any, state: Any) -> bool:
    """Retry a backend's ``retryable`` errors (rate limit, 5xx) and transient infrastructure."""
    try:
        state.result()
    except BackendError as exc:
        return exc.retryable
    except Exception:
        return runtime.retry_transient(task, task_run, state)
    return False


def _step(name: str, run_name: str | None = None) -> Any:
    """The train steps' task decorator: no cache, retries decided by :func:`retry_backend`."""
    return task(
        name=name,
        task_run_name=run_name,
        cache_policy=NO_CACHE,
        retries=runtime.RETRIES,
        retry_delay_seconds=[float(d) for d in runtime.RETRY_DELAYS],
        retry_jitter_factor=runtime.RETRY_JITTER,
        retry_condition_fn=retry_backend,
    )


@_step("plan-training")
def plan_training_task(request: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """Reuse, resume, or write the training record (before anything is submitted)."""
    plan = plan_training(context(config), TrainRequest(**request))
    return dataclasses.asdict(plan)


@_step("submit-training-job", "submit-{run_id}")
def submit_training_task(run_id: str, config: PipelineConfig) -> str:
    """Submit the record's job once (budgets checked first); returns its external id."""
    return submit_job(context(config), run_id)


class EventTable:
    """The ``train-events`` table artifact: every event once, newest ``MAX_EVENT_ROWS``."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def add(self, events: list[JobEvent]) -> bool:
        for e in events:
            row: dict[str, Any] = {
                "step": e.step if e.step is not None else "",
                "at": e.at,
                "message": e.message[:300],
            }
            for name in (
                "train_loss",
                "valid_loss",
                "validation_loss",
                "train_mean_token_accuracy",
                "valid_mean_token_accuracy",
            ):
                if name in e.metrics:
                    row[name] = round(float(e.metrics[name]), 6)
            for k, v in e.metrics.items():
                row.setdefault(k, round(float(v), 6))
            self.rows.append(row)
        self.rows = self.rows[-MAX_EVENT_ROWS:]
        return bool(events)

    def table(self) -> list[dict[str, Any]]:
        columns: list[str] = []
        for r in self.rows:
            columns += [c for c in r if c not in columns]
        return [{c: r.get(c, "") for c in columns} for r in self.rows]


@_step("wait-for-training-job", "wait-{run_id}")
def wait_training_task(run_id: str, config: PipelineConfig) -> dict[str, Any]:
    """Poll the job until it ends, publishing progress and events; returns the final status
    (state, progress, metrics, trained tokens)."""
    progress = runtime.Progress("train-progress", f"Training run {run_id}: job progress")
    progress.update(0.0, f"train {run_id}: waiting for the job")
    events = EventTable()

    def on_status(status: JobStatus, new: list[JobEvent]) -> None:
        if status.progress is not None:
            progress.update(100.0 * status.progress, f"train {run_id}: {status.state}")
        if events.add(new) and runtime._in_a_run():
            from prefect.artifacts import create_table_artifact

            create_table_artifact(
                key="train-events",
                table=events.table(),
                description=f"Training run {run_id}: job events and metrics",
            )
        for e in new:
            log.info(
                "training run %s: %s%s",
                run_id,
                e.message,
                f" {dict(e.metrics)}" if e.metrics else "",
            )

    status = wait_for_job(context(config), run_id, on_status)
    progress.update(100.0, f"train {run_id}: completed")
    return {
        "state": status.state,
        "metrics": dict(status.metrics),
        "trained_tokens": status.trained_tokens,
        "events": len(events.rows),
    }


def _collected(out: Any) -> dict[str, Any]:
    return dataclasses.asdict(out)


@_step("collect-model", "collect-{run_id}")
def collect_training_task(run_id: str, config: PipelineConfig) -> dict[str, Any]:
    """The candidate model version of a completed job, its cost and its model card."""
    return _collected(collect_model(context(config), run_id))


@_step("make-candidate", "candidate-{run_id}")
def make_candidate_task(run_id: str, config: PipelineConfig) -> dict[str, Any]:
    """``few_shot`` / ``prompt``: the candidate without a job."""
    return _collected(make_candidate(context(config), run_id))


def reused_model(plan: dict[str, Any], config: PipelineConfig) -> dict[str, Any]:
    """What a reused run made (a read; not a task)."""
    return _collected(reused(context(config), Plan(**plan)))
