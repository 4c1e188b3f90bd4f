"""Training runs, model versions and promotion decisions.

One production version per agent is enforced by the database (a partial unique index), and
every promotion or rollback writes its audit record in the same transaction.

Functions take the caller's session (see :mod:`ratchet.db.repo`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ratchet.db._common import (
    _check,
    _get,
    _is_unique_violation,
)
from ratchet.db.errors import (
    InvalidTransitionError,
    ProductionConflictError,
)
from ratchet.db.models import (
    DECISION_ACTIONS,
    RUN_STATUSES,
    TERMINAL_RUN_STATUSES,
    TRAINING_TYPES,
    ModelVersion,
    PromotionDecision,
    TrainingRun,
    new_id,
    utcnow,
)


# ===================================================================== training runs ==============
def create_training_run(
    session: Session,
    *,
    agent_id: str,
    training_type: str,
    backend: str,
    base_model_version: str,
    created_by: str,
    dataset_version_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    notes: str | None = None,
    run_id: str | None = None,
) -> TrainingRun:
    """Write the training record (``pending``) *before* submitting a job; tag the job with its id."""
    _check(training_type, TRAINING_TYPES, "training_type")
    row = TrainingRun(
        id=run_id or new_id(),
        agent_id=agent_id,
        training_type=training_type,
        backend=backend,
        base_model_version=base_model_version,
        created_by=created_by,
        dataset_version_id=dataset_version_id,
        parameters=dict(parameters or {}),
        metrics={},
        artifacts={},
        status="pending",
        notes=notes,
    )
    session.add(row)
    session.flush()
    return row


def update_training_run(
    session: Session,
    run_id: str,
    *,
    status: str | None = None,
    external_job_id: str | None = None,
    metrics: Mapping[str, Any] | None = None,
    artifacts: Mapping[str, Any] | None = None,
    cost_usd: float | None = None,
    notes: str | None = None,
    error: str | None = None,
) -> TrainingRun:
    """Update a training run; a finished run (completed/failed/cancelled) cannot change status.

    Entering ``in_progress`` stamps ``started_at``; a terminal status stamps ``completed_at``.
    ``metrics`` and ``artifacts`` are merged into what is stored.
    """
    row = _get(session, TrainingRun, run_id)
    if status is not None and status != row.status:
        _check(status, RUN_STATUSES, "training run status")
        if row.status in TERMINAL_RUN_STATUSES:
            raise InvalidTransitionError(
                f"training run {run_id!r} is {row.status}; it cannot become {status}"
            )
        row.status = status
        if status == "in_progress" and row.started_at is None:
            row.started_at = utcnow()
        if status in TERMINAL_RUN_STATUSES:
            row.completed_at = utcnow()
    if external_job_id is not None:
        row.external_job_id = external_job_id
    if metrics:
        row.metrics = {**row.metrics, **metrics}
    if artifacts:
        row.artifacts = {**row.artifacts, **artifacts}
    if cost_usd is not None:
        row.cost_usd = cost_usd
    if notes is not None:
        row.notes = notes
    if error is not None:
        row.error = error
    session.flush()
    return row


def get_training_run(session: Session, run_id: str) -> TrainingRun:
    """The training run, or :class:`NotFoundError`."""
    return _get(session, TrainingRun, run_id)


def find_training_runs(
    session: Session,
    *,
    agent_id: str,
    dataset_version_id: str | None,
    training_type: str,
    backend: str,
    base_model_version: str,
) -> list[TrainingRun]:
    """Runs of the same dataset, strategy, backend and base, newest first (the caller compares
    parameters): what makes a rerun reuse a finished model or resume an unfinished job."""
    stmt = select(TrainingRun).where(
        TrainingRun.agent_id == agent_id,
        TrainingRun.dataset_version_id == dataset_version_id,
        TrainingRun.training_type == training_type,
        TrainingRun.backend == backend,
        TrainingRun.base_model_version == base_model_version,
    )
    return list(session.execute(stmt.order_by(TrainingRun.created_at.desc())).scalars())


def list_training_runs(
    session: Session, *, agent_id: str | None = None, since: datetime | None = None
) -> list[TrainingRun]:
    """Training runs (of one agent, created at or after ``since``), newest first."""
    stmt = select(TrainingRun)
    if agent_id is not None:
        stmt = stmt.where(TrainingRun.agent_id == agent_id)
    if since is not None:
        stmt = stmt.where(TrainingRun.created_at >= since)
    return list(session.execute(stmt.order_by(TrainingRun.created_at.desc())).scalars())


def training_spend_since(
    session: Session, since: datetime, *, exclude_run_id: str | None = None
) -> float:
    """USD recorded on training runs created at or after ``since`` (a monthly budget's spend)."""
    stmt = select(func.coalesce(func.sum(TrainingRun.cost_usd), 0.0)).where(
        TrainingRun.created_at >= since
    )
    if exclude_run_id is not None:
        stmt = stmt.where(TrainingRun.id != exclude_run_id)
    return float(session.execute(stmt).scalar_one() or 0.0)


def model_version_of_run(session: Session, run_id: str) -> ModelVersion | None:
    """The model version a training run produced, if it produced one."""
    stmt = select(ModelVersion).where(ModelVersion.training_run_id == run_id).limit(1)
    return session.execute(stmt).scalar_one_or_none()


# ===================================================================== model versions =============
def create_model_version(
    session: Session,
    *,
    agent_id: str,
    backend: str,
    model_ref: str,
    system_prompt: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    parent_id: str | None = None,
    training_run_id: str | None = None,
    status: str = "candidate",
    traffic_share: float = 0.0,
    version_id: str | None = None,
) -> ModelVersion:
    """Add a model version, a ``candidate`` by default.

    Creating one directly as ``production`` is for bootstrapping an agent's first version (the
    database refuses a second one with :class:`ProductionConflictError`); later changes of
    production go through :func:`promote` so they leave an audit record.
    """
    if status not in ("candidate", "production"):
        raise ValueError("a new model version is a candidate (or the first production)")
    _check_share(traffic_share)
    now = utcnow()
    row = ModelVersion(
        id=version_id or new_id(),
        agent_id=agent_id,
        backend=backend,
        model_ref=model_ref,
        system_prompt=system_prompt,
        parameters=dict(parameters or {}),
        status=status,
        traffic_share=1.0 if status == "production" else traffic_share,
        parent_id=parent_id,
        training_run_id=training_run_id,
        created_at=now,
        promoted_at=now if status == "production" else None,
    )
    session.add(row)
    _flush_production(session, agent_id)
    return row


def _check_share(share: float) -> None:
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"traffic_share must be within [0, 1], got {share}")


