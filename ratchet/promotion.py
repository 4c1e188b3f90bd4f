"""Acting on the gate: promote, reject, force, roll back, step a rollout; each with its audit.

Every function takes the caller's session, so the state change and its audit record
(``promotion_decisions``) commit together in the caller's one transaction
(``with factory() as s, s.begin():``): a crash leaves both or neither. The audit keeps who
decided (``RATCHET_USER``, else the flow or CLI), when (the row's time), the gate's rules with
their numbers, and the lineage that led there: the candidate's training run, the dataset version
it trained on and what that was made from (feedback and interaction parts), and the eval runs.

A rejection changes nothing but the candidate's status: production keeps serving untouched.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ratchet.db import repo
from ratchet.db.errors import InvalidTransitionError
from ratchet.db.repo import Decision
from ratchet.gates import Comparison, GateReport, GatesConfig, comparison_from_results
from ratchet.routing import next_share
from ratchet.store import Store

log = logging.getLogger(__name__)

MAX_REFS = 20


class PromotionError(RuntimeError):
    """The promotion cannot be decided (no evaluation against production, unknown version)."""


@dataclass(frozen=True)
class Evaluated:
    """The gate's input and where it came from: both eval runs and the comparison rows."""

    comparison: Comparison
    candidate_eval_run: str
    baseline_eval_run: str
    table: list[dict[str, Any]]  # the evaluation's comparison rows (subset, metric, intervals)


def find_evaluation(
    store: Store,
    session: Session,
    candidate_id: str,
    gates: GatesConfig,
    *,
    eval_run: str | None = None,
) -> Evaluated | None:
    """The newest completed evaluation of the candidate against the agent's *current*
    production (or the named candidate ``eval_run``), converted for the gate; None when there is
    none (the candidate must be evaluated first)."""
    import json

    from ratchet.evaluation.evaluate import comparison_path, read_results

    cand = repo.get_model_version(session, candidate_id)
    prod = repo.production_version(session, cand.agent_id)
    if eval_run is not None:
        run = repo.get_eval_run(session, eval_run)
        if run.model_version_id != candidate_id:
            raise PromotionError(f"eval run {eval_run!r} is not a run of {candidate_id!r}")
        runs = [run]
    else:
        runs = repo.list_eval_runs(session, model_version_id=candidate_id, status="completed")
    for run in runs:
        path = comparison_path(run.id)
        if run.status != "completed" or not store.exists(path):
            continue
        doc = json.loads(store.read_bytes(path))
        if prod is None or doc.get("baseline") != prod.id:
            continue  # measured against a version that no longer serves
        base_run = repo.get_eval_run(session, doc["baseline_eval_run_id"])
        if not run.results_path or not base_run.results_path:
            continue
        comp = comparison_from_results(
            read_results(store, run.results_path),
            read_results(store, base_run.results_path),
            config=gates,
            candidate_id=candidate_id,
            baseline_id=prod.id,
        )
        return Evaluated(comp, run.id, base_run.id, list(doc.get("rows") or []))
    return None


@dataclass(frozen=True)
class Outcome:
    """What was done: ``promote``, ``reject``, ``rollback``, ``rollout`` or ``none`` (dry run)."""

    action: str
    agent_id: str
    candidate_id: str
    baseline_id: str | None
    passed: bool | None
    reasons: tuple[str, ...]
    decision_id: str | None = None
    traffic_share: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "action": self.action,
            "agent": self.agent_id,
            "candidate": self.candidate_id,
            "baseline": self.baseline_id,
            "passed": self.passed,
            "reasons": list(self.reasons),
            "decision": self.decision_id,
            "traffic_share": self.traffic_share,
        }


def lineage(session: Session, candidate_id: str, eval_runs: Sequence[str] = ()) -> dict[str, Any]:
    """The datasets and feedback that led to a candidate: ids, counts and store paths only."""
    cand = repo.get_model_version(session, candidate_id)
    out: dict[str, Any] = {
        "candidate": cand.id,
        "parent": cand.parent_id,
        "training_run": cand.training_run_id,
        "eval_runs": list(eval_runs),
    }
    if cand.training_run_id is None:
        return out
    run = repo.get_training_run(session, cand.training_run_id)
    out["strategy"] = run.training_type
    out["backend"] = run.backend
    if run.dataset_version_id is None:
        return out
    ds = repo.get_dataset_version(session, run.dataset_version_id)
    refs = repo.dataset_lineage(session, ds.id)
    out["dataset"] = {
        "version": ds.id,
        "kind": ds.kind,
        "rows": ds.rows,
        "made_from": dict(Counter(kind for kind, _ in refs)),
        "refs": [f"{kind}:{ref}" for kind, ref in refs[:MAX_REFS]],
    }
    return out


