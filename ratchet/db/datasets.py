"""Dataset versions and their lineage: content-addressed, so registering twice is a no-op.

Functions take the caller's session (see :mod:`ratchet.db.repo`)."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from sqlalchemy import Select, insert, select
from sqlalchemy.orm import Session

from ratchet.db._common import (
    _check,
    _get,
    _insert_ignore,
)
from ratchet.db.errors import (
    ConflictError,
    NotFoundError,
)
from ratchet.db.models import (
    DATASET_KINDS,
    LINEAGE_REF_KINDS,
    DatasetLineage,
    DatasetVersion,
    utcnow,
)


# ===================================================================== dataset versions ===========
class _Auto:
    """Sentinel type: derive the parent from the latest version of the same agent and kind."""


AUTO = _Auto()


def latest_dataset_version(session: Session, agent_id: str, kind: str) -> DatasetVersion | None:
    """The most recently registered version of ``kind`` for ``agent_id``."""
    stmt = (
        select(DatasetVersion)
        .where(DatasetVersion.agent_id == agent_id, DatasetVersion.kind == kind)
        .order_by(DatasetVersion.created_at.desc(), DatasetVersion.id.desc())
        .limit(1)
    )
    return session.execute(stmt).scalar_one_or_none()


def register_dataset_version(
    session: Session,
    *,
    version_id: str,
    agent_id: str,
    kind: str,
    path: str,
    rows: int,
    schema_fingerprint: str,
    config_hash: str,
    flow_run_id: str | None = None,
    stats: Mapping[str, Any] | None = None,
    lineage: Iterable[tuple[str, str]] = (),
    parent_id: str | _Auto | None = AUTO,
) -> tuple[DatasetVersion, bool]:
    """Register a curated table; returns ``(row, created)``.

    The id is a content hash, so registering it again (a rerun, or another run that made the
    same data from the same config) is a no-op returning the stored row with ``created=False``;
    its lineage and flow run stay those of the first registration. The insert is
    ``ON CONFLICT DO NOTHING``, so two concurrent registrations both succeed. The same id with a
    different agent or kind raises :class:`ConflictError`. ``parent_id`` defaults to the latest
    version of the same agent and kind.
    """
    _check(kind, DATASET_KINDS, "dataset kind")
    refs = sorted(set(lineage))
    for ref_kind, _ref in refs:
        _check(ref_kind, LINEAGE_REF_KINDS, "lineage ref_kind")
    existing = session.get(DatasetVersion, version_id)
    if existing is None:
        if isinstance(parent_id, _Auto):
            latest = latest_dataset_version(session, agent_id, kind)
            parent = latest.id if latest is not None else None
        else:
            parent = parent_id
        created = _insert_ignore(
            session,
            DatasetVersion,
            {
                "id": version_id,
                "agent_id": agent_id,
                "kind": kind,
                "path": path,
                "rows": rows,
                "schema_fingerprint": schema_fingerprint,
                "config_hash": config_hash,
                "parent_id": parent,
                "created_at": utcnow(),
                "flow_run_id": flow_run_id,
                "stats": dict(stats or {}),
            },
        )
        if created and refs:
            session.execute(
                insert(DatasetLineage),
                [{"version_id": version_id, "ref_kind": k, "ref": r} for k, r in refs],
            )
        existing = session.get(DatasetVersion, version_id, populate_existing=True)
        if existing is None:  # pragma: no cover - inserted or already there
            raise NotFoundError(f"dataset_versions {version_id!r} vanished")
    else:
        created = False
    if existing.agent_id != agent_id or existing.kind != kind:
        raise ConflictError(
            f"dataset version {version_id!r} exists for agent {existing.agent_id!r} kind "
            f"{existing.kind!r}, not {agent_id!r}/{kind!r}"
        )
    return existing, created


def get_dataset_version(session: Session, version_id: str) -> DatasetVersion:
    """The dataset version, or :class:`NotFoundError`."""
    return _get(session, DatasetVersion, version_id)


def list_dataset_versions(
    session: Session,
    *,
    agent_id: str | None = None,
    kind: str | None = None,
    limit: int = 100,
) -> list[DatasetVersion]:
    """Dataset versions, newest first."""
    stmt: Select[tuple[DatasetVersion]] = select(DatasetVersion)
    if agent_id is not None:
        stmt = stmt.where(DatasetVersion.agent_id == agent_id)
    if kind is not None:
        stmt = stmt.where(DatasetVersion.kind == kind)
    stmt = stmt.order_by(DatasetVersion.created_at.desc(), DatasetVersion.id).limit(limit)
    return list(session.execute(stmt).scalars())


def dataset_lineage(session: Session, version_id: str) -> list[tuple[str, str]]:
    """What a version was made from: sorted ``(ref_kind, ref)`` pairs."""
    stmt = (
        select(DatasetLineage.ref_kind, DatasetLineage.ref)
        .where(DatasetLineage.version_id == version_id)
        .order_by(DatasetLineage.ref_kind, DatasetLineage.ref)
    )
    return [(k, r) for k, r in session.execute(stmt).tuples()]


def versions_referencing(session: Session, ref_kind: str, ref: str) -> list[str]:
    """Ids of the dataset versions made from ``ref`` (which versions an erasure must rebuild)."""
    stmt = select(DatasetLineage.version_id).where(
        DatasetLineage.ref_kind == ref_kind, DatasetLineage.ref == ref
    )
    return sorted(session.execute(stmt).scalars())
