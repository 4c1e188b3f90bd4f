"""A batch's commit to the ledger, exactly once when several tasks ingest at the same time.

Parallel tasks (files, byte ranges of one file, the same file submitted twice at once) look
their record keys up, write their parts, and then commit, with no lock held while they parse,
redact or write. Two tasks may therefore both find an interaction new and both write it. The
commit decides: it runs under the per-agent commit lock
(:func:`ratchet.db.ledger.lock_agents_for_commit`), and the ledger's unique key on (kind,
agent, record id) refuses the loser's keys. The loser's transaction rolls back whole (no part,
no key), it looks its keys up again outside the lock, rewrites the affected parts without the
records the winner stored (same content: counted as already stored; other content: a
``conflicting_duplicate`` quarantine row, as for a sequential rerun), and commits again. So a
record is stored once whichever task wins, and a reader never sees it in two committed parts.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING, Any

import pyarrow as pa

from ratchet.db import repo
from ratchet.db.errors import DuplicateRecordKeyError
from ratchet.ingest.prepare import (
    RECORD_KIND,
    SCHEMA,
    PrepareSpec,
    quarantine_row,
    quarantine_table,
)
from ratchet.ingest.records import Reject
from ratchet.schemas import QUARANTINE
from ratchet.store import quarantine_dir

if TYPE_CHECKING:
    from ratchet.ingest.pipeline import FileReport, IngestContext, _Pending

logger = logging.getLogger(__name__)

# A task loses a race at most once per concurrent writer of the same records; this bounds a
# pathological loop (each attempt makes progress: it drops the keys it lost).
COMMIT_ATTEMPTS = 8


class CommitRaceError(RuntimeError):
    """A batch could not commit after :data:`COMMIT_ATTEMPTS` lost races (value-free)."""


def commit_pending(
    ctx: IngestContext, source: str, pending: _Pending, report: FileReport,
    spec: PrepareSpec | None = None,
) -> None:  # fmt: skip
    """Commit a batch's parts and keys in one short transaction under the agents' lock;
    on a lost race, drop what the winner stored and try again."""
    for attempt in range(1, COMMIT_ATTEMPTS + 1):
        try:
            with ctx.sessions() as s, s.begin():
                repo.lock_agents_for_commit(s, [agent for _, _, agent, _ in pending.parts])
                for table_name, part, agent, day in pending.parts:
                    record = repo.PartRecord(
                        table_name=table_name, path=part.path, rows=part.rows,
                        content_hash=part.content_hash, redaction_version=ctx.redactor.version,
                        agent_id=agent, partition_date=day, source_file_id=source,
                        bytes=part.bytes, schema_fingerprint=part.schema_fingerprint,
                    )  # fmt: skip
                    keys: Any = pending.keys.get(part.path, ())  # (id, hash[, iid])
                    repo.record_part(s, record, keys)
        except DuplicateRecordKeyError:
            lost = _drop_lost(ctx, pending, report, spec)
            logger.info(
                "%s: a concurrent writer committed %d of this batch's records first "
                "(attempt %d); rewriting the batch's parts without them",
                report.name, lost, attempt,
            )  # fmt: skip
            continue
        report.parts.extend(part.path for _, part, _, _ in pending.parts)
        return
    raise CommitRaceError(
        f"{report.name} ({source[:12]}): the batch lost {COMMIT_ATTEMPTS} commit races in a "
        f"row to concurrent writers of the same records; nothing of it was committed (rerun)"
    )


def _drop_lost(
    ctx: IngestContext, pending: _Pending, report: FileReport, spec: PrepareSpec | None
) -> int:
    """Rewrite ``pending`` without the records another writer committed since the lookup."""
    kept: list[Any] = []
    conflicts: list[dict[str, Any]] = []
    lost_total = 0
    for entry in pending.parts:
        table_name, part, agent, day = entry
        keys = pending.keys.get(part.path) or []
        if table_name not in RECORD_KIND or not keys or agent is None:
            kept.append(entry)
            continue
        with ctx.sessions() as s:
            stored = repo.lookup_keys(s, RECORD_KIND[table_name], agent, [k[0] for k in keys])
        if not stored:
            kept.append(entry)
            continue
        table: pa.Table = pending.tables[part.path]
        keep: list[int] = []
        for i, key in enumerate(keys):
            previous = stored.get(key[0])
            if previous is None:
                keep.append(i)
                continue
            lost_total += 1
            report.stored[table_name] -= 1
            if previous == key[1]:
                report.skipped_stored[table_name] += 1
            else:
                conflicts.append(_conflict_row(ctx, spec, report, table_name, table, i))
        del pending.keys[part.path]
        if keep:
            rows = table.take(keep)
            new = ctx.store.write_part(part.path.rsplit("/", 1)[0], rows, SCHEMA[table_name])
            pending.tables[new.path] = rows
            pending.keys[new.path] = [keys[i] for i in keep]
            kept.append((table_name, new, agent, day))
    if conflicts:
        if spec is None:
            raise CommitRaceError(
                f"{report.name}: a concurrent writer stored other content under ids of this "
                f"batch; rerun to quarantine them as conflicting_duplicate"
            )
        for row in conflicts:
            report.quarantined[row["reason"]] += 1
        q = quarantine_table(conflicts)
        kept.append(
            ("quarantine", ctx.store.write_part(quarantine_dir(spec.source), q, QUARANTINE),
             None, None)
        )  # fmt: skip
    pending.parts[:] = kept
    return lost_total


def _conflict_row(
    ctx: IngestContext, spec: PrepareSpec | None, report: FileReport, table_name: str,
    table: pa.Table, index: int,
) -> dict[str, Any]:  # fmt: skip
    """A ``conflicting_duplicate`` quarantine row for a (redacted) record another writer beat."""
    row = table.slice(index, 1).to_pylist()[0]  # redacted already
    if spec is None:
        return {"reason": "conflicting_duplicate"}
    id_col = "interaction_id" if table_name == "interactions" else "feedback_id"
    why = Reject("conflicting_duplicate", f"{id_col} already stored with other content")
    raw = json.dumps(row, ensure_ascii=False, default=str).encode()
    return quarantine_row(spec, ctx.redactor, row["source_line"], RECORD_KIND[table_name], why, raw)
