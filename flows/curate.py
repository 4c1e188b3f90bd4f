"""The curate flow: stored interactions and feedback in, versioned curated datasets out.

Per agent (every agent with stored feedback unless one is named), one task run each, one after
another (each registers in the database; the agents are independent, and a failed agent does
not stop the others: the flow fails at the end, naming each). The window ``[since, until)`` is
on when the feedback *arrived* (see :mod:`ratchet.curation.select`); ``until`` defaults to the
run's scheduled start, so a scheduled run's window does not depend on when a worker picked it
up. Artifacts: ``curate-summary`` (counts per signal, dedupe, filters, balance, retirements,
leakage, quality), ``curate-versions`` and ``curate-exports`` (tables).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from ratchet.config import PipelineConfig, load_config
from ratchet.curation.select import Window, agents_with_feedback, to_utc
from ratchet.db import repo
from ratchet.settings import get_settings
from ratchet.store import valid_agent_id
from tasks import runtime
from tasks.curate import curate_agent_task


class CurateFailed(RuntimeError):
    """One or more agents failed; the message lists each with its value-free reason."""


def _run_name() -> str:
    params = flow_run.parameters or {}
    since = params.get("since")
    until = params.get("until")
    window = f"{str(since)[:10] if since else 'start'}-to-{str(until)[:10] if until else 'now'}"
    return f"curate-{params.get('agent') or 'all-agents'}-{window}"


_SIGNALS = ("golden", "regression", "neutral")
_REVIEW = ("thumbs_down_no_correction", "conflict", "neutral_rating")


def summarise(reports: list[dict[str, Any]], window: Window) -> dict[str, Any]:
    """Counts over all agents (what the CLI prints and the artifact shows)."""
    st: Counter[str] = Counter()
    for r in reports:
        st.update({k: v for k, v in r["stats"].items() if isinstance(v, int)})
    versions = [v | {"agent": r["agent"]} for r in reports for v in r["versions"]]
    exports = [e | {"agent": r["agent"]} for r in reports for e in r["exports"]]
    return {
        "window": window.label(),
        "agents": ", ".join(f"{r['agent']} ({r['status']})" for r in reports) or "-",
        "feedback_in_window": sum(r["selection"].get("feedback_in_window", 0) for r in reports),
        "interactions_selected": sum(
            r["selection"].get("interactions_selected", 0) for r in reports
        ),
        "signals": {
            **{s: st[f"signal_{s}"] for s in _SIGNALS},
            **{f"review_{s}": st[f"signal_review_{s}"] for s in _REVIEW},
        },
        "removed_by_dedupe": {
            "exact": st["removed_duplicate_exact"],
            "near": st["removed_duplicate_near"],
        },
        "filtered": {
            k[len("filtered_") :]: v
            for k, v in sorted(st.items())
            if k.startswith("filtered_") and v
        },
        "capped_by_balance": st["capped_by_balance"],
        "retired": {"golden": st["retired_golden"], "regression": st["retired_regression"]},
        "leakage_removed": {
            "exact": st["leakage_removed_exact"],
            "near": st["leakage_removed_near"],
        },
        "holdout_overlap": sum(v for k, v in st.items() if k.startswith("holdout_overlap_")),
        "versions_new": sum(v["created"] for v in versions),
        "versions_existing": sum(not v["created"] for v in versions),
        "versions": {
            f"{v['agent']}/{v['kind']}": f"{v['version']} ({v['rows']} rows"
            f"{', new' if v['created'] else ''})"
            for v in versions
        },
        "exports_written": sum(e["status"] == "written" for e in exports),
        "exports_refused": {
            f"{e['agent']}/{e['kind']}/{e['format']}": e.get("reason")
            or " ".join(f"{k}={n}" for k, n in e["violations"].items())
            for e in exports
            if e["status"] == "refused"
        },
        "reports": reports,
    }


def _publish(summary: dict[str, Any], failures: list[str]) -> None:
    reports = summary["reports"]
    create_table_artifact(
        key="curate-versions",
        table=[
            {
                "agent": r["agent"],
                "kind": v["kind"],
                "version": v["version"],
                "rows": v["rows"],
                "new": v["created"],
                "path": v["path"],
            }
            for r in reports
            for v in r["versions"]
        ]
        or [
            {
                "agent": "-",
                "kind": "-",
                "version": "none made",
                "rows": 0,
                "new": False,
                "path": "-",
            }
        ],
        description="Curate: dataset versions made by this run",
    )
    create_table_artifact(
        key="curate-exports",
        table=[
            {
                "agent": r["agent"],
                "kind": e["kind"],
                "version": e["version"],
                "format": e["format"],
                "status": e["status"],
                "rows": e["rows"],
                "files": ", ".join(e["files"]),
                "refused because": e.get("reason")
                or ", ".join(f"{k}={n}" for k, n in e["violations"].items()),
            }
            for r in reports
            for e in r["exports"]
        ]
        or [
            {
                "agent": "-",
                "kind": "-",
                "version": "-",
                "format": "-",
                "status": "none",
                "rows": 0,
                "files": "",
                "refused because": "",
            }
        ],
        description="Curate: exports written or refused (violations counted per rule)",
    )

    def table(title: str, rows: dict[str, Any]) -> list[str]:
        return [
            f"## {title}",
            "",
            "| | count |",
            "|---|---|",
            *[f"| {k} | {v} |" for k, v in rows.items()],
            "",
        ]

    lines = [
        "# Curate summary",
        "",
        f"Window (feedback arrival): `{summary['window']}`  ",
        f"Agents: {summary['agents']}  ",
        f"Feedback events in the window: {summary['feedback_in_window']}; interactions "
        f"curated: {summary['interactions_selected']}  ",
        f"Dataset versions: {summary['versions_new']} new, {summary['versions_existing']} "
        f"already registered; exports written: {summary['exports_written']}, refused: "
        f"{len(summary['exports_refused'])}",
        "",
        *table("Signals", summary["signals"]),
        *table("Removed by dedupe", summary["removed_by_dedupe"]),
        *table("Filtered by reason", summary["filtered"] or {"(none)": 0}),
        *table(
            "Balance, retirement, leakage",
            {
                "capped by balance": summary["capped_by_balance"],
                "retired golden (voted down)": summary["retired"]["golden"],
                "retired regression (voted up)": summary["retired"]["regression"],
                "leakage removed (exact)": summary["leakage_removed"]["exact"],
                "leakage removed (near)": summary["leakage_removed"]["near"],
                "holdout case ids in training tables": summary["holdout_overlap"],
            },
        ),
        "## Per agent",
        "",
        "| agent | status | feedback in window | golden | regression | review | eval cases | "
        "sft | pairs | binary | review queue |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *[
            f"| {r['agent']} | {r['status']} | {r['selection'].get('feedback_in_window', 0)} | "
            f"{r['stats'].get('signal_golden', 0)} | {r['stats'].get('signal_regression', 0)} | "
            f"{sum(r['stats'].get(f'signal_review_{s}', 0) for s in _REVIEW)} | "
            + " | ".join(
                str(r["stats"].get(f"rows_{k}", 0))
                for k in (
                    "eval_cases",
                    "sft_examples",
                    "preference_pairs",
                    "binary_feedback",
                    "review_queue",
                )
            )
            + " |"
            for r in reports
        ],
        "",
        "## Data quality",
        "",
        "| agent | suite | rows | expectations | result |",
        "|---|---|---|---|---|",
        *[
            f"| {r['agent']} | {q['suite']} | {q['rows']} | {q['expectations']} | "
            f"{'passed' if q['success'] else 'FAILED: ' + ', '.join(q['failed'])} |"
            for r in reports
            for q in r["quality"]
        ],
        "",
        "## Exports refused",
        "",
        *(
            [f"- {k} was not written: {v}" for k, v in summary["exports_refused"].items()]
            or ["(none)"]
        ),
    ]
    if failures:
        lines += ["", "## Failed agents", "", *[f"- {f}" for f in failures]]
    create_markdown_artifact(key="curate-summary", markdown="\n".join(lines))


def _agent_states(
    agents: list[str], window: Window, config: PipelineConfig, run_id: str
) -> Iterator[tuple[str, Any]]:
    """Each agent's final task state, in order. ``runtime.task_runner: threads``: one agent
    after another, as they finish; ``dask``: every agent at once on the cluster (agents share
    nothing: separate parts, datasets and versions), then their states in order."""
    if config.runtime.task_runner != "dask":
        for a in agents:
            state = curate_agent_task(
                a, window.since, window.until, config, run_id or None, return_state=True
            )
            yield a, state
        return
    with runtime.task_runner(config.runtime) as runner:
        futures = [
            runner.submit(
                curate_agent_task,
                parameters={
                    "agent": a,
                    "since": window.since,
                    "until": window.until,
                    "config": config,
                    "flow_run_id": run_id or None,
                },
            )
            for a in agents
        ]
        states = runtime.wait_states(futures)
    yield from zip(agents, states, strict=True)


@flow(name="curate", flow_run_name=_run_name, log_prints=False)
def curate_flow(
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Curate every agent's (or one agent's) feedback of ``[since, until)`` into dataset
    versions and their exports. Returns the run's summary counts (and per-agent reports)."""
    runtime.route_core_logs()
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(settings, config_overrides)
    start = flow_run.scheduled_start_time
    until_utc = to_utc(until) or (to_utc(start) if start else None) or datetime.now(UTC)
    window = Window(to_utc(since), until_utc)
    if agent is not None and not valid_agent_id(agent):
        raise ValueError("agent must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
    sessions = runtime.sessions(settings)
    run_id = str(flow_run.get_id() or "")
    with sessions() as s, s.begin():
        agents = [agent] if agent else agents_with_feedback(s)
        run = repo.start_pipeline_run(
            s, flow_name="curate", flow_run_id=run_id or None, agent_id=agent,
            parameters={"agent": agent, "since": window.since.isoformat() if window.since
                        else None, "until": window.until.isoformat()},
        )  # fmt: skip
        pipeline_run_id = run.id

    reports: list[dict[str, Any]] = []
    failures: list[str] = []
    progress = runtime.Progress("curate-progress", f"Curate: agents done of {len(agents)}")
    progress.update(0.0, "curate: starting")
    logger.info("curating %d agent(s), window %s", len(agents), window.label())
    for done, (a, state) in enumerate(_agent_states(agents, window, config, run_id), start=1):
        if state.is_completed():
            report = state.result()
            reports.append(report)
            logger.info(
                "%s: %s, versions %s",
                a,
                report["status"],
                {v["kind"]: v["rows"] for v in report["versions"]},
            )
        else:
            try:
                state.result()
            except Exception as exc:  # the core's own, value-free message
                failures.append(f"{a}: {type(exc).__name__}: {exc}")
                logger.warning("%s: failed: %s", a, type(exc).__name__)
        progress.update(100.0 * done / len(agents), f"curate: {done}/{len(agents)} agents")
    if not agents:
        progress.update(100.0, "curate: no agent with feedback")

    summary = summarise(reports, window)
    _publish(summary, failures)
    counts = {k: v for k, v in summary.items() if k != "reports"}
    with sessions() as s, s.begin():
        repo.finish_pipeline_run(
            s, pipeline_run_id, status="failed" if failures else "completed", counts=counts,
            error="; ".join(failures)[:2000] if failures else None,
        )  # fmt: skip
    if failures:
        raise CurateFailed(f"{len(failures)} agent(s) failed: " + " | ".join(failures))
    return summary
