"""The train flow: a dataset version in, a candidate model version out (``train``).

Steps, one task each (:mod:`tasks.train`): plan (reuse a finished model, resume an unfinished
job, or write the training record ``pending`` before anything is submitted), submit (budgets
first), wait (progress and events published as they arrive), collect (the candidate, its cost,
its model card). ``few_shot`` and ``prompt`` make their candidate without a job. Artifacts:
``train-progress`` (progress), ``train-events`` (table: job events, train/validation loss per
step), ``train-model-card`` (markdown) and ``train-summary`` (markdown). A rerun with the same
dataset, strategy, backend, base and parameters reuses the model version it made; a killed run
started again polls the job it had started. Secrets never travel as parameters: backends read
them from settings.
"""

from __future__ import annotations

from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from ratchet.config import load_config
from ratchet.settings import get_settings
from tasks import runtime
from tasks.train import (
    collect_training_task,
    make_candidate_task,
    plan_training_task,
    reused_model,
    submit_training_task,
    wait_training_task,
)


def _run_name() -> str:
    p = flow_run.parameters or {}
    agent = p.get("agent") or str(p.get("dataset", ""))[:12]
    return f"train-{agent}-{p.get('strategy') or 'default'}-{p.get('backend') or 'default'}"


def _publish(out: dict[str, Any], plan: dict[str, Any], job: dict[str, Any] | None) -> None:
    if out.get("model_card"):
        create_markdown_artifact(
            key="train-model-card",
            markdown=out["model_card"],
            description=f"Model card of {out['model_version_id']}",
        )
    lines = [
        "# Train summary",
        "",
        "| | |",
        "|---|---|",
        f"| action | {plan['action']} |",
        f"| agent | {plan['agent_id']} |",
        f"| strategy / backend | {plan['strategy']} / {plan['backend']} |",
        f"| training run | {out['training_run_id']} |",
        f"| candidate model version | {out['model_version_id']} |",
        f"| cost (USD) | {out['cost_usd']:.4f} ({out['cost_basis'] or '-'}) |",
        f"| model card | {out['model_card_path']} |",
    ]
    if job:
        lines.append(f"| job events | {job['events']} |")
        lines += [f"| final {k} | {v} |" for k, v in sorted(job["metrics"].items())]
    create_markdown_artifact(key="train-summary", markdown="\n".join(lines))


@flow(name="train", flow_run_name=_run_name, log_prints=False)
def train_flow(
    dataset: str,
    strategy: str | None = None,
    backend: str | None = None,
    base: str | None = None,
    params: dict[str, Any] | None = None,
    agent: str | None = None,
    notes: str | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Train (or reuse) a candidate from dataset version ``dataset``. ``strategy``, ``backend``
    and ``base`` default to ``training.default_*``; ``agent``, when given, must be the dataset's;
    ``notes`` are kept on the training record.
    Returns the training run id, the candidate's id, the cost and what was done."""
    runtime.route_core_logs()
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(settings, config_overrides)
    t = config.training
    request = {
        "dataset_version_id": dataset,
        "strategy": strategy or t.default_strategy,
        "backend": backend or t.default_backend,
        "base": base or t.default_base,
        "params": dict(params or {}),
        "created_by": settings.user or "ratchet",
        "notes": notes,
        "agent_id": agent,
    }
    plan = plan_training_task(request, config)
    run_id = plan["training_run_id"]
    logger.info(
        "training run %s: %s (%s on %s)", run_id, plan["action"], plan["strategy"], plan["backend"]
    )
    job: dict[str, Any] | None = None
    if plan["action"] == "reuse":
        out = reused_model(plan, config)
    elif plan["action"] == "no_job" or (
        plan["action"] == "resume" and plan["strategy"] in ("few_shot", "prompt")
    ):
        out = make_candidate_task(run_id, config)
    else:
        submit_training_task(run_id, config)
        job = wait_training_task(run_id, config)
        out = collect_training_task(run_id, config)
    _publish(out, plan, job)
    logger.info(
        "training run %s: candidate %s, %.4f USD", run_id, out["model_version_id"], out["cost_usd"]
    )
    return {
        "action": plan["action"],
        "agent": plan["agent_id"],
        "strategy": plan["strategy"],
        "backend": plan["backend"],
        "training_run_id": run_id,
        "model_version_id": out["model_version_id"],
        "cost_usd": out["cost_usd"],
        "cost_basis": out["cost_basis"],
        "model_card": out["model_card_path"],
        "reused": out["reused"],
    }
