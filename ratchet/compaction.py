"""Compaction: merge the small parts of a partition into parts of a target size (issue 13).

Ingest writes one part per (agent, day) per batch, so a shuffled input leaves many small
Parquet files, and every reader pays per file. Compaction rewrites the small parts of one
partition (agent, day, table, redaction version) into parts of ``store.compaction_target_rows``
rows and switches the ledger over in **one transaction**: the new parts are recorded, the
partition's record keys are pointed at them (their ``first_seen_at``, the arrival time curation
windows on, is kept), the feedback index follows, ``part_replacements`` records old → new, and
the old parts are retired. Readers list live parts from the ledger (never a folder), so before
the commit they see the old parts and after it the new ones: never a record twice or zero times.

Crash safety, by construction rather than by cleanup:

* killed while writing: the new files are complete but unreferenced; nobody reads them, and a
  rerun writes the same bytes under the same names (the inputs are read in path order, rows
  keep their order, and names are content hashes), then commits;
* killed inside the transaction: it rolls back, as above;
* killed after the commit: the old files stay on disk, retired, until the purge.

The purge (:func:`purge_compacted`) deletes the files of parts compaction retired more than a
grace period ago (a reader that listed them before the switch may still be reading), together
with the orphans ``ratchet store gc`` would delete: it *is* the store's garbage collector, told
that those retired parts are no longer referenced. Parts retired by anything else (erasure)
are left to their owner.

Rows are never changed: a compacted part holds the same rows, in input order, conformed to the
table's current schema exactly as every reader reads them. A rerun finds only parts at the
target size and at most one remainder per partition, so it does nothing.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, date, datetime, timedelta

import pyarrow as pa
from sqlalchemy import bindparam, func, insert, select, update
from sqlalchemy.orm import Session, sessionmaker

from ratchet import schemas
from ratchet.config import StoreConfig
from ratchet.db import repo
from ratchet.db._common import _member_chunks
from ratchet.db.errors import ConflictError
from ratchet.db.feedback_index import index_feedback_part, unindexed_feedback_parts
from ratchet.db.models import FeedbackIndex, Part, PartReplacement, RecordKey
from ratchet.store import (
    GcReport,
    Store,
    WrittenPart,
    collect_orphans,
    feedback_dir,
    interactions_dir,
)

logger = logging.getLogger(__name__)

COMPACTED_TABLES = ("interactions", "feedback")
_ID_COLUMN = {"interactions": "interaction_id", "feedback": "feedback_id"}
_KIND = {"interactions": "interaction", "feedback": "feedback"}
_SCHEMA = {"interactions": schemas.INTERACTIONS, "feedback": schemas.FEEDBACK}
_DIR: dict[str, Callable[[str, date | str], str]] = {
    "interactions": interactions_dir,
    "feedback": feedback_dir,
}


class CompactionConflict(ConflictError):
    """The partition changed while it was compacted (a part retired, a record key moved by a
    concurrent erasure or compaction): nothing was committed; run compaction again."""


@dataclass(frozen=True)
class SmallPart:
    """A live part that compaction may merge (what the plan needs from its ledger row)."""

    id: str
    path: str
    rows: int
    bytes: int


@dataclass(frozen=True)
class PartitionPlan:
    """The small parts of one partition, merged together into ``out_parts`` parts."""

    table_name: str
    agent_id: str
    day: date
    redaction_version: str
    parts: tuple[SmallPart, ...]
    target_rows: int

    @property
    def rows(self) -> int:
        return sum(p.rows for p in self.parts)

    @property
    def out_parts(self) -> int:
        return -(-self.rows // self.target_rows)

    def label(self) -> str:
        return f"{self.table_name}/agent={self.agent_id}/date={self.day}"


@dataclass
class CompactionReport:
    """What one compaction run found and did (counts and partition labels, never data)."""

    dry_run: bool = False
    partitions: int = 0
    parts_in: int = 0
    parts_out: int = 0
    rows: int = 0
    bytes_in: int = 0
    bytes_out: int = 0  # 0 on a dry run: nothing is written
    indexed_parts: int = 0  # unindexed feedback parts entered in the feedback index
    conflicts: list[str] = field(default_factory=list)  # partitions left for the next run
    purge: dict[str, object] | None = None  # the purge's GcReport (None: not run)

    def as_dict(self) -> dict[str, object]:
        return asdict(self)


# --- planning -----------------------------------------------------------------------------------
def plan_compaction(
    session: Session, config: StoreConfig, agent_id: str | None = None
) -> list[PartitionPlan]:
    """The partitions worth compacting: at least ``compaction_min_parts`` small live parts.

    Parts of different redaction versions are never merged (each part records the rule set
    that redacted it). Partitions come in a stable order (table, agent, day, version).
    """
    stmt = select(Part).where(
        Part.table_name.in_(COMPACTED_TABLES),
        Part.retired_at.is_(None),
        Part.rows < config.compaction_target_rows,
        Part.agent_id.is_not(None),
        Part.partition_date.is_not(None),
    )
    if agent_id is not None:
        stmt = stmt.where(Part.agent_id == agent_id)
    groups: dict[tuple[str, str, date, str], list[SmallPart]] = defaultdict(list)
    for p in session.execute(stmt).scalars():
        if p.partition_date is None or p.agent_id is None:  # excluded above; narrows the types
            continue
        key = (p.table_name, p.agent_id, p.partition_date, p.redaction_version)
        groups[key].append(SmallPart(p.id, p.path, p.rows, p.bytes or 0))
    return [
        PartitionPlan(t, a, d, v, tuple(sorted(parts, key=lambda p: p.path)),
                      config.compaction_target_rows)
        for (t, a, d, v), parts in sorted(groups.items())
        if len(parts) >= config.compaction_min_parts
    ]  # fmt: skip


# --- one partition ------------------------------------------------------------------------------
@dataclass(frozen=True)
class _Output:
    part: WrittenPart
    ids: list[str]
    interaction_ids: list[str]


def write_compacted(store: Store, plan: PartitionPlan) -> list[_Output]:
    """Write the merged parts (not yet committed): inputs in path order, rows in their order,
    cut every ``target_rows``. Memory holds one output part and one input part at a time."""
    table_name = plan.table_name
    schema = _SCHEMA[table_name]
    directory = _DIR[table_name](plan.agent_id, plan.day)
    outputs: list[_Output] = []

    def emit(chunk: pa.Table) -> None:
        chunk = chunk.combine_chunks()  # bytes must depend on the rows only, not on chunking
        written = store.write_part(directory, chunk, schema)
        iids = chunk["interaction_id"].to_pylist() if table_name == "feedback" else []
        outputs.append(_Output(written, chunk[_ID_COLUMN[table_name]].to_pylist(), iids))

    buffered: list[pa.Table] = []
    n = 0
    for part in plan.parts:
        table = store.read_table(part.path, schema)
        buffered.append(table)
        n += table.num_rows
        while n >= plan.target_rows:
            merged = pa.concat_tables(buffered)
            emit(merged.slice(0, plan.target_rows))
            rest = merged.slice(plan.target_rows)
            buffered, n = ([rest] if rest.num_rows else []), rest.num_rows
    if n:
        emit(pa.concat_tables(buffered))
    return outputs


def _keys_pointing_at(session: Session, part_ids: Iterable[str]) -> int:
    """Record keys that point at these parts. By ``part_id`` alone, on purpose: a part belongs
    to one table and agent, and with ``kind`` and ``agent_id`` in the filter SQLite's planner
    walks the primary key (every key of the agent) instead of the ``part_id`` index: 1M keys
    took minutes per compaction, one scan per partition."""
    n = 0
    for member in _member_chunks(session, RecordKey.part_id, part_ids):
        n += int(session.execute(select(func.count()).where(member)).scalar_one())
    return n


def _move_keys(
    session: Session, kind: str, agent_id: str, part_id: str, ids: Sequence[str]
) -> None:
    """Point these records' keys at their new part (``first_seen_at`` untouched)."""
    if session.get_bind().dialect.name == "sqlite":  # plain executemany: see ledger._sqlite_keys
        session.connection().exec_driver_sql(
            "UPDATE record_keys SET part_id = ? WHERE kind = ? AND agent_id = ? AND record_id = ?",
            [(part_id, kind, agent_id, rid) for rid in ids],
        )
        return
    stmt = (
        update(RecordKey)
        .where(
            RecordKey.kind == kind,
            RecordKey.agent_id == agent_id,
            RecordKey.record_id == bindparam("rid"),
        )
        .values(part_id=part_id)
    )
    session.connection().execute(stmt, [{"rid": rid} for rid in ids])


