"""Prefect task of the weekly flow's last step: audit for PII what this run wrote.

The run's own writes are what the audit reads: store files modified and database rows created
since the run started (:func:`ratchet.privacy.audit.audit_pii` with ``since``). A finding fails
the task with a value-free message (tables, files, columns and PII types, never a value), after
an artifact says the same; ``NO_CACHE``: an audit is of the store as it is now.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import Any

from prefect import task
from prefect.artifacts import create_table_artifact
from prefect.cache_policies import NO_CACHE

from ratchet.config import load_config
from ratchet.privacy.audit import AuditReport, audit_pii
from tasks import runtime

log = logging.getLogger("ratchet.tasks.audit")


class PiiAuditFailed(RuntimeError):
    """The audit found PII (or could not read a file); the message names where, never what."""


_CLEAN_ROW = {
    "table": "(clean)",
    "file": "-",
    "column": "-",
    "detector": "-",
    "types": "-",
    "rows": 0,
}


def _artifact(report: AuditReport) -> None:
    rows = [
        {
            "table": f.table, "file": f.file, "column": f.column, "detector": f.detector,
            "types": ", ".join(f"{k} {v}" for k, v in sorted(f.types.items())), "rows": f.rows,
        }
        for f in report.findings
    ] + [
        {"table": "-", "file": u["file"], "column": "-", "detector": "unreadable",
         "types": u["error"], "rows": 0}
        for u in report.unreadable
    ]  # fmt: skip
    create_table_artifact(
        key="pii-audit",
        table=rows or [_CLEAN_ROW],
        description=(
            f"PII audit of what this run wrote: {report.files_scanned} file(s), "
            f"{report.rows_scanned} row(s), {report.db_tables_scanned} database table(s); "
            f"second opinion {report.second_opinion}"
        ),
    )


@task(name="audit-written-pii", task_run_name="audit-written-pii", cache_policy=NO_CACHE)
def audit_written_task(since: datetime, agent: str | None = None) -> dict[str, Any]:
    """Scan what was written at or after ``since``; raise :class:`PiiAuditFailed` on a hit."""
    s = runtime.settings()
    report = audit_pii(
        runtime.store(s), runtime.sessions(s), load_config(s), agent=agent, since=since
    )
    _artifact(report)
    if not report.clean:
        raise PiiAuditFailed(report.summary())
    out = report.as_dict()
    out.pop("findings")
    return out


def audit_written(
    since: datetime, agent: str | None = None
) -> tuple[dict[str, Any] | None, str | None]:
    """Run :func:`audit_written_task` inside a flow: its counts, or its value-free failure."""
    state = audit_written_task(since, agent, return_state=True)
    if state.is_completed():
        return state.result(), None
    try:
        state.result()
    except Exception as exc:  # the task's own message: where, never what
        return None, f"pii audit: {type(exc).__name__}: {exc}"
    return None, f"pii audit: ended {state.name}"
