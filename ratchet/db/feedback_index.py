"""The feedback index: interaction id → the live feedback parts holding its events (issue 13).

Curation selects the interactions that received feedback in its window, then needs *every*
earlier event of those interactions, which can sit in any older feedback part of the agent.
Without an index that meant reading all of them. Rows are written in the transaction that
commits a feedback part (:func:`ratchet.db.ledger.record_part`, given the events' interaction
ids), moved by compaction and dropped when a part is retired, so the index only ever names live
parts. A live feedback part with no rows is *unindexed* (committed before migration 0002, or by
a writer that gave no interaction ids): :func:`unindexed_feedback_parts` lists those, readers
read them whole, and compaction indexes them.

Functions take the caller's session (see :mod:`ratchet.db.repo`).
"""

from __future__ import annotations

from collections.abc import Iterable

from sqlalchemy import delete, exists, insert, select
from sqlalchemy.orm import Session

from ratchet.db._common import INSERT_CHUNK, _chunks, _member_chunks
from ratchet.db.models import FeedbackIndex, Part


def index_feedback_part(
    session: Session, agent_id: str, part_id: str, interaction_ids: Iterable[str]
) -> int:
    """Record that ``part_id`` holds events of these interactions; returns the rows added.

    The ids are de-duplicated (a part holds one row per interaction however many events). The
    part row must exist in the session already (it is the foreign key).
    """
    unique = sorted(set(interaction_ids))
    if not unique:
        return 0
    if session.get_bind().dialect.name == "sqlite":
        # Plain DBAPI executemany: SQLAlchemy's per-row processing cost more than the insert
        # (the same choice as the record keys, ratchet.db.ledger._sqlite_keys).
        conn = session.connection()
        for chunk in _chunks(unique, INSERT_CHUNK):
            conn.exec_driver_sql(
                "INSERT INTO feedback_index (agent_id, interaction_id, part_id) VALUES (?, ?, ?)",
                [(agent_id, iid, part_id) for iid in chunk],
            )
        return len(unique)
    for chunk in _chunks(unique, INSERT_CHUNK):
        session.execute(
            insert(FeedbackIndex),
            [{"agent_id": agent_id, "interaction_id": iid, "part_id": part_id} for iid in chunk],
        )
    return len(unique)


def drop_feedback_index(session: Session, part_ids: Iterable[str]) -> int:
    """Remove the index rows of these parts (they are being retired); returns how many."""
    n = 0
    for member in _member_chunks(session, FeedbackIndex.part_id, part_ids):
        result = session.execute(delete(FeedbackIndex).where(member))
        n += getattr(result, "rowcount", 0) or 0
    return n


def feedback_parts_for(
    session: Session, agent_id: str, interaction_ids: Iterable[str]
) -> dict[str, str]:
    """``part_id -> path`` of the live feedback parts holding events of these interactions.

    Unindexed parts are not included: callers add :func:`unindexed_feedback_parts`.
    """
    out: dict[str, str] = {}
    for member in _member_chunks(session, FeedbackIndex.interaction_id, interaction_ids):
        stmt = (
            select(Part.id, Part.path)
            .join(FeedbackIndex, FeedbackIndex.part_id == Part.id)
            .where(FeedbackIndex.agent_id == agent_id, member, Part.retired_at.is_(None))
            .distinct()
        )
        out.update({pid: path for pid, path in session.execute(stmt).tuples()})
    return out


def unindexed_feedback_parts(session: Session, agent_id: str | None = None) -> dict[str, str]:
    """``part_id -> path`` of live feedback parts that have no index rows (read them whole)."""
    stmt = select(Part.id, Part.path).where(
        Part.table_name == "feedback",
        Part.retired_at.is_(None),
        ~exists().where(FeedbackIndex.part_id == Part.id),
    )
    if agent_id is not None:
        stmt = stmt.where(Part.agent_id == agent_id)
    return {pid: path for pid, path in session.execute(stmt.order_by(Part.path)).tuples()}
