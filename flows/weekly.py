"""The weekly improvement flow: the stages built so far, chained, on one window of logs.

ingest → curate (which writes the exports of the versions it makes), then per agent
(:mod:`flows.weekly_loop`) train → evaluate → gate → promote; the first run makes the agent's
logs model its first production, ``dry_run`` does everything but promote, ``improve=False``
stops after curate. Last, always (a failed stage wrote things too), a PII audit of what the run
wrote (:mod:`tasks.audit`): a hit fails the run, naming table, file and column. Each stage is
its own flow (a subflow here), so each is also deployable and runnable alone.

**Inputs.** An input list reference (``inputs``: what the CLI passes, so no file path is ever a
Prefect parameter), or files or folders given as ``paths`` / ``feedback_paths``; when none is
given (the shipped deployment), the inbox: ``$RATCHET_INBOX/logs`` and ``$RATCHET_INBOX/feedback``
(``RATCHET_INBOX`` defaults to ``$RATCHET_HOME/inbox``), created on first use. An empty inbox is
a warning and zero counts, not a failure: a quiet week still curates what arrived otherwise.

The curate window is on feedback arrival (the ledger's commit time): ``[until - window_days,
until)`` with ``until`` the run's scheduled start, or, when the run ingests and no ``until`` is
given, the moment its ingest finished (so the feedback this run received is curated by this run,
not a week later), unless ``since``/``until`` are given, or ``all_time`` (the bundled sample, a
backfill) curates everything received before ``until``.

**The run's own report.** Each run is named by its window (``weekly-2026-11-23``: the first day
it curates) and carries a ``weekly-report`` markdown artifact: data in, quarantine, dataset
versions made, exports written or refused, and links to its subflow runs. A failed stage fails
the run with its reason, after the report says how far it got.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.curate import curate_flow
from flows.ingest import ingest_flow
from ratchet.curation.select import to_utc
from ratchet.settings import Settings, get_settings
from tasks import runtime
from tasks.audit import audit_written
from tasks.compact import compact_written

log = logging.getLogger("ratchet.flows.weekly")


class WeeklyFailed(RuntimeError):
    """A stage failed; the message names the stage and its value-free reason."""


def planned_window(
    since: datetime | str | None,
    until: datetime | str | None,
    window_days: int,
    all_time: bool,
    scheduled: datetime | None,
) -> tuple[datetime | None, datetime]:
    """``[begin, end)`` as planned when the run starts (before its ingest moves ``end``)."""
    end = to_utc(until) or to_utc(scheduled) or datetime.now(UTC)
    begin = None if all_time else (to_utc(since) or end - timedelta(days=window_days))
    return begin, end


def run_name() -> str:
    """``weekly-<first day of the window>`` (``weekly-all-to-<day>`` for an all-time run)."""
    p = flow_run.parameters or {}
    begin, end = planned_window(
        p.get("since"), p.get("until"), int(p.get("window_days") or 7),
        bool(p.get("all_time")), flow_run.scheduled_start_time,
    )  # fmt: skip
    return f"weekly-{begin:%Y-%m-%d}" if begin else f"weekly-all-to-{end:%Y-%m-%d}"


def inbox_dirs(settings: Settings) -> tuple[Path, Path]:
    """The inbox's ``logs`` and ``feedback`` folders, created on first use."""
    logs, feedback = settings.inbox_root / "logs", settings.inbox_root / "feedback"
    for folder in (logs, feedback):
        folder.mkdir(parents=True, exist_ok=True)
    return logs, feedback


def _inbox_inputs(settings: Settings) -> str | None:
    """The inbox's files as an input list reference; ``None`` (a warning) when it is empty."""
    from ratchet.ingest.inputs import resolve_inputs, write_input_list

    logs_dir, feedback_dir = inbox_dirs(settings)
    resolved = resolve_inputs([str(logs_dir)], [str(feedback_dir)])
    if not resolved.files:
        log.warning("inbox is empty (RATCHET_INBOX logs/ and feedback/): nothing to ingest")
        return None
    log.info("inbox: %d file(s) to ingest", len(resolved.files))
    return write_input_list(settings.home, resolved.files)


def _run_link(run_id: Any) -> str:
    if not run_id:
        return "-"
    try:
        from prefect.settings import PREFECT_UI_URL

        ui = PREFECT_UI_URL.value()
    except Exception:  # an older settings module: a relative link still works in the UI
        ui = None
    return f"[{run_id}]({(ui or '').rstrip('/')}/runs/flow-run/{run_id})"