def commit_compaction(session: Session, plan: PartitionPlan, outputs: Sequence[_Output]) -> None:
    """The switch, in the caller's transaction: new parts in, keys and index moved, old parts
    retired. Raises :class:`CompactionConflict` (the caller rolls back) when the partition is
    not what the plan saw.

    An output that is byte for byte one of the inputs (the remainder of a cut that fell on a
    part boundary) has that input's name: the input simply stays, untouched.
    """
    kind = _KIND[plan.table_name]
    rows = sum(len(o.ids) for o in outputs)
    if rows != plan.rows:
        raise CompactionConflict(f"{plan.label()}: read {rows} rows, the ledger lists {plan.rows}")
    same = {o.part.path for o in outputs} & {p.path for p in plan.parts}
    old_ids = [p.id for p in plan.parts if p.path not in same]
    fresh = [o for o in outputs if o.part.path not in same]
    moving = sum(len(o.ids) for o in fresh)
    if not old_ids:
        return
    repo.lock_agents_for_commit(session, [plan.agent_id])  # serial with the agent's ingest commits
    if _keys_pointing_at(session, old_ids) != moving:
        raise CompactionConflict(f"{plan.label()}: record keys changed since planning")
    new_ids: list[str] = []
    for out in fresh:
        record = repo.PartRecord(
            table_name=plan.table_name, path=out.part.path, rows=out.part.rows,
            content_hash=out.part.content_hash, redaction_version=plan.redaction_version,
            agent_id=plan.agent_id, partition_date=plan.day, bytes=out.part.bytes,
            schema_fingerprint=out.part.schema_fingerprint,
        )  # fmt: skip
        row = repo.record_part(session, record)
        if row.retired_at is not None:
            raise CompactionConflict(f"{plan.label()}: part {row.path} is recorded as retired")
        _move_keys(session, kind, plan.agent_id, row.id, out.ids)
        if plan.table_name == "feedback":
            index_feedback_part(session, plan.agent_id, row.id, out.interaction_ids)
        new_ids.append(row.id)
    if _keys_pointing_at(session, old_ids) or (_keys_pointing_at(session, new_ids) != moving):
        raise CompactionConflict(f"{plan.label()}: record keys did not all move")
    session.execute(
        insert(PartReplacement),
        [{"old_part_id": o, "new_part_id": n} for o in old_ids for n in new_ids],
    )
    if repo.retire_parts(session, old_ids) != len(old_ids):  # also drops their index rows
        raise CompactionConflict(f"{plan.label()}: a part was retired by someone else")


