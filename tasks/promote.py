"""Prefect tasks of the promote flow: judge the candidate, then act on the verdict.

Two steps so a run shows where it stopped: ``gate-candidate`` reads the candidate's evaluation
against production and judges every rule (no writes), ``decide-promotion`` promotes, rejects,
forces or steps the rollout in one database transaction with its audit record. ``NO_CACHE``: a
decision must be taken against the database as it is now, never replayed from a cache.
"""

from __future__ import annotations

import logging
from typing import Any

from prefect import task
from prefect.cache_policies import NO_CACHE

from ratchet.gates import GatesConfig, evaluate_gate
from ratchet.promotion import (
    PromotionError,
    advance_rollout,
    decide,
    find_evaluation,
    force_promote,
)
from tasks import runtime

log = logging.getLogger("ratchet.tasks.promote")


@task(name="gate-candidate", task_run_name="gate-{candidate}", cache_policy=NO_CACHE)
def gate_candidate_task(
    candidate: str, gates: GatesConfig, eval_run: str | None = None, required: bool = True
) -> dict[str, Any] | None:
    """Every gate rule with its numbers, and the comparison table; None when the candidate has
    no evaluation against production and ``required`` is False (a forced promotion)."""
    s = runtime.settings()
    with runtime.sessions(s)() as session:
        found = find_evaluation(runtime.store(s), session, candidate, gates, eval_run=eval_run)
    if found is None:
        if required:
            raise PromotionError(
                f"candidate {candidate!r} has no completed evaluation against the current "
                f"production (run: ratchet evaluate --candidate {candidate})"
            )
        return None
    report = evaluate_gate(found.comparison, gates)
    return {
        "gate": report.as_dict(),
        "candidate_eval_run": found.candidate_eval_run,
        "baseline_eval_run": found.baseline_eval_run,
        "table": found.table,
        "n_cases": found.comparison.n_cases,
    }


@task(name="decide-promotion", task_run_name="decide-{candidate}", cache_policy=NO_CACHE)
def decide_promotion_task(
    candidate: str,
    gated: dict[str, Any] | None,
    gates: GatesConfig,
    *,
    decided_by: str,
    force: bool = False,
    reason: str | None = None,
    rollout: bool = False,
    dry_run: bool = False,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Promote, reject, force or step the rollout, with the audit record, in one transaction."""
    from ratchet.gates import GateReport, RuleResult

    report = None
    eval_runs: list[str] = []
    if gated is not None:
        g = gated["gate"]
        report = GateReport(g["candidate"], g["baseline"], [RuleResult(**r) for r in g["rules"]])
        eval_runs = [gated["candidate_eval_run"], gated["baseline_eval_run"]]
    s = runtime.settings()
    with runtime.sessions(s)() as session, session.begin():
        if force:
            if dry_run:
                raise PromotionError("--force and --dry-run together: nothing to do")
            out = force_promote(
                session,
                candidate,
                reason=reason or "",
                decided_by=decided_by,
                report=report,
                flow_run_id=flow_run_id,
                eval_runs=eval_runs,
            )
        elif report is None:
            raise PromotionError(f"candidate {candidate!r} has no gate result")
        elif rollout and not dry_run:
            out = advance_rollout(
                session,
                report,
                gates.rollout_shares,
                decided_by=decided_by,
                flow_run_id=flow_run_id,
                eval_runs=eval_runs,
            )
        else:
            out = decide(
                session,
                report,
                decided_by=decided_by,
                flow_run_id=flow_run_id,
                eval_runs=eval_runs,
                dry_run=dry_run,
            )
    return out.as_dict()


@task(name="ensure-production", task_run_name="ensure-production-{agent}", cache_policy=NO_CACHE)
def ensure_production_task(agent: str, config: Any) -> dict[str, Any]:
    """The agent's production version; on its first weekly run, the logs model becomes it (the
    agent as its logs show it: the baseline every candidate must beat)."""
    from ratchet.backends.logs import register_logs_model
    from ratchet.db import repo

    s = runtime.settings()
    with runtime.sessions(s)() as session, session.begin():
        prod = repo.production_version(session, agent)
        if prod is not None:
            return {"version": prod.id, "registered": False}
        model = register_logs_model(
            session, runtime.store(s), agent, config.backends, created_by=s.user or "ratchet"
        )
    log.info(
        "agent %s had no production version: the logs model %s now serves", agent, model.version_id
    )
    return {"version": model.version_id, "registered": True}


@task(name="metric-history", task_run_name="metric-history-{agent}", cache_policy=NO_CACHE)
def metric_history_task(agent: str) -> list[dict[str, Any]]:
    """Holdout means with intervals per model version of the agent (the weekly report's table)."""
    from ratchet.promotion import metric_history

    s = runtime.settings()
    with runtime.sessions(s)() as session:
        return metric_history(session, agent)
