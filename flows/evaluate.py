"""The evaluate flow (``evaluate``): a candidate and its baseline answer the eval suites.

One task (:func:`tasks.evaluate.evaluate_task`) does the work through the core; the flow loads
and validates the config first and publishes what an operator reads in the UI:

* ``evaluation-comparison`` (table): per subset and metric, baseline and candidate means with
  their confidence intervals and the paired difference (candidate − baseline) with its interval;
  fix checks are their own subset, never part of ``holdout``;
* ``evaluation-summary`` (markdown): the runs, their cases (answered / cached / replayed /
  failed), their cost, and where the per-case results are.

Returns the core's report (ids, counts, paths, comparison rows), which the gate reads.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from ratchet.config import load_config
from ratchet.settings import get_settings
from tasks import runtime
from tasks.evaluate import evaluate_task


def _run_name() -> str:
    p = flow_run.parameters or {}
    return f"evaluate-{p.get('candidate', '')}-vs-{p.get('baseline') or 'none'}"


def _ci(interval: dict[str, Any]) -> str:
    return f"{interval['value']:.3f} [{interval['ci_low']:.3f}, {interval['ci_high']:.3f}]"


def comparison_table(report: dict[str, Any]) -> list[dict[str, Any]]:
    """The comparison rows as the UI table shows them (also used by ``evals show``)."""
    return [
        {
            "subset": r["subset"],
            "metric": r["metric"],
            "n": r["n"],
            "baseline": _ci(r["baseline"]),
            "candidate": _ci(r["candidate"]),
            "difference": _ci(r["difference"]),
        }
        for r in report["comparison"]
    ]


def summary_markdown(report: dict[str, Any]) -> str:
    lines = [
        "# Evaluation",
        "",
        f"Agent `{report['agent']}`, {report['cases']} case(s) from "
        f"suite(s) {', '.join(f'`{s}`' for s in report['suites'])}; primary metric "
        f"`{report['primary_metric']}`.",
        "",
        "| | model version | eval run | answered | cached | replayed | failed | cost (USD) "
        "| results |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for side in ("candidate", "baseline"):
        r = report.get(side)
        if r:
            lines.append(
                f"| {side} | {r['model_version_id']} | {r['eval_run_id']} | "
                f"{r['answered']} | {r['cached']} | {r['replayed']} | {r['errors']} | "
                f"{r['cost_usd']:.4f} | {r['results_path']} |"
            )
    if not report.get("baseline"):
        lines += ["", "No baseline: nothing to compare (the agent has no production version)."]
    return "\n".join(lines)


@flow(name="evaluate", flow_run_name=_run_name, log_prints=False)
def evaluate_flow(
    candidate: str,
    baseline: str | None = "production",
    suites: list[str] | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Evaluate model version ``candidate`` against ``baseline`` (``production``, a version id,
    or None) on ``suites`` (eval_cases dataset versions; default: the agent's latest curated)."""
    runtime.route_core_logs()
    logger = get_run_logger()
    config = load_config(get_settings(), config_overrides)
    report = evaluate_task(candidate, baseline, list(suites or []), config, flow_run.id)
    if report["comparison"]:
        create_table_artifact(
            key="evaluation-comparison",
            table=comparison_table(report),
            description="Baseline vs candidate per metric: means with "
            f"{config.evaluation.confidence:.0%} intervals and the paired "
            "difference (candidate - baseline)",
        )
    create_markdown_artifact(key="evaluation-summary", markdown=summary_markdown(report))
    logger.info(
        "evaluated %s on %d case(s): eval run %s",
        candidate,
        report["cases"],
        report["candidate"]["eval_run_id"],
    )
    return report
