"""The training database on a real PostgreSQL: the SQLite behaviour tests again, plus concurrency.

The behaviour tests are imported from ``tests/unit/test_db.py``; collected here they resolve the
``db_url`` and ``factory`` fixtures below, so they run against PostgreSQL. Each test gets its own
database: an empty one for the migration tests, a clone of a migrated template for the rest.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator

import pytest
from sqlalchemy import text
from sqlalchemy.orm import Session, sessionmaker

from ratchet.db import (
    ProductionConflictError,
    dispose_all,
    head_revision,
    make_engine,
    repo,
    session_factory,
    upgrade,
)
from ratchet.db.repo import Decision
from tests.unit.test_db import (  # noqa: F401 - collected here, against PostgreSQL
    test_a_part_whose_keys_fail_is_not_committed,
    test_check_constraints_refuse_unknown_values,
    test_database_allows_one_production_version_per_agent,
    test_database_from_a_newer_release_is_refused,
    test_dataset_version_registration_is_idempotent_with_lineage_and_parent,
    test_eval_run_records_metrics_with_intervals,
    test_insert_keys_is_bulk_not_per_row_orm,
    test_list_parts_window_is_half_open_and_skips_retired,
    test_lookup_keys_chunks_thousands_of_ids,
    test_migrations_from_empty_match_the_models_and_reapply_as_noop,
    test_pipeline_run_start_and_finish,
    test_promote_reject_and_rollback_keep_one_production_and_an_audit_trail,
    test_record_part_commits_part_and_keys_and_is_idempotent,
    test_session_factory_is_one_per_url_and_migrated,
    test_source_file_is_processed_once_and_retried_after_failure,
    test_timestamps_are_utc_aware_and_naive_ones_are_refused,
    test_tombstones_are_idempotent_and_scoped,
    test_training_run_lifecycle,
)

pytestmark = pytest.mark.postgres

AGENT = "support-bot"


@pytest.fixture(scope="module")
def migrated_template(create_pg_database: Callable[..., str]) -> str:
    """A database migrated to head once, cloned by each test (the clone needs no migration)."""
    url = create_pg_database()
    engine = make_engine(url)
    try:
        upgrade(engine)
    finally:
        engine.dispose()  # a template must have no open connections to be cloned
    name = url.rsplit("/", 1)[1]
    return name


@pytest.fixture
def db_url(create_pg_database: Callable[..., str]) -> str:
    """An empty database of its own (the migration tests start from nothing)."""
    return create_pg_database()


@pytest.fixture
def factory(
    create_pg_database: Callable[..., str], migrated_template: str
) -> Iterator[sessionmaker[Session]]:
    yield session_factory(create_pg_database(template=migrated_template))
    dispose_all()


def test_partial_unique_index_is_partial_on_postgres(factory: sessionmaker[Session]) -> None:
    with factory() as s:
        indexdef = s.execute(
            text(
                "SELECT indexdef FROM pg_indexes WHERE indexname = 'ux_model_versions_one_production'"
            )
        ).scalar_one()
    assert "UNIQUE" in indexdef and "WHERE" in indexdef and "production" in indexdef


def test_concurrent_promotions_one_wins(factory: sessionmaker[Session]) -> None:
    """Two transactions promote different candidates of one agent at once: the index decides."""
    with factory() as s, s.begin():
        repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="local",
            model_ref="base",
            status="production",
            version_id="m1",
        )
        for vid in ("m2", "m3"):
            repo.create_model_version(
                s, agent_id=AGENT, backend="local", model_ref=vid, version_id=vid
            )
    first = factory()
    first.begin()
    repo.promote(first, "m2", Decision(decided_by="a"))  # holds m1's row lock, uncommitted
    outcome: list[BaseException | str] = []

    def second() -> None:
        try:
            with factory() as s, s.begin():
                repo.promote(s, "m3", Decision(decided_by="b"))  # waits for the first, then fails
            outcome.append("promoted")
        except BaseException as exc:  # collected and asserted below
            outcome.append(exc)

    t = threading.Thread(target=second)
    t.start()
    t.join(timeout=1.0)
    assert t.is_alive(), "the second promotion should wait for the first transaction"
    first.commit()
    first.close()
    t.join(timeout=30)
    assert len(outcome) == 1 and isinstance(outcome[0], ProductionConflictError)
    with factory() as s:
        assert [m.id for m in repo.list_model_versions(s, AGENT, status="production")] == ["m2"]
        assert repo.get_model_version(s, "m3").status == "candidate"


def test_concurrent_first_migrations_migrate_once(create_pg_database: Callable[..., str]) -> None:
    """Two worker processes start at once on an empty database: the advisory lock serialises them."""
    url = create_pg_database()
    # Each process imports first, then waits for a common start time, so the migrations overlap.
    code = (
        "import sys, time; from ratchet.db import make_engine, upgrade; "
        "e = make_engine(sys.argv[1]); time.sleep(max(0.0, float(sys.argv[2]) - time.time())); "
        "upgrade(e); e.dispose()"
    )
    start_at = str(time.time() + 2.5)
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", code, url, start_at], stderr=subprocess.PIPE, text=True
        )
        for _ in range(3)
    ]
    results = [(p.wait(timeout=120), p.stderr.read() if p.stderr else "") for p in procs]
    assert [rc for rc, _ in results] == [0, 0, 0], [err[-800:] for _, err in results]
    engine = make_engine(url)
    try:
        with engine.connect() as conn:
            assert (
                conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                == head_revision()
            )
    finally:
        engine.dispose()


def test_bare_postgresql_url_gets_psycopg3(postgres_url: str) -> None:
    bare = postgres_url.replace("postgresql+psycopg://", "postgresql://")
    engine = make_engine(bare)
    try:
        assert engine.dialect.driver == "psycopg"
        with engine.connect() as conn:
            assert conn.execute(text("SELECT 1")).scalar_one() == 1
    finally:
        engine.dispose()
