"""Alembic environment for the training database, shipped inside the package.

Deliberately no ``logging.config.fileConfig()``: it disables every logger configured before it,
Prefect's included. ``render_as_batch=True`` lets SQLite alter tables (copy and move); on
PostgreSQL an advisory transaction lock serialises concurrent upgraders, so two workers starting
at once migrate once.

Note for future migrations that rebuild a SQLite table holding foreign keys: SQLite cannot switch
``PRAGMA foreign_keys`` inside a transaction, so such a batch operation must not rename a
referenced table.

The connection normally comes from :func:`ratchet.db.session.upgrade` (``config.attributes``);
run from the command line (``alembic -c ratchet/db/alembic.ini ...``) it builds its own engine
through :func:`ratchet.db.session.make_engine`.
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import Connection, text

from ratchet.db.models import Base
from ratchet.db.session import _PG_MIGRATION_LOCK_KEY, make_engine

target_metadata = Base.metadata


def _run(connection: Connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
        transactional_ddl=True,
    )
    with context.begin_transaction():
        if connection.dialect.name == "postgresql":
            connection.execute(
                text("SELECT pg_advisory_xact_lock(:key)"), {"key": _PG_MIGRATION_LOCK_KEY}
            )
        context.run_migrations()


def run_migrations_offline() -> None:
    """Emit SQL to stdout (``alembic upgrade head --sql``) for a DBA to review."""
    context.configure(
        url=context.config.get_main_option("sqlalchemy.url"),
        target_metadata=target_metadata,
        literal_binds=True,
        render_as_batch=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = context.config.attributes.get("connection")
    if connection is not None:
        _run(connection)
        return
    url = context.config.get_main_option("sqlalchemy.url")
    if not url:
        raise RuntimeError("set sqlalchemy.url (or pass a connection in config.attributes)")
    engine = make_engine(url)
    try:
        with engine.begin() as conn:
            _run(conn)
    finally:
        engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