def _flush_production(session: Session, agent_id: str) -> None:
    try:
        session.flush()
    except IntegrityError as exc:
        if _is_unique_violation(exc, "ux_model_versions_one_production"):
            raise ProductionConflictError(
                f"agent {agent_id!r} already has a production model version"
            ) from exc
        raise


def get_model_version(session: Session, version_id: str) -> ModelVersion:
    """The model version, or :class:`NotFoundError`."""
    return _get(session, ModelVersion, version_id)


def production_version(
    session: Session, agent_id: str, *, lock: bool = False
) -> ModelVersion | None:
    """The agent's production model version, if any (``lock``: SELECT ... FOR UPDATE on PostgreSQL)."""
    stmt = select(ModelVersion).where(
        ModelVersion.agent_id == agent_id, ModelVersion.status == "production"
    )
    if lock:
        stmt = stmt.with_for_update()
    return session.execute(stmt).scalar_one_or_none()


def list_model_versions(
    session: Session, agent_id: str, *, status: str | None = None
) -> list[ModelVersion]:
    """An agent's model versions, newest first."""
    stmt = select(ModelVersion).where(ModelVersion.agent_id == agent_id)
    if status is not None:
        stmt = stmt.where(ModelVersion.status == status)
    return list(session.execute(stmt.order_by(ModelVersion.created_at.desc())).scalars())


def set_traffic_share(session: Session, version_id: str, share: float) -> ModelVersion:
    """Set a candidate's rollout share (10 → 50 → 100 %); production keeps the rest implicitly."""
    _check_share(share)
    row = _get(session, ModelVersion, version_id)
    if row.status not in ("candidate", "production"):
        raise InvalidTransitionError(f"model version {version_id!r} is {row.status}; no traffic")
    row.traffic_share = share
    session.flush()
    return row


@dataclass(frozen=True, slots=True)
class Decision:
    """Who decided and why; the fields every promotion decision records."""

    decided_by: str
    passed: bool = True
    reasons: Sequence[str] = ()
    gate_results: Mapping[str, Any] = field(default_factory=dict)
    flow_run_id: str | None = None


def _record_decision(
    session: Session,
    *,
    agent_id: str,
    candidate_id: str,
    baseline_id: str | None,
    action: str,
    decision: Decision,
) -> PromotionDecision:
    _check(action, DECISION_ACTIONS, "decision action")
    row = PromotionDecision(
        agent_id=agent_id,
        candidate_id=candidate_id,
        baseline_id=baseline_id,
        action=action,
        passed=decision.passed,
        reasons=list(decision.reasons),
        gate_results=dict(decision.gate_results),
        decided_by=decision.decided_by,
        flow_run_id=decision.flow_run_id,
    )
    session.add(row)
    session.flush()
    return row