def compact_partition(
    store: Store, sessions: sessionmaker[Session], plan: PartitionPlan
) -> list[WrittenPart]:
    """Write, then switch in one short transaction; returns the parts written."""
    outputs = write_compacted(store, plan)
    with sessions() as s, s.begin():
        commit_compaction(s, plan, outputs)
    return [o.part for o in outputs]


# --- the feedback index of parts written before it existed -------------------------------------
def index_unindexed_feedback(
    store: Store, sessions: sessionmaker[Session], agent_id: str | None = None
) -> int:
    """Enter live feedback parts that have no index rows into the feedback index; returns how
    many (parts committed before migration 0002, or by a writer that gave no interaction ids)."""
    with sessions() as s:
        todo = unindexed_feedback_parts(s, agent_id)
    done = 0
    for pid, path in todo.items():
        iids = store.read_table(path, schemas.FEEDBACK, ["interaction_id"])["interaction_id"]
        with sessions() as s, s.begin():
            part = s.get(Part, pid)
            indexed = s.execute(select(FeedbackIndex.part_id).where(FeedbackIndex.part_id == pid))
            if part is None or part.retired_at is not None or indexed.first() is not None:
                continue  # retired or indexed meanwhile
            index_feedback_part(s, str(part.agent_id), pid, iids.to_pylist())
            done += 1
    return done


