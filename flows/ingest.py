"""The ingest flow: agent logs and feedback in, redacted and checked Parquet out, exactly once.

Config is validated and inputs resolved before any work; files are ingested one task run each,
one after another (two files may hold the same interaction, and the exactly-once check against
the ledger must see the first file's commit before the second file's lookup). A file that fails
(too much quarantined, a failed data-quality suite) does not stop the others; the flow fails at
the end, naming every failed file and why, after publishing what it did.
"""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.runtime import flow_run

from ratchet.config import load_config
from ratchet.db import repo
from ratchet.ingest.reader import expand_inputs
from ratchet.redaction import Redactor
from ratchet.settings import get_settings
from tasks import runtime
from tasks.ingest import ingest_file_task


class IngestFailed(RuntimeError):
    """One or more files failed; the message lists each with its value-free reason."""


def _summarise(reports: list[dict[str, Any]]) -> dict[str, Any]:
    total: dict[str, Any] = {
        "files": len(reports),
        "files_already_ingested": sum(r["status"] == "already_ingested" for r in reports),
        "lines": 0, "records": 0, "dropped_consent": 0, "skipped_tombstone": 0,
        "assumed_utc": 0,
    }  # fmt: skip
    stored, skipped, quarantined, pii = Counter(), Counter(), Counter(), Counter()
    second_opinion: Counter[str] = Counter()  # hits by type of the independent PII scan
    for r in reports:
        for key in ("lines", "records", "dropped_consent", "skipped_tombstone", "assumed_utc"):
            total[key] += r[key]
        stored.update(r["stored"])
        skipped.update(r["skipped_stored"])
        quarantined.update(r["quarantined"])
        pii.update(r["pii_by_type"])
        for scan in r.get("second_opinion", {}).values():
            second_opinion.update(scan["hits_by_type"])
    total.update(
        stored=dict(stored), skipped_already_stored=dict(skipped),
        quarantined=dict(quarantined), pii_by_type=dict(pii),
    )  # fmt: skip
    total["second_opinion_hits_by_type"] = dict(second_opinion)
    return total


def _words(counts: dict[str, int]) -> str:
    """``655 interactions, 115 feedback``: counts as words, not a Python dict."""
    return ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "nothing"


def _publish(reports: list[dict[str, Any]], summary: dict[str, Any], failures: list[str]) -> None:
    create_table_artifact(
        key="ingest-files",
        table=[
            {
                "file": r["name"],
                "sha256": r["source_file"][:12],
                "status": r["status"],
                "lines": r["lines"],
                "stored": sum(r["stored"].values()),
                "already stored": sum(r["skipped_stored"].values()),
                "quarantined": sum(r["quarantined"].values()),
                "consent dropped": r["dropped_consent"],
                "tombstoned": r["skipped_tombstone"],
            }
            for r in reports
        ],
        description="Ingest: counts per input file",
    )
    lines = [
        "# Ingest summary",
        "",
        f"Files: {summary['files']} ({summary['files_already_ingested']} already ingested)  ",
        f"Lines read: {summary['lines']}; valid records: {summary['records']}  ",
        f"Stored: {_words(summary['stored'])}  ",
        f"Skipped as already stored: {_words(summary['skipped_already_stored'])}  ",
        f"Dropped for consent: {summary['dropped_consent']}; skipped for tombstones: "
        f"{summary['skipped_tombstone']}; timestamps without a zone (taken as UTC): "
        f"{summary['assumed_utc']}",
        "",
        "## Quarantined by reason",
        "",
        "| reason | lines |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(summary["quarantined"].items())],
        "",
        "## PII redacted by type",
        "",
        "| type | found |",
        "|---|---|",
        *[f"| {k} | {v} |" for k, v in sorted(summary["pii_by_type"].items())],
        "",
        "## PII second opinion (Presidio on a sample of what was written)",
        "",
        "| file | table | scan | rows scanned | rows with a hit | hits by type |",
        "|---|---|---|---|---|---|",
        *[
            f"| {r['name']} | {t} | {s['reason'] or s['status']} | {s['rows_scanned']} | "
            f"{s['rows_with_hits']} | "
            f"{', '.join(f'{k} {v}' for k, v in s['hits_by_type'].items()) or 'none'} |"
            for r in reports
            for t, s in r.get("second_opinion", {}).items()
        ],
        "",
        "## Data quality",
        "",
        "| file | suite | rows | expectations | result |",
        "|---|---|---|---|---|",
        *[
            f"| {r['name']} | {q['suite']} | {q['rows']} | {q['expectations']} | "
            f"{'passed' if q['success'] else 'FAILED: ' + ', '.join(q['failed'])} |"
            for r in reports
            for q in r["quality"]
        ],
    ]
    if failures:
        lines += ["", "## Failed files", "", *[f"- {f}" for f in failures]]
    create_markdown_artifact(key="ingest-summary", markdown="\n".join(lines))


def _run_name() -> str:
    params = flow_run.parameters
    files = len(params.get("paths") or []) + len(params.get("feedback_paths") or [])
    return f"ingest-{params.get('agent') or 'any-agent'}-{files}-inputs"


@flow(name="ingest", flow_run_name=_run_name, log_prints=False)
def ingest_flow(
    paths: list[str],
    feedback_paths: list[str] | None = None,
    agent: str | None = None,
    fmt: str = "auto",
    config_overrides: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Ingest interaction files (canonical or OpenAI chat logs) and feedback files.

    ``agent`` is the default agent for lines that name none. Returns the run's summary counts.
    """
    runtime.route_core_logs()  # the core's `ratchet` records in this run's logs (the UI)
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(settings, config_overrides)
    if fmt not in ("auto", "canonical", "openai-chat"):
        raise ValueError("fmt must be auto, canonical or openai-chat")
    inputs = [("interactions", p) for p in expand_inputs(paths)] if paths else []
    inputs += [("feedback", p) for p in expand_inputs(feedback_paths or [])]
    if not inputs:
        raise ValueError("nothing to ingest: give interaction and/or feedback files")

    redactor = Redactor(config.redaction)
    sessions = runtime.sessions(settings)
    run_id = str(flow_run.get_id() or "")
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        run = repo.start_pipeline_run(
            s, flow_name="ingest", flow_run_id=run_id or None, agent_id=agent,
            parameters={"files": len(inputs), "agent": agent, "fmt": fmt},
        )  # fmt: skip
        pipeline_run_id = run.id

    reports: list[dict[str, Any]] = []
    failures: list[str] = []
    for kind, path in inputs:
        name, _ = redactor.redact_text(path.name)
        state = ingest_file_task(
            str(path), name, kind, fmt, agent, config, now, run_id or None, return_state=True
        )
        if state.is_completed():
            report = state.result()
            reports.append(report)
            logger.info(
                "%s: %s, stored %s, quarantined %s", name, report["status"], report["stored"],
                report["quarantined"],
            )  # fmt: skip
        else:
            try:
                state.result()
            except Exception as exc:  # the task's own, value-free message
                failures.append(f"{name}: {type(exc).__name__}: {exc}")

    summary = _summarise(reports)
    _publish(reports, summary, failures)
    with sessions() as s, s.begin():
        repo.finish_pipeline_run(
            s, pipeline_run_id, status="failed" if failures else "completed", counts=summary,
            error="; ".join(failures)[:2000] if failures else None,
        )  # fmt: skip
    if failures:
        raise IngestFailed(f"{len(failures)} file(s) failed: " + " | ".join(failures))
    return summary
