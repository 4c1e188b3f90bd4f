"""The weekly flow's second half, per agent: train → evaluate → gate → promote, as subflows.

Called by :mod:`flows.weekly` after curate, for each agent curate reported. Per agent:

1. the first weekly run registers the agent's logs model as its first production (the baseline
   every candidate must beat) when the agent has none;
2. ``train`` makes (or reuses) a candidate from the dataset version of the strategy's kind
   that this run's curate made or found (``sft``: sft_examples; ``prompt``: eval_cases first);
3. ``evaluate`` answers the agent's eval suite with candidate and production;
4. ``promote`` judges the gate and promotes or rejects; ``dry_run`` decides and records nothing.

A candidate already decided (a rerun reusing a model that was promoted or rejected) is not
judged again. A stage that fails stops that agent with its reason; the weekly report shows how
far each agent got.
"""

from __future__ import annotations

import logging
from typing import Any

from flows.evaluate import evaluate_flow
from flows.promote import comparison_markdown, promote_flow
from flows.train import train_flow
from flows.weekly import stage_result
from ratchet.config import load_config
from ratchet.settings import get_settings
from ratchet.training import STRATEGY_KINDS
from tasks import runtime
from tasks.promote import ensure_production_task, metric_history_task

log = logging.getLogger("ratchet.flows.weekly")


def pick_dataset(report: dict[str, Any], strategy: str) -> dict[str, Any] | None:
    """The curate report's dataset version the strategy trains on (the first kind it takes)."""
    by_kind = {v["kind"]: v for v in report.get("versions", [])}
    for kind in STRATEGY_KINDS[strategy]:
        if kind in by_kind and by_kind[kind].get("rows", 0) > 0:
            return dict(by_kind[kind])
    return None


def _status_of(version_id: str) -> str:
    from ratchet.db import open_database, repo

    with open_database(get_settings())() as s:
        return str(repo.get_model_version(s, version_id).status)


def improve_agent(
    agent: str,
    curate_report: dict[str, Any],
    *,
    strategy: str | None,
    backend: str | None,
    dry_run: bool,
    agent_concurrency: str | None = None,
) -> dict[str, Any]:
    """:func:`_improve_agent` holding the agent's slot (``runtime.agent_concurrency``, or
    ``agent_concurrency`` when given: the weekly deployment sets ``wait``), so two unattended
    runs never train or promote for the same agent at once. A run that does not get the slot
    records why as the agent's failure (``AgentBusy``: the agent and the limit's name)."""
    runtime_cfg = load_config(get_settings()).runtime
    policy = agent_concurrency or runtime_cfg.agent_concurrency
    try:
        with runtime.agent_slot(agent, policy, runtime_cfg.agent_wait_s):
            return _improve_agent(
                agent, curate_report, strategy=strategy, backend=backend, dry_run=dry_run
            )
    except runtime.AgentBusy as exc:
        return {"agent": agent, "strategy": strategy, "runs": {}, "failure": str(exc)}


def _improve_agent(
    agent: str,
    curate_report: dict[str, Any],
    *,
    strategy: str | None,
    backend: str | None,
    dry_run: bool,
) -> dict[str, Any]:
    """Train, evaluate, gate and promote one agent; returns what happened, stage by stage."""
    config = load_config(get_settings())
    strategy = strategy or config.training.default_strategy
    out: dict[str, Any] = {"agent": agent, "strategy": strategy, "runs": {}, "failure": None}
    runs = out["runs"]
    dataset = pick_dataset(curate_report, strategy)
    if dataset is None:
        out["skipped"] = (
            f"no {' or '.join(STRATEGY_KINDS[strategy])} dataset version with "
            "rows: nothing to train"
        )
        return _history(out)
    out["production"] = ensure_production_task(agent, config)
    out["dataset"] = dataset
    state = train_flow(
        dataset=dataset["version"],
        strategy=strategy,
        backend=backend,
        agent=agent,
        notes="weekly run",
        return_state=True,
    )
    trained, out["failure"] = stage_result("train", state, runs)
    if trained is None:
        return _history(out)
    out["train"] = trained
    candidate = trained["model_version_id"]
    status = _status_of(candidate)
    if status != "candidate":
        out["skipped"] = f"candidate {candidate} was already decided ({status})"
        return _history(out)
    state = evaluate_flow(candidate=candidate, return_state=True)
    evaluated, out["failure"] = stage_result("evaluate", state, runs)
    if evaluated is None:
        return _history(out)
    out["evaluate"] = {
        k: evaluated[k]
        for k in ("suites", "cases", "candidate", "baseline", "comparison")
        if k in evaluated
    }
    state = promote_flow(
        candidate=candidate,
        eval_run=evaluated["candidate"]["eval_run_id"],
        dry_run=dry_run,
        return_state=True,
    )
    out["decision"], out["failure"] = stage_result("promote", state, runs)
    return _history(out)


