"""Ingest end to end on PostgreSQL: the ingest flow (Prefect run, tasks, core, ledger) on a
fresh PostgreSQL database gives the same summary and ledger as on SQLite, and a rerun stores
nothing (exactly once holds on the production database too)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import create_engine, text

from tests.conftest import SAMPLE_DIR
from tests.flows.conftest import prefect_harness  # noqa: F401 - the session's Prefect server

pytestmark = pytest.mark.postgres
MANIFEST = {f["name"]: f for f in json.loads((SAMPLE_DIR / "manifest.json").read_text())["files"]}
FILES = ["interactions-week-01.jsonl", "feedback-week-01.jsonl"]


def _ingest() -> dict[str, Any]:
    from flows.ingest import ingest_flow

    return ingest_flow(
        paths=[str(SAMPLE_DIR / FILES[0])], feedback_paths=[str(SAMPLE_DIR / FILES[1])]
    )


def _ledger(url: str) -> dict[str, int]:
    engine = create_engine(url)
    try:
        with engine.connect() as c:
            rows = c.execute(text("SELECT kind, count(*) FROM record_keys GROUP BY kind"))
            out = {str(k): int(n) for k, n in rows}
            out["completed_files"] = int(
                c.execute(
                    text("SELECT count(*) FROM source_files WHERE status = 'completed'")
                ).scalar_one()
            )
    finally:
        engine.dispose()
    return out


@pytest.mark.usefixtures("prefect_harness")
def test_ingest_flow_on_postgresql_matches_sqlite(
    ratchet_env: Path,
    create_pg_database,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from ratchet.db import dispose_all

    on_sqlite = _ingest()
    sqlite_ledger = _ledger(f"sqlite:///{ratchet_env / 'ratchet.db'}")

    pg_url = create_pg_database()
    monkeypatch.setenv("RATCHET_HOME", str(ratchet_env.parent / "pg-home"))
    monkeypatch.setenv("RATCHET_DATABASE_URL", pg_url)
    try:
        on_pg = _ingest()
        assert on_pg == on_sqlite  # every count, per table and per reason
        assert on_pg["files"] == 2 and on_pg["lines"] == sum(MANIFEST[f]["lines"] for f in FILES)
        assert on_pg["stored"]["feedback"] >= MANIFEST[FILES[1]]["lines"]
        assert (
            _ledger(pg_url)
            == sqlite_ledger
            == {
                "interaction": on_pg["stored"]["interactions"],
                "feedback": on_pg["stored"]["feedback"],
                "completed_files": 2,
            }
        )
        again = _ingest()
        assert again["files_already_ingested"] == 2 and again["stored"] == {}
        assert _ledger(pg_url) == sqlite_ledger
    finally:
        dispose_all()