def _audit(
    report: GateReport | None, lineage_: Mapping[str, Any], extra: Mapping[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "gate": report.as_dict() if report is not None else None,
        "lineage": dict(lineage_),
        **dict(extra or {}),
    }


def decide(
    session: Session,
    report: GateReport,
    *,
    decided_by: str,
    flow_run_id: str | None = None,
    eval_runs: Sequence[str] = (),
    dry_run: bool = False,
) -> Outcome:
    """Promote the candidate when the gate passed, else reject it with the failed rules as
    reasons. ``dry_run``: decide and say so, change nothing, record nothing."""
    cand = repo.get_model_version(session, report.candidate_id)
    current = repo.production_version(session, cand.agent_id)
    baseline_id = current.id if current is not None else None
    if report.baseline_id is not None and report.baseline_id != baseline_id:
        raise InvalidTransitionError(
            f"the gate compared {report.candidate_id!r} with {report.baseline_id!r}, but "
            f"production is {baseline_id!r}: evaluate again against production"
        )
    action = "promote" if report.passed else "reject"
    reasons = tuple(report.reasons) or ("every gated rule passed",)
    if dry_run:
        log.info("dry run: %s would be %sd", cand.id, action)
        return Outcome("none", cand.agent_id, cand.id, baseline_id, report.passed, reasons)
    decision = Decision(
        decided_by=decided_by,
        passed=report.passed,
        reasons=reasons,
        gate_results=_audit(report, lineage(session, cand.id, eval_runs)),
        flow_run_id=flow_run_id,
    )
    fn = repo.promote if report.passed else repo.reject
    row = fn(session, cand.id, decision)
    log.info(
        "%s %s (baseline %s)", "promoted" if report.passed else "rejected", cand.id, baseline_id
    )
    return Outcome(
        action,
        cand.agent_id,
        cand.id,
        baseline_id,
        report.passed,
        reasons,
        row.id,
        1.0 if report.passed else 0.0,
    )


def force_promote(
    session: Session,
    candidate_id: str,
    *,
    reason: str,
    decided_by: str,
    report: GateReport | None = None,
    flow_run_id: str | None = None,
    eval_runs: Sequence[str] = (),
) -> Outcome:
    """Promote whatever the gate said, recording the operator's reason (required) and the gate's
    verdict as it was (``passed`` False when it failed, so the audit shows the override)."""
    if not reason.strip():
        raise ValueError("a forced promotion needs a reason (--reason)")
    cand = repo.get_model_version(session, candidate_id)
    passed = report.passed if report is not None else False
    reasons = (
        f"forced: {reason.strip()}",
        *(report.reasons if report is not None else ("no gate result",)),
    )
    decision = Decision(
        decided_by=decided_by,
        passed=passed,
        reasons=reasons,
        flow_run_id=flow_run_id,
        gate_results=_audit(
            report,
            lineage(session, cand.id, eval_runs),
            {"forced": True, "force_reason": reason.strip()},
        ),
    )
    row = repo.promote(session, cand.id, decision)
    log.warning(
        "forced promotion of %s (gate %s)", cand.id, "passed" if passed else "failed or absent"
    )
    return Outcome("promote", cand.agent_id, cand.id, row.baseline_id, passed, reasons, row.id, 1.0)


def roll_back(
    session: Session,
    agent_id: str,
    *,
    decided_by: str,
    to: str | None = None,
    reason: str | None = None,
) -> Outcome:
    """Restore the previous production version (or ``to``); the demoted one is retired."""
    reasons = (reason.strip(),) if reason and reason.strip() else ("rollback",)
    row = repo.rollback(
        session, agent_id, Decision(decided_by=decided_by, reasons=reasons, gate_results={}), to=to
    )
    log.info("agent %s rolled back to %s (from %s)", agent_id, row.candidate_id, row.baseline_id)
    return Outcome(
        "rollback", agent_id, row.candidate_id, row.baseline_id, None, reasons, row.id, 1.0
    )


def advance_rollout(
    session: Session,
    report: GateReport,
    shares: Sequence[float],
    *,
    decided_by: str,
    flow_run_id: str | None = None,
    eval_runs: Sequence[str] = (),
) -> Outcome:
    """One rollout step: a candidate that passed the gate gets the next traffic share; the step
    to 1.0 is its promotion (with the audit record). A failed gate rejects it as :func:`decide`."""
    if not report.passed:
        return decide(
            session, report, decided_by=decided_by, flow_run_id=flow_run_id, eval_runs=eval_runs
        )
    cand = repo.get_model_version(session, report.candidate_id)
    share = next_share(cand.traffic_share, shares)
    if share >= 1.0:
        return decide(
            session, report, decided_by=decided_by, flow_run_id=flow_run_id, eval_runs=eval_runs
        )
    repo.set_traffic_share(session, cand.id, share)
    current = repo.production_version(session, cand.agent_id)
    log.info("candidate %s now serves %.0f%% of users", cand.id, share * 100)
    return Outcome(
        "rollout",
        cand.agent_id,
        cand.id,
        current.id if current else None,
        True,
        (f"rollout step: {share:.0%} of users",),
        None,
        share,
    )


def metric_history(
    session: Session,
    agent_id: str,
    metrics: Sequence[str] = ("pass_rate", "token_f1"),
    subset: str = "holdout",
    limit: int = 20,
) -> list[dict[str, Any]]:
    """Per model version of the agent (oldest first), its newest completed eval run's means
    with intervals on ``subset``: the metric history an operator reads in the weekly report."""
    out = []
    for v in reversed(repo.list_model_versions(session, agent_id)[:limit]):
        runs = repo.list_eval_runs(session, model_version_id=v.id, status="completed", limit=1)
        if not runs:
            continue
        values = {
            m.metric: m
            for m in repo.eval_metrics(session, runs[0].id)
            if m.subset == subset and m.metric in metrics
        }
        out.append(
            {
                "version": v.id,
                "status": v.status,
                "backend": v.backend,
                "created": v.created_at.isoformat(),
                "eval_run": runs[0].id,
                "metrics": {
                    k: {"value": m.value, "ci_low": m.ci_low, "ci_high": m.ci_high, "n": m.n}
                    for k, m in values.items()
                },
            }
        )
    return out
