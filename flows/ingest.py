"""The ingest flow: agent logs and feedback in, redacted and checked Parquet out, exactly once.

Config is validated and inputs resolved before any work; files are ingested one task run each,
one after another with ``runtime.task_runner: threads`` (a file's batches use ingest.workers
processes; the order keeps which of two conflicting copies is stored predictable), or all at
once, large files cut into byte ranges, on a Dask cluster with ``runtime.task_runner: dask``
(:mod:`flows.ingest_parallel`; the ledger's commit keeps that exactly once). A file that fails
(too much quarantined, a failed data-quality suite) does not stop the others; the flow fails at
the end, naming every failed file and why, after publishing what it did.

**Nothing Prefect records names an input.** Prefect stores a flow run's parameters, its run and
task run names, logs, state messages and artifacts in its database. So the CLI passes ``inputs``,
a reference to an input list it wrote under ``$RATCHET_HOME/inputs`` (see
:mod:`ratchet.ingest.inputs`), never the paths; the flow hands each task that reference and an
index, task runs are named ``ingest-<kind>-<sha256 prefix>``, and logs, artifacts and errors show
a file by its redacted name and its hash. ``paths``/``feedback_paths`` stay for the Python API
and deployments that name folders (an inbox): those parameters are recorded as given, so pass
folders, not personal file names, there.

Files and folders: a file's kind is told by its content (interaction or feedback; a JSON
document that is not a record, such as a sample's ``manifest.json``, is skipped with a warning);
an empty file or an empty folder is a warning and a zero count, never a failure. The
pseudonymisation key is resolved once before any work, so a Secret block that cannot be read
stops the run at once with that reason.
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
from ratchet.ingest.adapters import FORMATS
from ratchet.ingest.inputs import (
    InputKind,
    display_name,
    read_input_list,
    resolve_inputs,
    sniff_kind,
    write_input_list,
)
from ratchet.ingest.reader import InputError, file_sha256
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
        "files_empty": sum(r["status"] == "empty" for r in reports),
        "files_skipped": [r["name"] for r in reports if r["status"] == "not_records"],
        "lines": 0, "records": 0, "dropped_consent": 0, "skipped_tombstone": 0,
        "assumed_utc": 0,
    }  # fmt: skip
    stored: Counter[str] = Counter()
    skipped: Counter[str] = Counter()
    quarantined: Counter[str] = Counter()
    pii: Counter[str] = Counter()
    second_opinion: Counter[str] = Counter()  # hits by type of the independent PII scan
    sampled = 0  # rows it looked at (its sample is sized per file: the reader should see it)
    for r in reports:
        for key in ("lines", "records", "dropped_consent", "skipped_tombstone", "assumed_utc"):
            total[key] += r[key]
        stored.update(r["stored"])
        skipped.update(r["skipped_stored"])
        quarantined.update(r["quarantined"])
        pii.update(r["pii_by_type"])
        for scan in r.get("second_opinion", {}).values():
            second_opinion.update(scan["hits_by_type"])
            sampled += scan["rows_scanned"]
    total.update(
        stored=dict(stored), skipped_already_stored=dict(skipped),
        quarantined=dict(quarantined), pii_by_type=dict(pii),
    )  # fmt: skip
    total["second_opinion_rows_scanned"] = sampled
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
    if params.get("inputs"):
        try:
            files = len(read_input_list(get_settings().home, params["inputs"]))
        except ValueError:
            files = 0
    return f"ingest-{params.get('agent') or 'any-agent'}-{files}-inputs"


def _entries(
    paths: list[str] | None, feedback_paths: list[str] | None, inputs: str | None
) -> tuple[str | None, list[tuple[InputKind, Any]], int]:
    """``(input list ref, entries, empty folders)``; errors never repeat a path (they become
    Prefect state messages)."""
    home = get_settings().home
    if inputs:
        return inputs, read_input_list(home, inputs), 0
    if not paths and not feedback_paths:
        raise ValueError("nothing to ingest: give interaction and/or feedback files")
    try:
        resolved = resolve_inputs(list(paths or []), list(feedback_paths or []))
    except InputError:
        raise InputError(
            "an input path, glob or folder matches no file (which one is not repeated here: "
            "run `ratchet ingest` for the message that names it)"
        ) from None
    if not resolved.files:
        return None, [], resolved.empty_folders
    return write_input_list(home, resolved.files), resolved.files, resolved.empty_folders


def _erase_withdrawn(settings: Any, config: Any, logger: Any) -> dict[str, Any]:
    """Erase the users whose consent_withdrawn events this run recorded (pending tombstones).

    Decision (issue 12): the ingest flow runs the erasure itself, after its files committed,
    so a withdrawal takes effect with the run that read it. Should it fail, the tombstones
    stay pending (and already keep the user's new records out): the next ``forget`` or the
    daily ``retention`` run sweeps them. The artifact holds counts only."""
    from flows.forget import publish
    from ratchet.privacy.erasure import ErasureContext, ErasureRequest
    from tasks.privacy import erase_task

    ctx = ErasureContext(
        runtime.store(settings), runtime.sessions(settings), config,
        runtime.pseudonym_key(settings),
    )  # fmt: skip
    out = erase_task(ctx, ErasureRequest(reason="consent-withdrawn"), False)
    publish("Erasure after consent withdrawal", out, "ingest-consent-erasure")
    logger.info(
        "consent withdrawn: %d rows erased, %d dataset versions superseded, %d models marked",
        out["rows_removed_total"], out["versions_superseded"], out["models_marked"],
    )  # fmt: skip
    return {k: v for k, v in out.items() if k not in ("dataset_versions", "new_versions")}


@flow(name="ingest", flow_run_name=_run_name, log_prints=False)
def ingest_flow(
    paths: list[str] | None = None,
    feedback_paths: list[str] | None = None,
    agent: str | None = None,
    fmt: str = "auto",
    config_overrides: dict[str, Any] | None = None,
    inputs: str | None = None,
) -> dict[str, Any]:
    """Ingest interaction files (canonical, OpenAI chat logs, or a source's export: OTLP
    GenAI traces, OpenAI stored completions...: ``ratchet.ingest.adapters.FORMATS``) and
    feedback files.

    ``inputs`` is an input list reference (``ratchet.ingest.inputs.write_input_list``: what the
    CLI passes, so no path is a parameter); else ``paths`` (kind told by content) and
    ``feedback_paths``. ``agent`` is the default agent for lines that name none. Returns the
    run's summary counts.
    """
    runtime.route_core_logs()  # the core's `ratchet` records in this run's logs (the UI)
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(settings, config_overrides)
    if fmt not in ("auto", *FORMATS):
        raise ValueError(f"fmt must be auto or one of {', '.join(FORMATS)}")
    runtime.pseudonym_key(settings)  # an unreadable Secret block stops the run here
    ref, entries, empty_folders = _entries(paths, feedback_paths, inputs)
    if empty_folders:
        logger.warning(
            "%d input folder(s) hold no input file: nothing to ingest there", empty_folders
        )
    redactor = Redactor(config.redaction)
    sessions = runtime.sessions(settings)
    run_id = str(flow_run.get_id() or "")
    now = datetime.now(UTC)
    with sessions() as s, s.begin():
        run = repo.start_pipeline_run(
            s, flow_name="ingest", flow_run_id=run_id or None, agent_id=agent,
            parameters={"files": len(entries), "agent": agent, "fmt": fmt},
        )  # fmt: skip
        pipeline_run_id = run.id

    reports: list[dict[str, Any]] = []
    failures: list[str] = []
    if config.runtime.task_runner == "dask":  # files and byte ranges at once, on the cluster
        from flows.ingest_parallel import ingest_parallel

        reports, failures = ingest_parallel(
            entries, ref or "", fmt, agent, config, now, run_id or None, redactor
        )
        entries = []  # done: the sequential path below has nothing left
    for index, (wanted, path) in enumerate(entries):
        name = display_name(redactor, path.name)
        try:
            source, sniffed = file_sha256(path), sniff_kind(path)
        except OSError as exc:
            failures.append(f"{name}: cannot read the file ({exc.strerror})")
            continue
        kind = sniffed if wanted == "auto" and sniffed in ("interactions", "feedback") else wanted
        state = ingest_file_task(
            ref or "", index, source, kind, fmt, agent, config, now, run_id or None,
            return_state=True,
        )  # fmt: skip
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
    summary["empty_folders"] = empty_folders
    withdrawn = sum(r.get("consent_withdrawn", 0) for r in reports)
    summary["consent_withdrawn"] = withdrawn
    if withdrawn:  # a withdrawal is an erasure: run it now that the files are committed
        summary["erasure"] = _erase_withdrawn(settings, config, logger)
    _publish(reports, summary, failures)
    with sessions() as s, s.begin():
        repo.finish_pipeline_run(
            s, pipeline_run_id, status="failed" if failures else "completed", counts=summary,
            error="; ".join(failures)[:2000] if failures else None,
        )  # fmt: skip
    if failures:
        raise IngestFailed(f"{len(failures)} file(s) failed: " + " | ".join(failures))
    return summary
