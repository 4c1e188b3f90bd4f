"""The promote flow: judge a candidate against production, then promote or reject it (``promote``).

Steps, one task each (:mod:`tasks.promote`): ``gate-candidate`` reads the candidate's newest
evaluation against the *current* production (``ratchet evaluate`` made it) and judges every rule
of ``gates.yaml``; ``decide-promotion`` promotes (the gate passed), rejects with the failed
rules as reasons (production untouched), steps the rollout share (``rollout``), or, with
``force`` and a ``reason``, promotes whatever the gate said and records why. ``dry_run``
decides and records nothing. Artifacts: ``promote-gate`` (table: each rule, pass/fail and its
numbers) and ``promote-decision`` (markdown: the decision, its reasons, the comparison table
with intervals). Who decided: ``RATCHET_USER``, else ``ratchet``.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from ratchet.gates import load_gates
from ratchet.settings import get_settings
from tasks import runtime
from tasks.promote import decide_promotion_task, gate_candidate_task


def _run_name() -> str:
    p = flow_run.parameters or {}
    mode = "force" if p.get("force") else "dry-run" if p.get("dry_run") else "gate"
    return f"promote-{p.get('candidate', '')}-{mode}"


def _fmt(x: Any) -> str:
    return f"{x:+.4f}" if isinstance(x, float) else str(x)


def comparison_markdown(
    table: list[dict[str, Any]],
    subsets: tuple[str, ...] = (
        "holdout",
        "holdout/kind=golden",
        "holdout/kind=regression",
        "fix_check",
    ),
) -> list[str]:
    """The evaluation's comparison rows as a markdown table: means and paired differences with
    their intervals, the gate's subsets first."""
    rows = [r for r in table if r.get("subset") in subsets]
    rows.sort(key=lambda r: (subsets.index(r["subset"]), r["metric"]))
    lines = [
        "| subset | metric | n | baseline | candidate | difference [interval] |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        b, c, d = r["baseline"], r["candidate"], r["difference"]
        lines.append(
            f"| {r['subset']} | {r['metric']} | {r['n']} | {b['value']:.4f} | "
            f"{c['value']:.4f} | {d['value']:+.4f} [{d['ci_low']:+.4f}, "
            f"{d['ci_high']:+.4f}] |"
        )
    return lines if rows else ["(no comparison rows)"]


def decision_markdown(gated: dict[str, Any] | None, outcome: dict[str, Any]) -> str:
    """The decision, its reasons, every rule with its numbers, and the comparison table."""
    lines = [
        f"# Promotion decision: {outcome['candidate']}",
        "",
        f"- action: **{outcome['action']}** (agent {outcome['agent']}, baseline "
        f"{outcome['baseline'] or 'none'})",
        f"- gate passed: {outcome['passed']}",
        "",
        "## Reasons",
        "",
    ]
    lines += [f"- {r}" for r in outcome["reasons"]]
    if gated is not None:
        lines += [
            "",
            "## Gate rules",
            "",
            "| rule | gated | result | detail |",
            "|---|---|---|---|",
        ]
        lines += [
            f"| {r['rule']} | {'yes' if r['gated'] else 'no (reported)'} | "
            f"{'pass' if r['passed'] else 'FAIL'} | {r['detail']} |"
            for r in gated["gate"]["rules"]
        ]
        lines += [
            "",
            f"## Comparison ({gated['n_cases']} paired holdout cases; eval runs "
            f"{gated['candidate_eval_run']} vs {gated['baseline_eval_run']})",
            "",
        ]
        lines += comparison_markdown(gated.get("table") or [])
    return "\n".join(lines)


@flow(name="promote", flow_run_name=_run_name, log_prints=False)
def promote_flow(
    candidate: str,
    eval_run: str | None = None,
    force: bool = False,
    reason: str | None = None,
    rollout: bool = False,
    dry_run: bool = False,
    gate_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Gate ``candidate`` against production and act (see the module docstring). Returns the
    decision: action (promote | reject | rollout | none), reasons, and the gate's rules."""
    runtime.route_core_logs()
    logger = get_run_logger()
    if force and not (reason or "").strip():
        raise ValueError("a forced promotion needs --reason")
    settings = get_settings()
    gates = load_gates(settings.config_dir, gate_overrides)
    gated = gate_candidate_task(candidate, gates, eval_run=eval_run, required=not force)
    if gated is not None:
        create_table_artifact(
            key="promote-gate",
            description=f"Gate rules for {candidate}",
            table=[
                {
                    "rule": r["rule"],
                    "gated": r["gated"],
                    "passed": r["passed"],
                    "detail": r["detail"],
                }
                for r in gated["gate"]["rules"]
            ],
        )
    outcome = decide_promotion_task(
        candidate,
        gated,
        gates,
        decided_by=settings.user or "ratchet",
        force=force,
        reason=reason,
        rollout=rollout,
        dry_run=dry_run,
        flow_run_id=str(flow_run.id) if flow_run.id else None,
    )
    create_markdown_artifact(
        key="promote-decision",
        markdown=decision_markdown(gated, outcome),
        description=f"{outcome['action']}: {candidate}",
    )
    logger.info(
        "candidate %s: %s (%s)", candidate, outcome["action"], "; ".join(outcome["reasons"])
    )
    return {
        **outcome,
        "gate": gated["gate"] if gated else None,
        "eval_runs": [gated["candidate_eval_run"], gated["baseline_eval_run"]] if gated else [],
    }