def promote(session: Session, candidate_id: str, decision: Decision) -> PromotionDecision:
    """Make a candidate the agent's production version, retiring the current one, with an audit row.

    The previous production is retired first, then the candidate is promoted in the same
    transaction; a concurrent promotion for the same agent is refused by the partial unique
    index (:class:`ProductionConflictError`). ``decision.passed`` is recorded as given (a manual
    promotion may override a failed gate, and says so).
    """
    cand = _get(session, ModelVersion, candidate_id)
    if cand.status != "candidate":
        raise InvalidTransitionError(
            f"model version {candidate_id!r} is {cand.status}, not a candidate"
        )
    current = production_version(session, cand.agent_id, lock=True)
    now = utcnow()
    if current is not None:
        current.status = "retired"
        current.traffic_share = 0.0
        current.retired_at = now
        session.flush()
    cand.status = "production"
    cand.traffic_share = 1.0
    cand.promoted_at = now
    _flush_production(session, cand.agent_id)
    return _record_decision(
        session,
        agent_id=cand.agent_id,
        candidate_id=cand.id,
        baseline_id=current.id if current is not None else None,
        action="promote",
        decision=decision,
    )


def reject(session: Session, candidate_id: str, decision: Decision) -> PromotionDecision:
    """Reject a candidate (it will never serve), with an audit row naming the baseline it lost to."""
    cand = _get(session, ModelVersion, candidate_id)
    if cand.status != "candidate":
        raise InvalidTransitionError(
            f"model version {candidate_id!r} is {cand.status}, not a candidate"
        )
    current = production_version(session, cand.agent_id)
    cand.status = "rejected"
    cand.traffic_share = 0.0
    session.flush()
    return _record_decision(
        session,
        agent_id=cand.agent_id,
        candidate_id=cand.id,
        baseline_id=current.id if current is not None else None,
        action="reject",
        decision=decision,
    )


def rollback(
    session: Session, agent_id: str, decision: Decision, *, to: str | None = None
) -> PromotionDecision:
    """Restore the production version that the current one replaced; audit row ``rollback``.

    The version to restore is the baseline of the last ``promote`` decision that made the current
    version production, so repeated rollbacks walk back through history (they do not toggle). The demoted version becomes ``retired``; the decision names the restored version
    as ``candidate_id`` and the demoted one as ``baseline_id``. ``to`` names the version to
    restore instead: a ``retired`` version of the same agent (one that served before).
    """
    current = production_version(session, agent_id, lock=True)
    if current is None:
        raise InvalidTransitionError(f"agent {agent_id!r} has no production version to roll back")
    if to is not None:
        target = _get(session, ModelVersion, to)
        if target.agent_id != agent_id or target.status != "retired":
            raise InvalidTransitionError(
                f"model version {to!r} is not a retired version of agent {agent_id!r}"
            )
        return _restore(session, agent_id, current, target, decision)
    last_promotion = session.execute(
        select(PromotionDecision)
        .where(
            PromotionDecision.agent_id == agent_id,
            PromotionDecision.candidate_id == current.id,
            PromotionDecision.action == "promote",
        )
        .order_by(PromotionDecision.decided_at.desc())
        .limit(1)
    ).scalar_one_or_none()
    previous_id = last_promotion.baseline_id if last_promotion is not None else None
    if previous_id is None:
        raise InvalidTransitionError(
            f"agent {agent_id!r}: production version {current.id!r} replaced nothing"
        )
    return _restore(session, agent_id, current, _get(session, ModelVersion, previous_id), decision)


def _restore(
    session: Session,
    agent_id: str,
    current: ModelVersion,
    previous: ModelVersion,
    decision: Decision,
) -> PromotionDecision:
    now = utcnow()
    current.status = "retired"
    current.traffic_share = 0.0
    current.retired_at = now
    session.flush()
    previous.status = "production"
    previous.traffic_share = 1.0
    previous.promoted_at = now
    previous.retired_at = None
    _flush_production(session, agent_id)
    return _record_decision(
        session,
        agent_id=agent_id,
        candidate_id=previous.id,
        baseline_id=current.id,
        action="rollback",
        decision=decision,
    )


def list_decisions(session: Session, agent_id: str, *, limit: int = 50) -> list[PromotionDecision]:
    """An agent's promotion decisions, newest first (the audit trail)."""
    stmt = (
        select(PromotionDecision)
        .where(PromotionDecision.agent_id == agent_id)
        .order_by(PromotionDecision.decided_at.desc())
        .limit(limit)
    )
    return list(session.execute(stmt).scalars())
