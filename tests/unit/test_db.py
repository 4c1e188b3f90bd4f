"""The training database on SQLite: migrations, constraints and every repository function.

The behaviour tests take a ``db_url`` fixture; ``tests/integration/test_postgres.py`` imports them
and runs them again against a real PostgreSQL by overriding that fixture.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from sqlalchemy import create_engine, inspect, select, text
from sqlalchemy.exc import IntegrityError, StatementError
from sqlalchemy.orm import Session, sessionmaker

from ratchet.db import (
    Base,
    ConflictError,
    DuplicateRecordKeyError,
    InvalidTransitionError,
    ModelVersion,
    NotFoundError,
    PipelineRun,
    ProductionConflictError,
    SchemaVersionError,
    current_revision,
    dispose_all,
    head_revision,
    make_engine,
    repo,
    session_factory,
    upgrade,
)
from ratchet.db.repo import Decision, MetricValue, PartKey, PartRecord
from ratchet.db.session import open_database
from ratchet.settings import get_settings

AGENT = "support-bot"


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    """An empty SQLite database in a folder that does not exist yet (make_engine creates it)."""
    return f"sqlite:///{tmp_path / 'state' / 'ratchet.db'}"


@pytest.fixture
def factory(db_url: str) -> Iterator[sessionmaker[Session]]:
    yield session_factory(db_url)
    dispose_all()


def _part(
    path: str,
    *,
    agent: str = AGENT,
    table: str = "interactions",
    day: date | None = None,
    content_hash: str = "c" * 64,
    source_file_id: str | None = None,
) -> PartRecord:
    return PartRecord(
        table_name=table,
        path=path,
        rows=3,
        content_hash=content_hash,
        redaction_version="r1",
        agent_id=agent,
        partition_date=day or date(2026, 11, 1),
        source_file_id=source_file_id,
    )


# ============================================================================ migrations ==========
def test_migrations_from_empty_match_the_models_and_reapply_as_noop(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        assert current_revision(engine) is None
        upgrade(engine)
        assert current_revision(engine) == head_revision() is not None
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
            tables = set(inspect(conn).get_table_names())
        assert tables == set(Base.metadata.tables) | {"alembic_version"}
        upgrade(engine)  # second time: nothing to do, nothing changes
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            assert compare_metadata(ctx, Base.metadata) == []
    finally:
        engine.dispose()


def test_session_factory_is_one_per_url_and_migrated(db_url: str) -> None:
    try:
        first = session_factory(db_url)
        assert session_factory(db_url) is first
        with first() as s:
            assert (
                s.execute(text("SELECT version_num FROM alembic_version")).scalar_one()
                == head_revision()
            )
    finally:
        dispose_all()


def test_database_from_a_newer_release_is_refused(db_url: str) -> None:
    engine = make_engine(db_url)
    try:
        upgrade(engine)
        with engine.begin() as conn:
            conn.execute(text("UPDATE alembic_version SET version_num = '9999_future'"))
        with pytest.raises(SchemaVersionError, match="newer release"):
            upgrade(engine)
    finally:
        engine.dispose()


# ============================================================================ source files ========
def test_source_file_is_processed_once_and_retried_after_failure(
    factory: sessionmaker[Session],
) -> None:
    fid = "a" * 64
    with factory() as s, s.begin():
        row, go = repo.begin_source_file(
            s, file_id=fid, kind="interactions", name="logs.jsonl", size_bytes=10, flow_run_id="f1"
        )
        assert go and row.status == "in_progress" and row.attempts == 1
    with factory() as s, s.begin():
        row, go = repo.begin_source_file(
            s, file_id=fid, kind="interactions", name="x", size_bytes=10
        )
        assert go and row.attempts == 2  # left in_progress by a "crash": taken up again
        repo.fail_source_file(s, fid, error="ValueError: bad")
    with factory() as s, s.begin():
        row, go = repo.begin_source_file(
            s, file_id=fid, kind="interactions", name="x", size_bytes=10
        )
        assert go and row.attempts == 3 and row.error is None
        repo.complete_source_file(
            s, fid, lines=5, counts={"stored": 4, "quarantined": {"not_json": 1}}
        )
    with factory() as s, s.begin():
        row, go = repo.begin_source_file(
            s, file_id=fid, kind="interactions", name="x", size_bytes=10
        )
        assert not go and row.status == "completed" and row.lines == 5
        assert row.counts == {"stored": 4, "quarantined": {"not_json": 1}}
        assert row.completed_at is not None and row.completed_at.tzinfo is not None
    with factory() as s, s.begin():
        assert repo.get_source_file(s, "b" * 64) is None
        with pytest.raises(ValueError, match="kind"):
            repo.begin_source_file(s, file_id="b" * 64, kind="csv", name="x", size_bytes=1)
        with pytest.raises(NotFoundError):
            repo.complete_source_file(s, "b" * 64, lines=0, counts={})


# ============================================================================ parts and keys ======
def test_record_part_commits_part_and_keys_and_is_idempotent(
    factory: sessionmaker[Session],
) -> None:
    fid = "f" * 64
    with factory() as s, s.begin():
        repo.begin_source_file(s, file_id=fid, kind="interactions", name="l.jsonl", size_bytes=1)
    odd = "id\twith\\escapes\nand é"  # survives PostgreSQL's COPY text format
    keys = [PartKey("i1", "h1"), PartKey("i2", "h2"), ("i3", "h3"), (odd, "h4")]
    with factory() as s, s.begin():
        part = repo.record_part(s, _part("interactions/a/p1.parquet", source_file_id=fid), keys)
        part_id = part.id
    with factory() as s, s.begin():
        assert repo.lookup_keys(s, "interaction", AGENT, ["i1", "i3", "nope"]) == {
            "i1": "h1",
            "i3": "h3",
        }
        assert repo.lookup_keys(s, "interaction", AGENT, [odd]) == {odd: "h4"}
        assert repo.lookup_keys(s, "interaction", "other-agent", ["i1"]) == {}
        assert repo.lookup_keys(s, "feedback", AGENT, ["i1"]) == {}
        again = repo.record_part(s, _part("interactions/a/p1.parquet", source_file_id=fid), keys)
        assert again.id == part_id  # rerun: same row, no duplicate keys
        with pytest.raises(ConflictError):
            repo.record_part(s, _part("interactions/a/p1.parquet", content_hash="d" * 64), keys)
    with factory() as s, s.begin():
        parts = repo.list_parts(s, "interactions", agent_id=AGENT)
        assert [p.path for p in parts] == ["interactions/a/p1.parquet"]
        assert parts[0].source_file_id == fid and parts[0].rows == 3
    with factory() as s, s.begin():
        q = PartRecord(
            table_name="quarantine",
            path="quarantine/x.parquet",
            rows=1,
            content_hash="q" * 64,
            redaction_version="r1",
            source_file_id=fid,
        )
        assert repo.record_part(s, q).agent_id is None
        with pytest.raises(ValueError):
            repo.record_part(
                s,
                PartRecord(
                    table_name="quarantine",
                    path="quarantine/y.parquet",
                    rows=1,
                    content_hash="q",
                    redaction_version="r1",
                ),
                [("i9", "h9")],
            )


def test_a_part_whose_keys_fail_is_not_committed(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        repo.record_part(s, _part("interactions/a/p1.parquet"), [("i1", "h1")])
    with pytest.raises(DuplicateRecordKeyError):
        with factory() as s, s.begin():
            # A racing writer stored i1 already: the whole part must roll back.
            repo.record_part(
                s,
                _part("interactions/a/p2.parquet", content_hash="e" * 64),
                [("i2", "h2"), ("i1", "h1-changed")],
            )
    with factory() as s, s.begin():
        assert [p.path for p in repo.list_parts(s, "interactions")] == ["interactions/a/p1.parquet"]
        assert repo.lookup_keys(s, "interaction", AGENT, ["i1", "i2"]) == {"i1": "h1"}


def test_lookup_keys_chunks_thousands_of_ids(factory: sessionmaker[Session]) -> None:
    n = 2_500
    with factory() as s, s.begin():
        part = repo.record_part(s, _part("interactions/a/big.parquet"))
        inserted = repo.insert_keys(
            s,
            (
                {
                    "kind": "interaction",
                    "agent_id": AGENT,
                    "record_id": f"id{i:05d}",
                    "content_hash": f"h{i}",
                    "part_id": part.id,
                }
                for i in range(n)
            ),
        )
        assert inserted == n
    wanted = [f"id{i:05d}" for i in range(0, n + 500)]  # 500 unknown ids, > IN_CHUNK in total
    with factory() as s, s.begin():
        found = repo.lookup_keys(s, "interaction", AGENT, wanted + wanted[:10])
    assert len(found) == n and found["id02499"] == "h2499" and "id02500" not in found


def test_insert_keys_is_bulk_not_per_row_orm(factory: sessionmaker[Session]) -> None:
    """Keys go in as bulk statements, never as ORM objects (a per-row ORM path is what made this
    slow; its speed is measured in benchmarks/, not asserted here)."""
    n = 20_000
    with factory() as s, s.begin():
        part = repo.record_part(s, _part("interactions/a/bulk.parquet"))
        part_id = part.id
    rows = [
        {
            "kind": "feedback",
            "agent_id": AGENT,
            "record_id": f"fb{i}",
            "content_hash": "h" * 64,
            "part_id": part_id,
        }
        for i in range(n)
    ]
    with factory() as s, s.begin():
        assert repo.insert_keys(s, rows) == n
        assert not s.new and not any(
            type(o).__name__ == "RecordKey" for o in s.identity_map.values()
        )
    with factory() as s:
        stored = s.execute(text("SELECT count(*) FROM record_keys WHERE kind = 'feedback'"))
        assert stored.scalar_one() == n


def test_list_parts_window_is_half_open_and_skips_retired(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        for day in (1, 2, 3):
            repo.record_part(s, _part(f"interactions/a/d{day}.parquet", day=date(2026, 11, day)))
        repo.record_part(s, _part("interactions/b/d1.parquet", agent="b", day=date(2026, 11, 1)))
    with factory() as s, s.begin():
        window = repo.list_parts(
            s, "interactions", agent_id=AGENT, since=date(2026, 11, 2), until=date(2026, 11, 3)
        )
        assert [p.path for p in window] == ["interactions/a/d2.parquet"]
        assert len(repo.list_parts(s, "interactions")) == 4
        d1 = repo.list_parts(s, "interactions", agent_id=AGENT)[0]
        assert repo.retire_parts(s, [d1.id, d1.id]) == 1
    with factory() as s, s.begin():
        assert len(repo.list_parts(s, "interactions", agent_id=AGENT)) == 2
        assert len(repo.list_parts(s, "interactions", agent_id=AGENT, include_retired=True)) == 3


# ============================================================================ dataset versions ====
def _register(s: Session, vid: str, **kw: object) -> tuple[object, bool]:
    args: dict[str, object] = dict(
        version_id=vid,
        agent_id=AGENT,
        kind="eval_cases",
        path=f"datasets/{AGENT}/eval_cases/{vid}",
        rows=10,
        schema_fingerprint="fp",
        config_hash="cfg" * 4,
        lineage=[("part", "p1"), ("flow_run", "run-1")],
        flow_run_id="run-1",
    )
    args.update(kw)
    return repo.register_dataset_version(s, **args)  # type: ignore[arg-type]


def test_dataset_version_registration_is_idempotent_with_lineage_and_parent(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s, s.begin():
        v1, created = _register(s, "v1")
        assert created and v1.parent_id is None  # type: ignore[attr-defined]
    with factory() as s, s.begin():
        again, created = _register(s, "v1", flow_run_id="run-2", lineage=[("flow_run", "run-2")])
        assert not created and again.flow_run_id == "run-1"  # type: ignore[attr-defined]
        assert repo.dataset_lineage(s, "v1") == [("flow_run", "run-1"), ("part", "p1")]
    with factory() as s, s.begin():
        v2, created = _register(s, "v2", lineage=[("part", "p1"), ("dataset_version", "v1")])
        assert created and v2.parent_id == "v1"  # type: ignore[attr-defined]
        assert repo.latest_dataset_version(s, AGENT, "eval_cases").id == "v2"  # type: ignore[union-attr]
        assert repo.versions_referencing(s, "part", "p1") == ["v1", "v2"]
        assert [v.id for v in repo.list_dataset_versions(s, agent_id=AGENT)] == ["v2", "v1"]
        assert repo.get_dataset_version(s, "v1").rows == 10
        with pytest.raises(ConflictError):
            _register(s, "v1", agent_id="another-agent")
        with pytest.raises(ValueError):
            _register(s, "v3", kind="nonsense")
        with pytest.raises(NotFoundError):
            repo.get_dataset_version(s, "missing")


# ============================================================================ training runs =======
def test_training_run_lifecycle(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        _register(s, "v1")
        run = repo.create_training_run(
            s,
            agent_id=AGENT,
            training_type="sft",
            backend="local",
            base_model_version="base-1",
            created_by="weekly",
            dataset_version_id="v1",
            parameters={"epochs": 2},
        )
        run_id = run.id
        assert run.status == "pending" and run.created_at.tzinfo is not None
    with factory() as s, s.begin():
        run = repo.update_training_run(
            s, run_id, status="in_progress", external_job_id="ftjob-1", metrics={"loss": 1.0}
        )
        assert run.started_at is not None
        run = repo.update_training_run(
            s,
            run_id,
            status="completed",
            metrics={"acc": 0.9},
            artifacts={"model": "models/x"},
            cost_usd=1.5,
        )
        assert run.completed_at is not None and run.metrics == {"loss": 1.0, "acc": 0.9}
    with factory() as s, s.begin():
        run = repo.get_training_run(s, run_id)
        assert (run.status, run.external_job_id, run.cost_usd) == ("completed", "ftjob-1", 1.5)
        with pytest.raises(InvalidTransitionError):
            repo.update_training_run(s, run_id, status="in_progress")
        with pytest.raises(ValueError):
            repo.create_training_run(
                s,
                agent_id=AGENT,
                training_type="rlhf",
                backend="x",
                base_model_version="b",
                created_by="me",
            )


# ============================================================================ model versions ======
def test_database_allows_one_production_version_per_agent(factory: sessionmaker[Session]) -> None:
    """Bypasses the repository on purpose: the index, not Python, must refuse the second one."""
    with factory() as s, s.begin():
        for i, (agent, status) in enumerate(
            [(AGENT, "production"), ("other", "production"), (AGENT, "retired"), (AGENT, "retired")]
        ):
            s.add(
                ModelVersion(
                    id=f"m{i}",
                    agent_id=agent,
                    backend="local",
                    model_ref="r",
                    parameters={},
                    status=status,
                    traffic_share=0,
                )
            )
    with pytest.raises(IntegrityError):
        with factory() as s, s.begin():
            s.add(
                ModelVersion(
                    id="m9",
                    agent_id=AGENT,
                    backend="local",
                    model_ref="r",
                    parameters={},
                    status="production",
                    traffic_share=1,
                )
            )
    with pytest.raises(ProductionConflictError):
        with factory() as s, s.begin():
            repo.create_model_version(
                s, agent_id=AGENT, backend="local", model_ref="r", status="production"
            )


def test_promote_reject_and_rollback_keep_one_production_and_an_audit_trail(
    factory: sessionmaker[Session],
) -> None:
    with factory() as s, s.begin():
        m1 = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="local",
            model_ref="base",
            status="production",
            version_id="m1",
        )
        assert m1.traffic_share == 1.0
        repo.create_model_version(
            s, agent_id=AGENT, backend="local", model_ref="ft-2", parent_id="m1", version_id="m2"
        )
        repo.create_model_version(
            s, agent_id=AGENT, backend="local", model_ref="ft-3", parent_id="m1", version_id="m3"
        )
        repo.create_model_version(
            s, agent_id=AGENT, backend="local", model_ref="ft-4", version_id="m4"
        )
    gate = Decision(
        decided_by="gate",
        reasons=["quality 0.97 >= 0.95"],
        gate_results={"q": 0.97},
        flow_run_id="run-1",
    )
    with factory() as s, s.begin():
        repo.set_traffic_share(s, "m2", 0.1)
        d = repo.promote(s, "m2", gate)
        assert (d.action, d.candidate_id, d.baseline_id, d.passed) == ("promote", "m2", "m1", True)
    with factory() as s, s.begin():
        assert repo.production_version(s, AGENT).id == "m2"  # type: ignore[union-attr]
        assert repo.get_model_version(s, "m1").status == "retired"
        d = repo.reject(s, "m3", Decision(decided_by="gate", passed=False, reasons=["latency"]))
        assert (d.action, d.baseline_id) == ("reject", "m2")
        assert repo.get_model_version(s, "m3").status == "rejected"
        with pytest.raises(InvalidTransitionError):
            repo.promote(s, "m3", gate)
        repo.promote(s, "m4", gate)
    with factory() as s, s.begin():
        d = repo.rollback(s, AGENT, Decision(decided_by="oncall", reasons=["complaints"]))
        assert (d.candidate_id, d.baseline_id) == ("m2", "m4")
        d = repo.rollback(s, AGENT, Decision(decided_by="oncall"))  # walks back, not a toggle
        assert (d.candidate_id, d.baseline_id) == ("m1", "m2")
        assert repo.production_version(s, AGENT).id == "m1"  # type: ignore[union-attr]
        with pytest.raises(InvalidTransitionError):
            repo.rollback(s, AGENT, Decision(decided_by="oncall"))  # m1 replaced nothing
        production = repo.list_model_versions(s, AGENT, status="production")
        assert [m.id for m in production] == ["m1"]
        actions = [d.action for d in repo.list_decisions(s, AGENT)]
        assert sorted(actions) == ["promote", "promote", "reject", "rollback", "rollback"]
        with pytest.raises(ValueError):
            repo.set_traffic_share(s, "m1", 1.5)
        with pytest.raises(InvalidTransitionError):
            repo.rollback(s, "nobody", Decision(decided_by="x"))


# ============================================================================ eval runs ===========
def test_eval_run_records_metrics_with_intervals(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        repo.create_model_version(
            s, agent_id=AGENT, backend="local", model_ref="r", version_id="m1"
        )
        run = repo.create_eval_run(s, agent_id=AGENT, model_version_id="m1", flow_run_id="f")
        run_id = run.id
    with factory() as s, s.begin():
        repo.finish_eval_run(
            s,
            run_id,
            n_cases=40,
            cost_usd=0.02,
            results_path=f"evals/{run_id}/results.parquet",
            metrics=[
                MetricValue("token_f1", 0.8, 40, 0.7, 0.9, "holdout"),
                MetricValue("pass_rate", 1.0, 5, subset="fix_check"),
            ],
        )
    with factory() as s, s.begin():
        assert repo.eval_metrics(s, run_id) == [
            MetricValue("pass_rate", 1.0, 5, None, None, "fix_check"),
            MetricValue("token_f1", 0.8, 40, 0.7, 0.9, "holdout"),
        ]
        with pytest.raises(InvalidTransitionError):
            repo.finish_eval_run(s, run_id, n_cases=1)


# ============================================================================ tombstones ==========
def test_tombstones_are_idempotent_and_scoped(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        _, created = repo.add_tombstone(
            s, kind="user", value="u-pseudo-1", agent_id=AGENT, reason="gdpr request"
        )
        assert created
        _, created = repo.add_tombstone(s, kind="user", value="u-pseudo-1", agent_id=AGENT)
        assert not created
        repo.add_tombstone(s, kind="user", value="u-global")
        _, created = repo.add_tombstone(
            s, kind="user", value="u-global"
        )  # NULL agent: still unique
        assert not created
        repo.add_tombstone(s, kind="interaction", value="i-7", agent_id="other")
    many = [f"u{i}" for i in range(1_500)] + ["u-pseudo-1", "u-global"]
    with factory() as s, s.begin():
        assert repo.tombstoned(s, AGENT, "user", many) == {"u-pseudo-1", "u-global"}
        assert repo.tombstoned(s, "other", "user", many) == {"u-global"}
        assert repo.tombstoned(s, "other", "interaction", ["i-7", "i-8"]) == {"i-7"}
        assert repo.tombstoned(s, AGENT, "interaction", ["i-7"]) == set()
        assert len(repo.list_tombstones(s)) == 3
        assert len(repo.list_tombstones(s, agent_id=AGENT)) == 2
        with pytest.raises(ValueError):
            repo.add_tombstone(s, kind="email", value="x")


# ============================================================================ pipeline runs =======
def test_pipeline_run_start_and_finish(factory: sessionmaker[Session]) -> None:
    with factory() as s, s.begin():
        run = repo.start_pipeline_run(
            s,
            flow_name="ingest",
            flow_run_id="fr-1",
            agent_id=AGENT,
            parameters={"since": "2026-11-01"},
        )
        run_id = run.id
    with factory() as s, s.begin():
        run = repo.finish_pipeline_run(s, run_id, status="completed", counts={"stored": 10})
        assert run.finished_at is not None and run.counts == {"stored": 10}
        with pytest.raises(InvalidTransitionError):
            repo.finish_pipeline_run(s, run_id, status="failed")


# ============================================================================ types, constraints ===
def test_timestamps_are_utc_aware_and_naive_ones_are_refused(
    factory: sessionmaker[Session],
) -> None:
    plus2 = timezone(timedelta(hours=2))
    with factory() as s, s.begin():
        run = repo.start_pipeline_run(s, flow_name="ingest")
        run.started_at = datetime(2026, 11, 22, 12, 0, tzinfo=plus2)
        run_id = run.id
    with factory() as s:
        got = s.execute(select(PipelineRun.started_at).where(PipelineRun.id == run_id)).scalar_one()
        assert got == datetime(2026, 11, 22, 10, 0, tzinfo=UTC) and got.tzinfo == UTC
    with pytest.raises(StatementError, match="naive"):
        with factory() as s, s.begin():
            run = repo.start_pipeline_run(s, flow_name="ingest")
            run.started_at = datetime(2026, 11, 22, 12, 0)
            s.flush()


def test_check_constraints_refuse_unknown_values(factory: sessionmaker[Session]) -> None:
    with pytest.raises(IntegrityError):
        with factory() as s, s.begin():
            s.add(
                ModelVersion(
                    id="m",
                    agent_id=AGENT,
                    backend="b",
                    model_ref="r",
                    parameters={},
                    status="shipping",
                    traffic_share=0,
                )
            )
    with pytest.raises(IntegrityError):
        with factory() as s, s.begin():
            s.add(
                ModelVersion(
                    id="m",
                    agent_id=AGENT,
                    backend="b",
                    model_ref="r",
                    parameters={},
                    status="candidate",
                    traffic_share=2,
                )
            )
    with pytest.raises(IntegrityError):  # foreign keys are enforced (SQLite: PRAGMA foreign_keys)
        with factory() as s, s.begin():
            repo.create_eval_run(s, agent_id=AGENT, model_version_id="missing")


# ============================================================================ SQLite specifics =====
def test_sqlite_engine_pragmas(tmp_path: Path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'a' / 'b' / 'x.db'}")
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
            assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
            assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert (tmp_path / "a" / "b" / "x.db").exists()
    finally:
        engine.dispose()


def test_concurrent_sqlite_writers_wait_instead_of_failing(factory: sessionmaker[Session]) -> None:
    errors: list[BaseException] = []

    def writer(n: int) -> None:
        try:
            for i in range(40):
                with factory() as s, s.begin():
                    repo.add_tombstone(s, kind="interaction", value=f"{n}-{i}", agent_id=AGENT)
                    repo.tombstoned(s, AGENT, "interaction", [f"{n}-{i}"])
        except BaseException as exc:  # collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with factory() as s:
        assert len(repo.list_tombstones(s)) == 160


def test_open_database_uses_settings(tmp_path: Path) -> None:
    settings = get_settings(home=tmp_path / "home")
    try:
        factory = open_database(settings)
        with factory() as s, s.begin():
            repo.add_tombstone(s, kind="user", value="u")
        assert (tmp_path / "home" / "ratchet.db").exists()
    finally:
        dispose_all()


def test_plain_create_all_equals_migrations(tmp_path: Path) -> None:
    """create_all and the migrations agree (a cheap second view of the same contract)."""
    engine = create_engine(f"sqlite:///{tmp_path / 'c.db'}")
    try:
        Base.metadata.create_all(engine)
        with engine.connect() as conn:
            assert set(inspect(conn).get_table_names()) == set(Base.metadata.tables)
            indexes = {i["name"] for i in inspect(conn).get_indexes("model_versions")}
        assert "ux_model_versions_one_production" in indexes
    finally:
        engine.dispose()
