"""The one factory for database engines and sessions, with migrations applied on first use.

Callers own their sessions and transactions::

    factory = open_database(settings)
    with factory() as s, s.begin():
        repo.add_tombstone(s, kind="user", value=pseudonym)

Engine choices, made once here:

* SQLite: the parent folder is created; every connection gets ``journal_mode=WAL`` (readers do
  not block the writer), ``busy_timeout`` 30 s, ``foreign_keys=ON`` and ``synchronous=NORMAL``;
  transactions start with ``BEGIN IMMEDIATE``, so a writer waits for the lock up front
  (honouring the busy timeout) instead of failing with "database is locked" when it upgrades a
  read lock mid-transaction, which is what concurrent Prefect task threads otherwise hit. The
  price: read-only transactions queue behind a writer too. Keep transactions short.
* PostgreSQL: ``pool_pre_ping`` (a server restart does not poison the pool); a bare
  ``postgresql://`` URL is given the psycopg 3 driver, the one this project installs.

Sessions do not expire objects on commit, so ids and columns read inside a transaction stay
usable after it (tasks return them as small references).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util import CommandError
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.orm import Session, sessionmaker

from ratchet.db.errors import SchemaVersionError

if TYPE_CHECKING:
    from ratchet.settings import Settings

MIGRATIONS_DIR = Path(__file__).resolve().parent / "migrations"
SQLITE_BUSY_TIMEOUT_MS = 30_000
# Any constant works; it names the lock that serialises migrations across processes on PostgreSQL.
_PG_MIGRATION_LOCK_KEY = 0x5241544348455421  # "RATCHET!"

_lock = threading.Lock()
# Alembic's ``context`` is a process-global proxy: two threads running migrations at once would
# trample each other's environment, whatever the database does.
_alembic_lock = threading.Lock()
_factories: dict[str, sessionmaker[Session]] = {}


def normalise_url(url: str | URL) -> URL:
    """Parse ``url``, giving a bare ``postgresql://`` the psycopg 3 driver (psycopg2 is absent)."""
    u = make_url(url)
    if u.drivername in ("postgresql", "postgres"):
        u = u.set(drivername="postgresql+psycopg")
    return u


def _on_sqlite_connect(dbapi_connection: Any, connection_record: Any) -> None:
    # Autocommit at the driver level: SQLAlchemy's "begin" listener below emits BEGIN itself.
    dbapi_connection.isolation_level = None
    cursor = dbapi_connection.cursor()
    try:
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        # Safe with WAL (no corruption); a power cut may lose the last commits, which the ledger
        # tolerates: an uncommitted part is ignored and rewritten by the next run.
        cursor.execute("PRAGMA synchronous=NORMAL")
    finally:
        cursor.close()


def _on_sqlite_begin(conn: Any) -> None:
    conn.exec_driver_sql("BEGIN IMMEDIATE")


def make_engine(url: str | URL, **kwargs: Any) -> Engine:
    """An engine configured for this project's use of ``url`` (see the module docstring).

    Extra keyword arguments go to :func:`sqlalchemy.create_engine` (``echo=True`` to debug).
    """
    u = normalise_url(url)
    if u.get_backend_name() == "sqlite":
        database = u.database or ""
        if database and database != ":memory:" and not database.startswith("file:"):
            Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(u, **kwargs)
        event.listen(engine, "connect", _on_sqlite_connect)
        event.listen(engine, "begin", _on_sqlite_begin)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    return create_engine(u, **kwargs)


def alembic_config(url: str | URL | None = None) -> Config:
    """An Alembic ``Config`` pointing inside the installed package (no ``alembic.ini`` needed)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    if url is not None:
        rendered = normalise_url(url).render_as_string(hide_password=False)
        # Config values go through configparser interpolation: a '%' (URL-encoded password) must
        # be doubled.
        cfg.set_main_option("sqlalchemy.url", rendered.replace("%", "%%"))
    return cfg


def head_revision() -> str:
    """The revision this code expects the database to be at (a single head, checked)."""
    heads = ScriptDirectory.from_config(alembic_config()).get_heads()
    if len(heads) != 1:
        raise SchemaVersionError(f"migrations must have exactly one head, found {sorted(heads)}")
    return heads[0]


def current_revision(engine: Engine) -> str | None:
    """The revision the database is at (None for an empty database)."""
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def _known(script: ScriptDirectory, rev: str) -> bool:
    try:
        return script.get_revision(rev) is not None
    except CommandError:
        return False


def upgrade(engine: Engine, revision: str = "head") -> None:
    """Apply migrations to ``revision`` on ``engine``; a database already there is left alone.

    Runs on the given engine's own connection (so SQLite gets its pragmas), in one transaction.
    Concurrent callers are serialised: threads by a module lock (Alembic's context is global),
    processes by ``BEGIN IMMEDIATE`` on SQLite and an advisory transaction lock on PostgreSQL
    (see ``migrations/env.py``).
    """
    cfg = alembic_config(engine.url)
    script = ScriptDirectory.from_config(cfg)
    try:
        with _alembic_lock, engine.begin() as conn:
            cfg.attributes["connection"] = conn
            current = MigrationContext.configure(conn).get_current_heads()
            unknown = [rev for rev in current if not _known(script, rev)]
            if unknown:
                raise SchemaVersionError(
                    f"database is at revision {unknown}, unknown to this code (head "
                    f"{script.get_current_head()}): it was migrated by a newer release"
                )
            command.upgrade(cfg, revision)
    except SchemaVersionError:
        raise
    except Exception as exc:  # alembic raises several unrelated types; callers need one
        if type(exc).__module__.startswith("alembic"):
            raise SchemaVersionError(f"migration failed: {exc}") from exc
        raise
    finally:
        cfg.attributes.pop("connection", None)


def session_factory(url: str | URL, **engine_kwargs: Any) -> sessionmaker[Session]:
    """A session factory for ``url``, with the schema migrated to head the first time.

    One factory (and engine, and pool) per URL per process: later calls return the same one, and
    the migration check runs once, under a lock, so concurrent first calls migrate only once.
    """
    key = normalise_url(url).render_as_string(hide_password=False)
    with _lock:
        factory = _factories.get(key)
        if factory is None:
            engine = make_engine(url, **engine_kwargs)
            try:
                upgrade(engine)
            except BaseException:
                engine.dispose()
                raise
            factory = sessionmaker(bind=engine, expire_on_commit=False)
            _factories[key] = factory
        return factory


def open_database(settings: Settings) -> sessionmaker[Session]:
    """The session factory for the database that ``settings`` names (``RATCHET_DATABASE_URL``)."""
    return session_factory(settings.db_url)


def dispose_all() -> None:
    """Close every pooled connection and forget the cached factories (tests, process shutdown)."""
    with _lock:
        for factory in _factories.values():
            bind = factory.kw.get("bind")
            if isinstance(bind, Engine):
                bind.dispose()
        _factories.clear()