def _counts(mapping: dict[str, Any] | None) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted((mapping or {}).items())) or "none"


def report_markdown(
    name: str, window: str, out: dict[str, Any], runs: dict[str, Any], failure: str | None
) -> str:
    """The weekly run's report: what came in, what was made, what was refused, where to look."""
    ing = out.get("ingest") or {}
    cur = out.get("curate") or {}
    lines = [f"# Weekly report: {name}", "", f"Curate window (feedback arrival): `{window}`", ""]
    lines += ["## Stages", "", "| stage | state | flow run |", "|---|---|---|"]
    for stage in ("ingest", "curate"):
        state = runs.get(stage, {}).get("state", "not run")
        lines.append(f"| {stage} | {state} | {_run_link(runs.get(stage, {}).get('id'))} |")
    lines += ["", "## Data in", ""]
    if not ing:
        lines.append("Nothing ingested (the inbox was empty or the stage did not run).")
    else:
        lines += [
            f"- files: {ing.get('files', 0)} ({ing.get('files_already_ingested', 0)} already "
            f"ingested)",
            f"- lines read: {ing.get('lines', 0)}; valid records: {ing.get('records', 0)}",
            f"- stored: {_counts(ing.get('stored'))}",
            f"- already stored (skipped): {_counts(ing.get('skipped_already_stored'))}",
            f"- dropped for consent: {ing.get('dropped_consent', 0)}; skipped for tombstones: "
            f"{ing.get('skipped_tombstone', 0)}",
        ]
    comp = out.get("compact") or {}
    if comp.get("failed"):
        lines.append(f"- compaction failed (curation reads the same records): {comp['failed']}")
    elif comp:
        lines.append(
            f"- compaction: {comp.get('partitions', 0)} partition(s), {comp.get('parts_in', 0)} "
            f"small parts -> {comp.get('parts_out', 0)}; {comp.get('purged_files', 0)} retired "
            f"file(s) purged"
        )
    lines += ["", "## Quarantine", "", "| reason | lines |", "|---|---|"]
    quarantined = ing.get("quarantined") or {}
    lines += [f"| {k} | {v} |" for k, v in sorted(quarantined.items())] or ["| (none) | 0 |"]
    reports = cur.get("reports") or []
    versions = [v | {"agent": r["agent"]} for r in reports for v in r.get("versions", [])]
    lines += [
        "",
        "## Datasets made",
        "",
        f"Feedback events in the window: {cur.get('feedback_in_window', 0)}; "
        f"new versions: {cur.get('versions_new', 0)}, already registered: "
        f"{cur.get('versions_existing', 0)}",
        "",
        "| agent | kind | version | rows | new |",
        "|---|---|---|---|---|",
    ]
    lines += [
        f"| {v['agent']} | {v['kind']} | {v['version']} | {v['rows']} | "
        f"{'yes' if v['created'] else 'no'} |"
        for v in versions
    ] or ["| - | - | none | 0 | - |"]
    exports = [e | {"agent": r["agent"]} for r in reports for e in r.get("exports", [])]
    lines += [
        "",
        "## Exports",
        "",
        f"Written: {sum(e['status'] == 'written' for e in exports)}; refused: "
        f"{sum(e['status'] == 'refused' for e in exports)}",
        "",
        "| agent | kind | format | status | rows | why refused |",
        "|---|---|---|---|---|---|",
    ]
    lines += [
        f"| {e['agent']} | {e['kind']} | {e['format']} | {e['status']} | {e['rows']} | "
        f"{_counts(e.get('violations')) if e['status'] == 'refused' else ''} |"
        for e in exports
    ] or ["| - | - | - | none | 0 | |"]
    if failure:
        lines += ["", "## Failed", "", failure]
    return "\n".join(lines)


def _decided(r: dict[str, Any]) -> dict[str, Any]:
    """One agent's loop in the run's result: the candidate and what was decided, and why."""
    d = r.get("decision") or {}
    return {
        "candidate": (r.get("train") or {}).get("model_version_id"),
        "action": d.get("action", "skipped" if r.get("skipped") else "none"),
        "passed": d.get("passed"),
        "reasons": d.get("reasons") or [x for x in (r.get("skipped"), r.get("failure")) if x],
    }