def _history(out: dict[str, Any]) -> dict[str, Any]:
    out["history"] = metric_history_task(out["agent"])
    return out


def _ci(m: dict[str, Any] | None) -> str:
    if not m:
        return "-"
    low, high = m.get("ci_low"), m.get("ci_high")
    band = f" [{low:.3f}, {high:.3f}]" if low is not None and high is not None else ""
    return f"{m['value']:.3f}{band} (n={m['n']})"


def loop_markdown(results: list[dict[str, Any]], link: Any) -> list[str]:
    """The report's section per agent: candidate, comparison with intervals, metric history
    per model version, and the decision with its reasons."""
    lines: list[str] = []
    for r in results:
        lines += ["", f"## Agent {r['agent']}: train, evaluate, gate", ""]
        prod = r.get("production") or {}
        if prod.get("registered"):
            lines.append(f"- first run: the logs model `{prod['version']}` became production")
        lines.append(
            f"- strategy: {r['strategy']}; dataset: {(r.get('dataset') or {}).get('version', '-')}"
        )
        for stage in ("train", "evaluate", "promote"):
            if stage in r["runs"]:
                lines.append(
                    f"- {stage}: {r['runs'][stage]['state']} {link(r['runs'][stage]['id'])}"
                )
        if r.get("train"):
            t = r["train"]
            lines.append(
                f"- candidate: `{t['model_version_id']}` ({t['action']}, "
                f"{t['backend']}, {t['cost_usd']:.4f} USD)"
            )
        if r.get("skipped"):
            lines.append(f"- skipped: {r['skipped']}")
        if r.get("failure"):
            lines.append(f"- **failed**: {r['failure']}")
        d = r.get("decision")
        if d:
            verb = {
                "none": "dry run: no change",
                "promote": "PROMOTED",
                "reject": "REJECTED",
                "rollout": "rollout step",
            }.get(d["action"], d["action"])
            lines += ["", f"### Decision: {verb} (gate passed: {d['passed']})", ""]
            lines += [f"- {reason}" for reason in d["reasons"]]
            if d.get("gate"):
                lines += ["", "| rule | result | detail |", "|---|---|---|"]
                lines += [
                    f"| {x['rule']}{'' if x['gated'] else ' (reported)'} | "
                    f"{'pass' if x['passed'] else 'FAIL'} | {x['detail']} |"
                    for x in d["gate"]["rules"]
                ]
        ev = r.get("evaluate")
        if ev and ev.get("comparison"):
            lines += ["", f"### Comparison ({ev['cases']} cases)", ""]
            lines += comparison_markdown(ev["comparison"])
        if r.get("history"):
            lines += [
                "",
                "### Metric history (holdout, per model version)",
                "",
                "| version | status | backend | created | pass_rate | token_f1 |",
                "|---|---|---|---|---|---|",
            ]
            lines += [
                f"| {h['version']} | {h['status']} | {h['backend']} | {h['created'][:19]} "
                f"| {_ci(h['metrics'].get('pass_rate'))} | "
                f"{_ci(h['metrics'].get('token_f1'))} |"
                for h in r["history"]
            ]
    return lines
