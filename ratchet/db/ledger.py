"""The ingest ledger: source files, parts and record keys, and pipeline runs.

Ingest is exactly-once because of these rows: a part counts only once its row (and its record
keys) committed, and readers list parts from here, never by listing folders.

Functions take the caller's session (see :mod:`ratchet.db.repo`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from typing import Any, NamedTuple, TypedDict

from sqlalchemy import insert, select, update
from sqlalchemy import text as sql_text
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from ratchet.db._common import (
    _PART_TABLE_TO_RECORD_KIND,
    IN_CHUNK,
    INSERT_CHUNK,
    _check,
    _chunks,
    _get,
    _is_unique_violation,
    _member_chunks,
)
from ratchet.db.errors import (
    ConflictError,
    DuplicateRecordKeyError,
    InvalidTransitionError,
)
from ratchet.db.feedback_index import drop_feedback_index, index_feedback_part
from ratchet.db.models import (
    PART_TABLES,
    RECORD_KINDS,
    SOURCE_FILE_KINDS,
    TERMINAL_RUN_STATUSES,
    Part,
    PipelineRun,
    RecordKey,
    SourceFile,
    new_id,
    utcnow,
)


# ===================================================================== source files ===============
def begin_source_file(
    session: Session,
    *,
    file_id: str,
    kind: str,
    name: str,
    size_bytes: int,
    flow_run_id: str | None = None,
) -> tuple[SourceFile, bool]:
    """Start ingesting a file; returns ``(row, should_process)``.

    A completed file is not processed again (``False``): ingest is idempotent by file hash.
    A file left ``in_progress`` (a crash) or ``failed`` is taken up again with ``attempts`` + 1;
    its parts may have been written but only committed parts count, and record keys make the
    retry store each record once.
    """
    _check(kind, SOURCE_FILE_KINDS, "source file kind")
    row = session.get(SourceFile, file_id, with_for_update=True)
    if row is None:
        row = SourceFile(
            id=file_id,
            kind=kind,
            name=name,
            bytes=size_bytes,
            status="in_progress",
            counts={},
            flow_run_id=flow_run_id,
            attempts=1,
        )
        session.add(row)
        session.flush()
        return row, True
    if row.status == "completed":
        return row, False
    row.status = "in_progress"
    row.attempts += 1
    row.error = None
    row.flow_run_id = flow_run_id
    session.flush()
    return row, True


def complete_source_file(
    session: Session, file_id: str, *, lines: int, counts: Mapping[str, Any]
) -> SourceFile:
    """Mark a file ingested, with its line count and counts (stored, skipped, quarantined...)."""
    row = _get(session, SourceFile, file_id)
    row.status = "completed"
    row.lines = lines
    row.counts = dict(counts)
    row.completed_at = utcnow()
    row.error = None
    session.flush()
    return row


def fail_source_file(session: Session, file_id: str, *, error: str) -> SourceFile:
    """Mark a file failed; ``error`` must be value-free (error class and rule, no content)."""
    row = _get(session, SourceFile, file_id)
    row.status = "failed"
    row.error = error
    session.flush()
    return row


def get_source_file(session: Session, file_id: str) -> SourceFile | None:
    """The source file row, or None when ingest has never seen this file."""
    return session.get(SourceFile, file_id)


# ===================================================================== parts and record keys ======
class PartKey(NamedTuple):
    """One stored record of a part: its id (interaction_id or feedback_id) and content hash."""

    record_id: str
    content_hash: str


@dataclass(frozen=True, slots=True)
class PartRecord:
    """A Parquet part just written to the store, to be committed with its record keys.

    ``id`` defaults to a hash of ``path``: paths are content-derived, so a rerun that writes the
    same part records the same id. ``path`` is relative to the store root.
    """

    table_name: str
    path: str
    rows: int
    content_hash: str
    redaction_version: str
    agent_id: str | None = None
    partition_date: date | None = None
    source_file_id: str | None = None
    bytes: int | None = None
    schema_fingerprint: str | None = None
    id: str = field(default="")

    def part_id(self) -> str:
        return self.id or hashlib.sha256(self.path.encode()).hexdigest()[:32]


class RecordKeyRow(TypedDict, total=False):
    """A row for :func:`insert_keys`; ``first_seen_at`` defaults to now."""

    kind: str
    agent_id: str
    record_id: str
    content_hash: str
    part_id: str
    first_seen_at: datetime


def lookup_keys(session: Session, kind: str, agent_id: str, ids: Iterable[str]) -> dict[str, str]:
    """Stored content hashes of the given record ids (``id -> content_hash``); unknown ids absent.

    Queried in chunks (see :func:`_member_chunks`), so any number of ids works on both engines.
    """
    _check(kind, RECORD_KINDS, "record kind")
    found: dict[str, str] = {}
    if session.get_bind().dialect.name == "sqlite":
        return _sqlite_lookup(session, kind, agent_id, ids)
    for member in _member_chunks(session, RecordKey.record_id, ids):
        stmt = select(RecordKey.record_id, RecordKey.content_hash).where(
            RecordKey.kind == kind, RecordKey.agent_id == agent_id, member
        )
        found.update({rid: h for rid, h in session.execute(stmt).tuples()})
    return found


def _sqlite_lookup(
    session: Session, kind: str, agent_id: str, ids: Iterable[str]
) -> dict[str, str]:
    """SQLite: plain DBAPI queries of :data:`IN_CHUNK` ids. Compiling a 900-parameter IN
    clause through SQLAlchemy for every chunk cost more than running it (ingest profile)."""
    unique = sorted(set(ids))
    conn = session.connection()
    found: dict[str, str] = {}
    for chunk in _chunks(unique, IN_CHUNK):
        # Only "?" placeholders are formatted into the IN list.
        sql = (
            "SELECT record_id, content_hash FROM record_keys WHERE kind = ? AND agent_id = ? "  # noqa: S608
            f"AND record_id IN ({', '.join('?' * len(chunk))})"
        )
        found.update((r, h) for r, h in conn.exec_driver_sql(sql, (kind, agent_id, *chunk)))
    return found


def insert_keys(session: Session, rows: Iterable[RecordKeyRow | Mapping[str, Any]]) -> int:
    """Bulk-insert record keys; returns how many.

    One executemany per :data:`INSERT_CHUNK` rows through SQLAlchemy's insertmanyvalues path (no
    ORM objects), so hundreds of thousands of keys take seconds. A key already stored raises
    :class:`DuplicateRecordKeyError` and poisons the caller's transaction: callers look keys up
    first, so this means a concurrent writer, and the part must not commit.
    """
    now = utcnow()
    batch: list[dict[str, Any]] = []
    total = 0
    dialect = session.get_bind().dialect.name
    use_copy = dialect == "postgresql"
    if use_copy:
        session.flush()  # the parts these keys point at must exist before COPY checks them

    def flush_batch() -> None:
        nonlocal total
        if not batch:
            return
        if use_copy:
            _copy_keys(session, batch)
        else:
            try:
                if dialect == "sqlite":
                    _sqlite_keys(session, batch)
                else:
                    session.execute(insert(RecordKey), batch)
            except IntegrityError as exc:
                if _is_unique_violation(exc):
                    raise DuplicateRecordKeyError(_DUPLICATE_KEY_MESSAGE) from exc
                raise
        total += len(batch)
        batch.clear()

    for row in rows:
        item = dict(row)
        item.setdefault("first_seen_at", now)
        batch.append(item)
        if len(batch) >= INSERT_CHUNK:
            flush_batch()
    flush_batch()
    return total


_DUPLICATE_KEY_MESSAGE = "a record key is already stored (concurrent ingest of the same records?)"
_COPY_ESCAPES = str.maketrans({"\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r"})
_KEY_COLUMNS = ("kind", "agent_id", "record_id", "content_hash", "part_id")


def _sqlite_keys(session: Session, batch: Sequence[Mapping[str, Any]]) -> None:
    """SQLite: one DBAPI executemany of plain tuples on the session's connection.

    SQLAlchemy's per-row parameter processing (the UTC type decorator, literal coercion) cost
    about 2 s per 60k keys in an ingest profile, more than the insert itself. The timestamp is
    written in the text form SQLAlchemy's SQLite ``DateTime`` reads back (naive UTC).
    """
    stamps: dict[datetime, str] = {}  # rows of one call share one timestamp object

    def stamp(value: datetime | None) -> str:
        value = value or utcnow()
        text = stamps.get(value)
        if text is None:
            text = stamps[value] = value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
        return text

    rows = [(*(row[c] for c in _KEY_COLUMNS), stamp(row.get("first_seen_at"))) for row in batch]
    # In primary-key order: each index page is visited once per call, not once per key (ids
    # are random; at 600k keys a 10k-key call went from ~59 to ~50 µs a key,
    # benchmarks/README.md).
    rows.sort()
    session.connection().exec_driver_sql(
        "INSERT INTO record_keys (kind, agent_id, record_id, content_hash, part_id, first_seen_at)"
        " VALUES (?, ?, ?, ?, ?, ?)",
        rows,
    )


def _copy_keys(session: Session, batch: Sequence[Mapping[str, Any]]) -> None:
    """PostgreSQL: ``COPY ... FROM STDIN`` on the session's own connection (same transaction).

    Measured here: 100k keys in about 1.4 s, against about 4.5 s for psycopg's pipelined
    executemany, so a 500k-record ingest records its keys in seconds on both engines.
    """
    import psycopg

    lines = []
    for row in batch:
        seen = row.get("first_seen_at") or utcnow()
        fields = [str(row[c]).translate(_COPY_ESCAPES) for c in _KEY_COLUMNS]
        lines.append("\t".join(fields) + "\t" + seen.astimezone(UTC).isoformat() + "\n")
    raw: Any = session.connection().connection.driver_connection
    sql = f"COPY record_keys ({', '.join(_KEY_COLUMNS)}, first_seen_at) FROM STDIN"
    try:
        with raw.cursor() as cur, cur.copy(sql) as copy:
            copy.write("".join(lines).encode())
    except psycopg.errors.UniqueViolation as exc:
        raise DuplicateRecordKeyError(_DUPLICATE_KEY_MESSAGE) from exc


def record_part(
    session: Session,
    part: PartRecord,
    keys: Sequence[PartKey | tuple[str, str] | tuple[str, str, str]] = (),
) -> Part:
    """Record a written part together with its record keys, in the caller's transaction.

    Call it after the file is in the store and inside ``with factory() as s, s.begin():``: the
    part row and its keys then commit or roll back together, so a reader never sees a part
    without its keys or keys pointing at a missing part. Recording the same path again with the
    same content hash returns the stored part and adds nothing (a rerun after a lost commit
    acknowledgement); a different content hash at the same path raises :class:`ConflictError`.
    Quarantine parts carry no keys. Feedback keys may carry a third element, the event's
    ``interaction_id``: then the part is entered in the feedback index in the same transaction
    (:mod:`ratchet.db.feedback_index`; without it the part stays unindexed, read whole).
    """
    _check(part.table_name, PART_TABLES, "part table_name")
    kind = _PART_TABLE_TO_RECORD_KIND.get(part.table_name)
    agent_id = part.agent_id
    if keys and (kind is None or agent_id is None):
        raise ValueError(f"{part.table_name} parts carry no record keys (or agent_id is missing)")
    existing = session.execute(select(Part).where(Part.path == part.path)).scalar_one_or_none()
    if existing is not None:
        if existing.content_hash != part.content_hash:
            raise ConflictError(f"part {part.path!r} is already recorded with another content hash")
        return existing
    row = Part(
        id=part.part_id(),
        table_name=part.table_name,
        agent_id=part.agent_id,
        partition_date=part.partition_date,
        path=part.path,
        rows=part.rows,
        content_hash=part.content_hash,
        source_file_id=part.source_file_id,
        redaction_version=part.redaction_version,
        bytes=part.bytes,
        schema_fingerprint=part.schema_fingerprint,
    )
    session.add(row)
    session.flush()
    if keys and kind is not None and agent_id is not None:
        insert_keys(
            session,
            (
                {
                    "kind": kind,
                    "agent_id": agent_id,
                    "record_id": rid,
                    "content_hash": h,
                    "part_id": row.id,
                }
                for rid, h, *_ in keys
            ),
        )
        _index_feedback(session, part.table_name, agent_id, row.id, keys)
    return row


def lock_agents_for_commit(session: Session, agent_ids: Iterable[str | None]) -> None:
    """Hold the per-agent commit lock for the rest of the caller's transaction.

    Parallel ingest tasks (files, byte ranges of one file, two runs of the same file) prepare
    their batches with no lock, look their keys up, write their parts, and only then commit;
    this lock makes that commit short and one agent's commits serial, so a task that lost a
    race sees the winner's keys when it looks again instead of colliding with rows still in
    flight. PostgreSQL: ``pg_advisory_xact_lock`` per agent, taken in sorted order (two tasks
    with overlapping agents never wait on each other in a cycle) and released by the commit or
    rollback. SQLite: nothing more to take, since every transaction there starts with ``BEGIN
    IMMEDIATE`` (:mod:`ratchet.db.session`), which already holds the database's write lock.
    The unique key on (kind, agent, record id) stays the guard: the lock only keeps collisions
    rare and retries short.
    """
    if session.get_bind().dialect.name != "postgresql":
        return
    for agent in sorted({a or "" for a in agent_ids}):
        session.execute(
            sql_text("SELECT pg_advisory_xact_lock(:k)"), {"k": _commit_lock_key(agent)}
        )


def _commit_lock_key(agent_id: str) -> int:
    """A signed 64-bit advisory lock key for an agent (namespaced, stable across processes)."""
    digest = hashlib.sha256(b"ratchet-commit:" + agent_id.encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


def _index_feedback(
    session: Session,
    table_name: str,
    agent_id: str,
    part_id: str,
    keys: Sequence[PartKey | tuple[str, str] | tuple[str, str, str]],
) -> None:
    """The feedback index rows of a new feedback part, when its keys name their interactions."""
    with_ids = sum(len(k) > 2 for k in keys)
    if table_name != "feedback" or not with_ids:
        return
    if with_ids != len(keys):  # a half-indexed part would hide events from curation
        raise ValueError("feedback keys must all carry an interaction_id, or none")
    index_feedback_part(session, agent_id, part_id, (k[2] for k in keys))  # type: ignore[misc]


def list_parts(
    session: Session,
    table_name: str,
    *,
    agent_id: str | None = None,
    since: date | None = None,
    until: date | None = None,
    include_retired: bool = False,
) -> list[Part]:
    """Committed parts of a table, ordered by partition date then path.

    The window is half-open, ``[since, until)``, on ``partition_date``; parts without a date are
    returned only when no window is given. Retired parts are skipped unless asked for.
    """
    _check(table_name, PART_TABLES, "part table_name")
    stmt = select(Part).where(Part.table_name == table_name)
    if agent_id is not None:
        stmt = stmt.where(Part.agent_id == agent_id)
    if since is not None:
        stmt = stmt.where(Part.partition_date >= since)
    if until is not None:
        stmt = stmt.where(Part.partition_date < until)
    if not include_retired:
        stmt = stmt.where(Part.retired_at.is_(None))
    stmt = stmt.order_by(Part.partition_date, Part.path)
    return list(session.execute(stmt).scalars())


def source_file_parts(
    session: Session, source_file_id: str, table_name: str | None = None
) -> list[Part]:
    """Committed parts written from one source file (a retry reads its earlier quarantine)."""
    stmt = select(Part).where(Part.source_file_id == source_file_id)
    if table_name is not None:
        _check(table_name, PART_TABLES, "part table_name")
        stmt = stmt.where(Part.table_name == table_name)
    return list(session.execute(stmt.order_by(Part.path)).scalars())


def referenced_part_paths(session: Session) -> set[str]:
    """Every part path the ledger holds, retired ones included: what orphan cleanup keeps
    (a retired part is the erasure code's to delete, not the garbage collector's)."""
    return set(session.execute(select(Part.path)).scalars())


def retire_parts(session: Session, part_ids: Iterable[str]) -> int:
    """Mark parts replaced (erasure rewrite, compaction); readers stop listing them, and their
    feedback index rows go (the index names live parts only)."""
    ids = sorted(set(part_ids))
    drop_feedback_index(session, ids)
    n = 0
    now = utcnow()
    for chunk in _chunks(ids, IN_CHUNK):
        result = session.execute(
            update(Part).where(Part.id.in_(chunk), Part.retired_at.is_(None)).values(retired_at=now)
        )
        n += getattr(result, "rowcount", 0) or 0
    return n


# ===================================================================== pipeline runs ==============
def start_pipeline_run(
    session: Session,
    *,
    flow_name: str,
    flow_run_id: str | None = None,
    agent_id: str | None = None,
    parameters: Mapping[str, Any] | None = None,
    run_id: str | None = None,
) -> PipelineRun:
    """Record that a pipeline flow started (``in_progress``). Parameters must hold no secrets."""
    row = PipelineRun(
        id=run_id or new_id(),
        flow_name=flow_name,
        flow_run_id=flow_run_id,
        agent_id=agent_id,
        parameters=dict(parameters or {}),
        status="in_progress",
        counts={},
    )
    session.add(row)
    session.flush()
    return row


def finish_pipeline_run(
    session: Session,
    run_id: str,
    *,
    status: str,
    counts: Mapping[str, Any] | None = None,
    error: str | None = None,
) -> PipelineRun:
    """Record how a pipeline run ended, with its counts; a finished run stays finished."""
    _check(status, TERMINAL_RUN_STATUSES, "pipeline run final status")
    row = _get(session, PipelineRun, run_id)
    if row.status in TERMINAL_RUN_STATUSES:
        raise InvalidTransitionError(f"pipeline run {run_id!r} is already {row.status}")
    row.status = status
    row.counts = dict(counts or {})
    row.error = error
    row.finished_at = utcnow()
    session.flush()
    return row
