"""Retention: delete what is older than the configured maximum age, with the reach of erasure.

``retention`` (config) gives a maximum age in days per table; null keeps it for good (the
default: nothing is deleted until someone decides how long to keep). What "older" means:

* **interactions**: their ``timestamp`` (when the conversation happened); an expired
  interaction is erased exactly as ``ratchet forget --interaction`` would erase it (its
  feedback, curated rows, exports, cached answers, eval rows, retrieval-model rows), but
  **without a tombstone**: age is not a request to refuse the same data later (a re-ingest of
  old logs stores them again, and the next retention run deletes them again);
* **feedback**: the event's ``timestamp`` (when it was given); the curated rows that name the
  event (eval cases, review rows) and the training rows of those cases go with it;
* **quarantine**: the part's commit time in the ledger (a rejected line has no trusted time);
  the whole part is deleted;
* **evaluation answers**: the per-case results of eval runs *started* earlier (the file is
  deleted and the run's ``results_path`` cleared: its metrics stay, a later evaluation answers
  again instead of replaying) and cached answers whose file was written earlier.

Every run also sweeps the pending tombstones (a consent withdrawal recorded at ingest, a forget
that crashed half-way), so the scheduled deployment finishes any erasure left open.
Ages are measured from ``now`` (the flow passes its scheduled start), never from file names.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.fs as pafs
from sqlalchemy import select, update

from ratchet import schemas
from ratchet.config import RetentionConfig
from ratchet.db.models import EvalRun, Part
from ratchet.privacy.erasure import ErasureContext, ErasureReport, ErasureRequest, erase

logger = logging.getLogger(__name__)


@dataclass
class RetentionPlan:
    """What is expired: erasure targets and whole files, with the cutoffs that chose them."""

    cutoffs: dict[str, datetime | None]
    request: ErasureRequest
    eval_runs: list[tuple[str, str]] = field(default_factory=list)  # (run id, results path)
    cache_files: list[str] = field(default_factory=list)


def cutoffs(config: RetentionConfig, now: datetime) -> dict[str, datetime | None]:
    """The time before which each table's records are expired (None: kept)."""
    now = datetime.fromtimestamp(now.timestamp(), UTC)  # a plain UTC datetime, whatever came in
    ages = {
        "interactions": config.interactions_days,
        "feedback": config.feedback_days,
        "quarantine": config.quarantine_days,
        "eval_answers": config.eval_answers_days,
    }
    return {k: (now - timedelta(days=d) if d else None) for k, d in ages.items()}


def _expired_rows(ctx: ErasureContext, table: str, cutoff: datetime) -> list[tuple[str, str, str]]:
    """(kind, agent, id) of the rows of a part table whose timestamp is before the cutoff."""
    kind, id_col = ("interaction", "interaction_id") if table == "interactions" else (
        "feedback", "feedback_id")  # fmt: skip
    schema = schemas.INTERACTIONS if table == "interactions" else schemas.FEEDBACK
    with ctx.sessions() as s:
        stmt = select(Part.path, Part.agent_id).where(
            Part.table_name == table,
            Part.retired_at.is_(None),
            Part.partition_date <= cutoff.date(),  # a later day's part holds nothing older
        )
        parts = list(s.execute(stmt).tuples())
    out: list[tuple[str, str, str]] = []
    for path, agent in parts:
        if agent is None or not ctx.store.exists(path):
            continue
        t = ctx.store.read_table(path, schema, [id_col, "timestamp"])
        old = t.filter(pc.less(t["timestamp"], pa.scalar(cutoff, schemas.UTC_TS)))
        out += [(kind, agent, v) for v in old[id_col].to_pylist()]
    return out


def plan(ctx: ErasureContext, config: RetentionConfig, now: datetime) -> RetentionPlan:
    """Find what is expired (reads only)."""
    cuts = cutoffs(config, now)
    scoped: list[tuple[str, str, str]] = []
    for table in ("interactions", "feedback"):
        cut = cuts[table]
        if cut is not None:
            scoped += _expired_rows(ctx, table, cut)
    quarantine: list[str] = []
    runs: list[tuple[str, str]] = []
    with ctx.sessions() as s:
        if cuts["quarantine"] is not None:
            stmt = select(Part.path).where(
                Part.table_name == "quarantine",
                Part.retired_at.is_(None),
                Part.created_at < cuts["quarantine"],
            )
            quarantine = list(s.execute(stmt).scalars())
        if cuts["eval_answers"] is not None:
            stmt2 = select(EvalRun.id, EvalRun.results_path).where(
                EvalRun.started_at < cuts["eval_answers"], EvalRun.results_path.is_not(None)
            )
            runs = [(i, p) for i, p in s.execute(stmt2).tuples() if p]
    cache = _old_cache_files(ctx, cuts["eval_answers"]) if cuts["eval_answers"] else []
    request = ErasureRequest(
        scoped=frozenset(scoped), quarantine_parts=frozenset(quarantine),
        reason="retention", tombstone=False, include_pending=True,
    )  # fmt: skip
    return RetentionPlan(cuts, request, runs, cache)


def _old_cache_files(ctx: ErasureContext, cutoff: datetime) -> list[str]:
    from ratchet.evaluation.runner import CACHE_ROOT

    selector = pafs.FileSelector(ctx.store.full(CACHE_ROOT), recursive=True, allow_not_found=True)
    base = ctx.store.full("")
    out = []
    for info in ctx.store.fs.get_file_info(selector):
        if info.type != pafs.FileType.File or not info.path.endswith(".parquet"):
            continue
        mtime = info.mtime
        if mtime is not None and mtime.tzinfo is None:
            mtime = mtime.replace(tzinfo=cutoff.tzinfo)
        if mtime is not None and mtime < cutoff:
            out.append(info.path[len(base) :].lstrip("/"))
    return sorted(out)


def apply(
    ctx: ErasureContext, config: RetentionConfig, now: datetime, *, dry_run: bool = False
) -> dict[str, Any]:
    """Delete what is expired; returns the erasure counts plus the cutoffs (ISO or None)."""
    p = plan(ctx, config, now)
    report: ErasureReport = erase(ctx, p.request, dry_run=dry_run)
    for run_id, path in p.eval_runs:
        report.rows_removed["eval_results"] += _rows(ctx, path, schemas.EVAL_RESULTS)
        report.files_deleted += 1
        if not dry_run:
            ctx.store.delete(path)
            with ctx.sessions() as s, s.begin():
                s.execute(update(EvalRun).where(EvalRun.id == run_id).values(results_path=None))
    for path in p.cache_files:
        if not ctx.store.exists(path):
            continue  # the erasure above may have rewritten it under a new name
        report.rows_removed["eval_answer_cache"] += _rows(ctx, path, schemas.EVAL_ANSWER_CACHE)
        report.files_deleted += 1
        if not dry_run:
            ctx.store.delete(path)
    out = report.as_dict()
    out["cutoffs"] = {k: (v.isoformat() if v else None) for k, v in p.cutoffs.items()}
    logger.info("retention%s: %s", " (dry run)" if dry_run else "", report.counts())
    return out


def _rows(ctx: ErasureContext, path: str, schema: Any) -> int:
    if not ctx.store.exists(path):
        return 0
    return int(ctx.store.read_table(path, schema).num_rows)


__all__ = ["RetentionPlan", "apply", "cutoffs", "plan"]
