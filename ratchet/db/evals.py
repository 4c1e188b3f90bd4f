"""Evaluation runs and their metrics.

Functions take the caller's session (see :mod:`ratchet.db.repo`)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import NamedTuple

from sqlalchemy import insert, select
from sqlalchemy.orm import Session

from ratchet.db._common import (
    _check,
    _get,
)
from ratchet.db.errors import (
    InvalidTransitionError,
)
from ratchet.db.models import (
    TERMINAL_RUN_STATUSES,
    EvalMetric,
    EvalRun,
    new_id,
    utcnow,
)


# ===================================================================== eval runs ==================
class MetricValue(NamedTuple):
    """One aggregate metric with its confidence interval."""

    metric: str
    value: float
    n: int
    ci_low: float | None = None
    ci_high: float | None = None
    subset: str = "all"


def create_eval_run(
    session: Session,
    *,
    agent_id: str,
    model_version_id: str,
    dataset_version_id: str | None = None,
    flow_run_id: str | None = None,
    run_id: str | None = None,
) -> EvalRun:
    """Start an eval run (``in_progress``)."""
    row = EvalRun(
        id=run_id or new_id(),
        agent_id=agent_id,
        model_version_id=model_version_id,
        dataset_version_id=dataset_version_id,
        status="in_progress",
        n_cases=0,
        flow_run_id=flow_run_id,
    )
    session.add(row)
    session.flush()
    return row


def finish_eval_run(
    session: Session,
    run_id: str,
    *,
    status: str = "completed",
    n_cases: int,
    cost_usd: float | None = None,
    results_path: str | None = None,
    metrics: Iterable[MetricValue] = (),
    error: str | None = None,
) -> EvalRun:
    """Finish an eval run with its metrics; a finished run cannot be finished again."""
    _check(status, TERMINAL_RUN_STATUSES, "eval run final status")
    row = _get(session, EvalRun, run_id)
    if row.status in TERMINAL_RUN_STATUSES:
        raise InvalidTransitionError(f"eval run {run_id!r} is already {row.status}")
    row.status = status
    row.n_cases = n_cases
    row.cost_usd = cost_usd
    row.results_path = results_path
    row.completed_at = utcnow()
    row.error = error
    session.flush()
    add_eval_metrics(session, run_id, metrics)
    return row


def eval_metrics(session: Session, run_id: str) -> list[MetricValue]:
    """An eval run's metrics, sorted by subset then metric."""
    stmt = (
        select(EvalMetric)
        .where(EvalMetric.eval_run_id == run_id)
        .order_by(EvalMetric.subset, EvalMetric.metric)
    )
    return [
        MetricValue(m.metric, m.value, m.n, m.ci_low, m.ci_high, m.subset)
        for m in session.execute(stmt).scalars()
    ]


def get_eval_run(session: Session, run_id: str) -> EvalRun:
    """The eval run, or :class:`NotFoundError`."""
    return _get(session, EvalRun, run_id)


def list_eval_runs(
    session: Session,
    *,
    agent_id: str | None = None,
    model_version_id: str | None = None,
    status: str | None = None,
    limit: int = 100,
) -> list[EvalRun]:
    """Eval runs, newest first (candidate-only replay reads a model's completed ones)."""
    stmt = select(EvalRun)
    if agent_id is not None:
        stmt = stmt.where(EvalRun.agent_id == agent_id)
    if model_version_id is not None:
        stmt = stmt.where(EvalRun.model_version_id == model_version_id)
    if status is not None:
        stmt = stmt.where(EvalRun.status == status)
    stmt = stmt.order_by(EvalRun.started_at.desc(), EvalRun.id.desc()).limit(limit)
    return list(session.execute(stmt).scalars())


def add_eval_metrics(session: Session, run_id: str, metrics: Iterable[MetricValue]) -> None:
    """Add metrics to a finished run (the paired ``delta:<metric>`` rows the comparison with a
    baseline gives the candidate's run once the baseline has run too)."""
    _get(session, EvalRun, run_id)
    values = [
        {
            "eval_run_id": run_id,
            "subset": m.subset,
            "metric": m.metric,
            "value": m.value,
            "ci_low": m.ci_low,
            "ci_high": m.ci_high,
            "n": m.n,
        }
        for m in metrics
    ]
    if values:
        session.execute(insert(EvalMetric), values)