def stage_result(name: str, state: Any, runs: dict[str, Any]) -> tuple[Any, str | None]:
    """A subflow's result (or its failure reason), recording its run for the report."""
    runs[name] = {"id": state.state_details.flow_run_id, "state": state.name}
    if state.is_completed():
        return state.result(), None
    try:
        state.result()
    except Exception as exc:  # the stage's own value-free message
        return None, f"{name}: {type(exc).__name__}: {exc}"
    return None, f"{name}: ended {state.name}"


@flow(name="weekly-improvement", flow_run_name=run_name)
def weekly_flow(
    paths: list[str] | None = None,
    feedback_paths: list[str] | None = None,
    agent: str | None = None,
    since: datetime | None = None,
    until: datetime | None = None,
    window_days: int = 7,
    all_time: bool = False,
    inputs: str | None = None,
    strategy: str | None = None,
    backend: str | None = None,
    dry_run: bool = False,
    improve: bool = True,
    agent_concurrency: Literal["off", "wait", "refuse"] | None = None,
) -> dict[str, Any]:
    """Run every stage in order (inputs default to the inbox); a failed stage fails the run
    with its reason, after the run's report is published. ``improve``: then, per agent, train
    → evaluate → gate → promote (flows/weekly_loop.py; ``dry_run``: everything but promote),
    holding each agent's slot (``agent_concurrency``, default ``runtime.agent_concurrency``)."""
    runtime.route_core_logs()
    logger = get_run_logger()
    started = datetime.now(UTC)  # the PII audit reads what was written from here on
    if window_days < 1:
        raise ValueError("window_days must be at least 1")
    begin, end = planned_window(since, until, window_days, all_time, flow_run.scheduled_start_time)
    name = str(flow_run.name or run_name())
    if inputs is None and paths is None and feedback_paths is None:
        inputs = _inbox_inputs(get_settings())
    out: dict[str, Any] = {}
    runs: dict[str, Any] = {}
    failure: str | None = None
    if inputs or paths or feedback_paths:
        log.info("stage ingest: started")
        state = ingest_flow(
            paths=list(paths or []),
            feedback_paths=list(feedback_paths or []),
            agent=agent,
            inputs=inputs,
            return_state=True,
        )
        out["ingest"], failure = stage_result("ingest", state, runs)
        if until is None:  # the window is on arrival: what this run just received counts now
            end = datetime.now(UTC)
            begin = None if all_time else (to_utc(since) or end - timedelta(days=window_days))
    if failure is None and out.get("ingest") is not None:
        log.info("stage compact: started")  # after ingest, before curate: fewer files to read
        counts, why = compact_written(agent)
        out["compact"] = counts if why is None else {"failed": why}
    if failure is None:
        log.info("stage curate: started")
        state = curate_flow(agent=agent, since=begin, until=end, return_state=True)
        out["curate"], failure = stage_result("curate", state, runs)
    loop: list[dict[str, Any]] = []
    if failure is None and improve:
        from flows.weekly_loop import improve_agent

        for rep in (out.get("curate") or {}).get("reports", []):
            log.info("stage improve %s: started", rep["agent"])
            loop.append(
                improve_agent(
                    rep["agent"],
                    rep,
                    strategy=strategy,
                    backend=backend,
                    dry_run=dry_run,
                    agent_concurrency=agent_concurrency,
                )
            )
            failure = failure or (
                f"{rep['agent']}: {loop[-1]['failure']}" if loop[-1]["failure"] else None
            )
        out["improve"] = {r["agent"]: _decided(r) for r in loop}
    log.info("stage audit: started")  # even after a failed stage: what it wrote is kept too
    out["audit"], audit_failure = audit_written(started, agent)
    failure = failure or audit_failure
    window = f"[{begin.isoformat() if begin else 'beginning'}, {end.isoformat()})"
    markdown = report_markdown(name, window, out, runs, failure)
    if loop:
        from flows.weekly_loop import loop_markdown

        markdown += "\n" + "\n".join(loop_markdown(loop, _run_link))
    create_markdown_artifact(
        key="weekly-report",
        markdown=markdown,
        description=f"The week in one page: {name}",
    )
    if failure:
        logger.error("weekly run failed at %s", failure)
        raise WeeklyFailed(failure)
    logger.info("weekly run %s completed", name)
    return {k: v for k, v in out.items() if v is not None}