# --- purge ----------------------------------------------------------------------------------------
def compacted_retired_paths(session: Session, before: datetime) -> set[str]:
    """Paths of the parts compaction retired before ``before``."""
    stmt = (
        select(Part.path)
        .join(PartReplacement, PartReplacement.old_part_id == Part.id)
        .where(Part.retired_at.is_not(None), Part.retired_at < before)
        .distinct()
    )
    return set(session.execute(stmt).scalars())


def purge_compacted(
    store: Store,
    sessions: sessionmaker[Session],
    *,
    grace: timedelta,
    dry_run: bool = False,
    now: datetime | None = None,
) -> GcReport:
    """Delete the files of parts compaction retired more than ``grace`` ago, and the orphans
    :func:`ratchet.store.collect_orphans` deletes (same grace on file age)."""
    now = now or datetime.now(UTC)

    def referenced() -> set[str]:
        with sessions() as s:
            return repo.referenced_part_paths(s) - compacted_retired_paths(s, now - grace)

    return collect_orphans(store, referenced, grace=grace, dry_run=dry_run, now=now)


# --- a whole run --------------------------------------------------------------------------------
def compact(
    store: Store,
    sessions: sessionmaker[Session],
    config: StoreConfig,
    *,
    agent_id: str | None = None,
    dry_run: bool = False,
    purge: bool = True,
    grace: timedelta | None = None,
    now: datetime | None = None,
) -> CompactionReport:
    """Compact every partition worth it (one agent's, or all), index unindexed feedback parts,
    then purge what earlier runs retired. A partition that changed meanwhile is skipped and
    named in ``conflicts`` (nothing of it committed); the others go on."""
    report = CompactionReport(dry_run=dry_run)
    with sessions() as s:
        plans = plan_compaction(s, config, agent_id)
    for plan in plans:
        report.partitions += 1
        report.parts_in += len(plan.parts)
        report.rows += plan.rows
        report.bytes_in += sum(p.bytes for p in plan.parts)
        if dry_run:
            report.parts_out += plan.out_parts
            continue
        try:
            written = compact_partition(store, sessions, plan)
        except CompactionConflict as exc:
            logger.warning("compaction skipped %s: %s", plan.label(), exc)
            report.conflicts.append(plan.label())
            continue
        report.parts_out += len(written)
        report.bytes_out += sum(w.bytes for w in written)
        logger.info(
            "compacted %s: %d parts, %d rows -> %d parts", plan.label(), len(plan.parts),
            plan.rows, len(written),
        )  # fmt: skip
    if not dry_run:
        report.indexed_parts = index_unindexed_feedback(store, sessions, agent_id)
    if purge:
        wait = timedelta(seconds=config.compaction_grace_s) if grace is None else grace
        gc = purge_compacted(store, sessions, grace=wait, dry_run=dry_run, now=now)
        report.purge = gc.as_dict()
    return report
