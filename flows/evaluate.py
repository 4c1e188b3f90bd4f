"""The evaluate flow (``evaluate``): a candidate and its baseline answer the eval suites.

One task (:func:`tasks.evaluate.evaluate_task`) does the work through the core; with
``runtime.task_runner: dask`` the flow fans out instead (:func:`evaluate_on_cluster`: one task
per model and batch of ``runtime.eval_batch_cases`` cases, all at once on the cluster). The flow
loads and validates the config first and publishes what an operator reads in the UI:

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

from ratchet.config import PipelineConfig, load_config
from ratchet.settings import get_settings
from tasks import runtime
from tasks.evaluate import (
    evaluate_batch_task,
    evaluate_task,
    fail_eval_runs_task,
    finish_evaluation_task,
    plan_evaluation_task,
    start_eval_run_task,
)


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


def evaluate_on_cluster(
    candidate: str,
    baseline: str | None,
    suites: list[str],
    config: PipelineConfig,
    flow_run_id: str | None,
) -> dict[str, Any]:
    """The evaluation fanned out: every model's cases in batches, every batch a task on the
    cluster. A batch that fails for good (after its retries) fails both runs, so the gate never
    reads half an evaluation; the answers the other batches paid for stay cached."""
    plan = plan_evaluation_task(candidate, baseline, suites, config, flow_run_id)
    models = [plan.candidate] + ([plan.baseline] if plan.baseline else [])
    run_ids = {m: start_eval_run_task(m, plan, config, flow_run_id) for m in models}
    size = config.runtime.eval_batch_cases
    starts = list(range(0, plan.cases, size))
    share = 1.0 / (len(models) * len(starts))
    with runtime.task_runner(config.runtime) as runner:
        futures = []
        for m in models:
            for start in starts:
                params = {
                    "plan": plan, "model_version_id": m, "eval_run_id": run_ids[m],
                    "start": start, "end": min(start + size, plan.cases), "rate_share": share,
                    "config": config, "flow_run_id": flow_run_id,
                }  # fmt: skip
                futures.append((m, start, runner.submit(evaluate_batch_task, parameters=params)))
        states = runtime.wait_states([f for _, _, f in futures])
    failed = [
        f"evaluate-{m}-from-{start}: {state.type.value}"
        for (m, start, _), state in zip(futures, states, strict=True)
        if not state.is_completed()
    ]
    if failed:
        reason = f"{len(failed)} batch(es) failed: " + "; ".join(failed[:5])
        fail_eval_runs_task(list(run_ids.values()), reason, config, flow_run_id)
        raise RuntimeError(reason)
    batches: dict[str, list[Any]] = {m: [] for m in models}
    for (m, _, _), state in zip(futures, states, strict=True):
        batches[m].append(state.result())
    runs = {m: (run_ids[m], batches[m]) for m in models}
    return finish_evaluation_task(plan, runs, config, flow_run_id)


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
    run_id = str(flow_run.id) if flow_run.id else None
    if config.runtime.task_runner == "dask":
        report = evaluate_on_cluster(candidate, baseline, list(suites or []), config, run_id)
    else:
        report = evaluate_task(candidate, baseline, list(suites or []), config, run_id)
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
