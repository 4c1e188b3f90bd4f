"""The ``forget`` flow: erase a user's (or some interactions') data everywhere Ratchet keeps it.

**No personal identifier is ever a flow parameter.** Prefect keeps a run's parameters, name,
logs and artifacts in its database, and an erasure that left the user's id there would defeat
itself. So the CLI hashes the user id with the ingest's keyed pseudonym (and maps an
interaction id the way ingest stores it) *before* the flow starts, writes the result to an
erasure request under ``$RATCHET_HOME/inputs/fg-<random>.json`` (mode 0600, like the ingest's
input lists) and passes only that reference; it deletes the request when the run is over. The
flow's logs, artifact and return value hold counts and version ids only.

``request=None`` runs no new request but sweeps the pending tombstones (a consent withdrawal
recorded at ingest, a forget that crashed half-way): what the retention deployment also does.
The engine and its guarantees (reach, order, idempotence, crash and rerun) are in
:mod:`ratchet.privacy.erasure`.
"""

from __future__ import annotations

import json
import os
import re
import secrets
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from ratchet.config import load_config
from ratchet.db import repo
from ratchet.privacy.erasure import ErasureContext, ErasureReport, ErasureRequest
from ratchet.settings import get_settings
from tasks import runtime
from tasks.privacy import erase_task

_REF = re.compile(r"^fg-[0-9a-f]{32}$")


class ErasureRequestError(ValueError):
    """An erasure request reference does not name a readable request (names the reference)."""


def _requests_dir(home: Path) -> Path:
    return home / "inputs"


def write_request(
    home: Path,
    *,
    users: list[str],
    interactions: list[str],
    reason: str | None,
    agent: str | None,
) -> str:
    """Write pseudonymised targets to ``home/inputs/fg-<random>.json`` (0600); return the ref.

    The reference is random: a hash of the content would be a function of the pseudonyms.
    """
    ref = "fg-" + secrets.token_hex(16)
    body = json.dumps(
        {"users": sorted(set(users)), "interactions": sorted(set(interactions)),
         "reason": reason, "agent": agent},
        sort_keys=True,
    ).encode()  # fmt: skip
    folder = _requests_dir(home)
    folder.mkdir(parents=True, exist_ok=True)
    fd = os.open(folder / f"{ref}.json", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(body)
    return ref


def read_request(home: Path, ref: str) -> dict[str, Any]:
    if not _REF.match(ref):
        raise ErasureRequestError("an erasure request reference looks like fg-<32 hex digits>")
    try:
        return dict(json.loads((_requests_dir(home) / f"{ref}.json").read_bytes()))
    except (OSError, ValueError):
        raise ErasureRequestError(
            f"erasure request {ref} is not readable under RATCHET_HOME/inputs (it is deleted "
            "when its run ends: run `ratchet forget` again)"
        ) from None


def remove_request(home: Path, ref: str) -> None:
    if _REF.match(ref):
        (_requests_dir(home) / f"{ref}.json").unlink(missing_ok=True)


def _run_name() -> str:
    params = flow_run.parameters
    mode = "dry-run" if params.get("dry_run") else "erase"
    what = "request" if params.get("request") else "pending"
    return f"forget-{params.get('agent') or 'all-agents'}-{what}-{mode}"


def publish(title: str, report: dict[str, Any], key: str) -> None:
    """A markdown artifact with counts only (never an id of a person)."""
    rows = report["rows_removed"]
    lines = [
        f"# {title}{' (dry run: nothing changed)' if report['dry_run'] else ''}",
        "",
        "| what | count |",
        "|---|---|",
        f"| rows removed | {report['rows_removed_total']} |",
        f"| files rewritten | {report['files_rewritten']} |",
        f"| files deleted | {report['files_deleted']} |",
        f"| dataset versions superseded | {report['versions_superseded']} |",
        f"| export files rewritten | {report['exports_rewritten']} |",
        f"| model versions marked trained on erased data | {report['models_marked']} |",
        f"| model folders rewritten | {report['model_folders_rewritten']} |",
        f"| tombstones added | {report['tombstones_added']} |",
        "",
        "## Rows removed by table",
        "",
        "| table | rows |",
        "|---|---|",
        *[f"| {t} | {n} |" for t, n in sorted(rows.items())],
    ]
    create_markdown_artifact(key=key, markdown="\n".join(lines), description=title)


@flow(name="forget", flow_run_name=_run_name, log_prints=False)
def forget_flow(
    request: str | None = None, agent: str | None = None, dry_run: bool = False
) -> dict[str, Any]:
    """Erase what an erasure request names (and every pending tombstone); see the module doc.

    Returns counts, the dataset versions that held the data, the new versions made without it
    and the model versions trained on it (marked "trained on erased data").
    """
    runtime.route_core_logs()
    logger = get_run_logger()
    settings = get_settings()
    config = load_config(settings)
    key = runtime.pseudonym_key(settings)
    body = read_request(settings.home, request) if request else {}
    req = ErasureRequest(
        users=frozenset(body.get("users") or ()),
        interactions=frozenset(body.get("interactions") or ()),
        agent_id=agent or body.get("agent"),
        reason=body.get("reason") or "forget",
    )
    ctx = ErasureContext(runtime.store(settings), runtime.sessions(settings), config, key)
    with ctx.sessions() as s, s.begin():
        run = repo.start_pipeline_run(
            s, flow_name="forget", flow_run_id=str(flow_run.get_id() or "") or None,
            agent_id=req.agent_id, parameters={"dry_run": dry_run, "request": bool(request)},
        )  # fmt: skip
        run_id = run.id
    try:
        out = erase_task(ctx, req, dry_run)
    except Exception as exc:
        with ctx.sessions() as s, s.begin():
            repo.finish_pipeline_run(s, run_id, status="failed", error=type(exc).__name__)
        raise
    with ctx.sessions() as s, s.begin():
        repo.finish_pipeline_run(s, run_id, status="completed", counts=out)
    publish("Erasure", out, "forget-summary")
    logger.info(
        "forget%s: %d rows removed, %d files rewritten, %d versions superseded, %d models marked",
        " (dry run)" if dry_run else "", out["rows_removed_total"], out["files_rewritten"],
        out["versions_superseded"], out["models_marked"],
    )  # fmt: skip
    return out


__all__ = [
    "ErasureReport",
    "ErasureRequestError",
    "forget_flow",
    "publish",
    "read_request",
    "remove_request",
    "write_request",
]
