"""Deletion tombstones, checked by ingest from the first day so a forgotten user stays forgotten.

Functions take the caller's session (see :mod:`ratchet.db.repo`)."""

from __future__ import annotations

import hashlib
from collections.abc import Iterable

from sqlalchemy import or_, select
from sqlalchemy.orm import Session

from ratchet.db._common import (
    _check,
    _insert_ignore,
    _member_chunks,
)
from ratchet.db.errors import (
    NotFoundError,
)
from ratchet.db.models import (
    TOMBSTONE_KINDS,
    Tombstone,
    utcnow,
)


# ===================================================================== tombstones =================
def tombstone_id(agent_id: str | None, kind: str, value: str) -> str:
    """Deterministic id of a tombstone (the primary key makes global tombstones unique too)."""
    scope = "*" if agent_id is None else f"agent:{agent_id}"
    return hashlib.sha256(f"{scope}\x1f{kind}\x1f{value}".encode()).hexdigest()


def add_tombstone(
    session: Session,
    *,
    kind: str,
    value: str,
    agent_id: str | None = None,
    reason: str | None = None,
) -> tuple[Tombstone, bool]:
    """Record a deletion request; returns ``(row, created)`` and is idempotent.

    ``value`` is the pseudonymised user id (never the raw one) or the interaction id;
    ``agent_id`` None applies to every agent.
    """
    _check(kind, TOMBSTONE_KINDS, "tombstone kind")
    tid = tombstone_id(agent_id, kind, value)
    created = _insert_ignore(
        session,
        Tombstone,
        {
            "id": tid,
            "agent_id": agent_id,
            "kind": kind,
            "value": value,
            "reason": reason,
            "created_at": utcnow(),
        },
    )
    row = session.get(Tombstone, tid, populate_existing=True)
    if row is None:  # pragma: no cover
        raise NotFoundError(f"tombstones {tid!r} vanished")
    return row, created


def tombstoned(session: Session, agent_id: str, kind: str, values: Iterable[str]) -> set[str]:
    """Which of ``values`` are tombstoned for ``agent_id`` (its own tombstones or global ones).

    Queried in chunks, so ingest can check a whole batch of user ids or interaction ids at once.
    """
    _check(kind, TOMBSTONE_KINDS, "tombstone kind")
    hits: set[str] = set()
    applies = or_(Tombstone.agent_id == agent_id, Tombstone.agent_id.is_(None))
    any_stmt = select(Tombstone.id).where(Tombstone.kind == kind, applies).limit(1)
    if session.execute(any_stmt).first() is None:
        return hits  # the common case: nothing to forget, so no per-value queries at all
    for member in _member_chunks(session, Tombstone.value, values):
        stmt = select(Tombstone.value).where(
            Tombstone.kind == kind,
            member,
            or_(Tombstone.agent_id == agent_id, Tombstone.agent_id.is_(None)),
        )
        hits.update(session.execute(stmt).scalars())
    return hits


def list_tombstones(session: Session, *, agent_id: str | None = None) -> list[Tombstone]:
    """Tombstones that apply to ``agent_id`` (all of them when None), oldest first."""
    stmt = select(Tombstone)
    if agent_id is not None:
        stmt = stmt.where(or_(Tombstone.agent_id == agent_id, Tombstone.agent_id.is_(None)))
    return list(session.execute(stmt.order_by(Tombstone.created_at, Tombstone.id)).scalars())
