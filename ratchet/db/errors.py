"""Typed errors of the training database.

Messages name ids, tables and rules, never record content: they can reach logs, Prefect states
and artifacts.
"""

from __future__ import annotations


class DatabaseError(Exception):
    """Base of every error raised by :mod:`ratchet.db`."""


class SchemaVersionError(DatabaseError):
    """The database schema cannot be brought to this code's head revision.

    Usually the database was migrated by a newer release than the one running: upgrade the code,
    never downgrade the database by hand.
    """


class NotFoundError(DatabaseError, LookupError):
    """A row that the caller named by id does not exist."""


class ConflictError(DatabaseError):
    """A write contradicts a row already stored (same id or key, different facts)."""


class DuplicateRecordKeyError(ConflictError):
    """A record key (kind, agent_id, record_id) is already stored.

    Callers look keys up before writing a part; this fires only when two writers raced, and the
    whole transaction (part and keys) rolls back, so the record stays stored exactly once.
    """


class ProductionConflictError(ConflictError):
    """A second production version for one agent was refused (by the database's unique index)."""


class InvalidTransitionError(DatabaseError, ValueError):
    """A status change that the lifecycle does not allow (e.g. reopening a completed run)."""
