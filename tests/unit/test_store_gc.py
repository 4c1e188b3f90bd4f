"""Orphan cleanup: part files that no ledger row references go, young files and other folders stay."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta
from pathlib import Path

import pyarrow as pa
from typer.testing import CliRunner

from flows.cli import app
from ratchet.db import open_database, repo
from ratchet.settings import get_settings
from ratchet.store import Store, collect_orphans

runner = CliRunner()


def _table(n: int) -> pa.Table:
    return pa.table({"x": list(range(n))})


def _age(store: Store, rel: str, seconds: float) -> None:
    past = time.time() - seconds
    os.utime(store.full(rel), (past, past))


def _setup(home: Path) -> tuple[Store, list[str], list[str]]:
    settings = get_settings()
    store = Store(settings.store_root)
    kept, orphans = [], []
    with open_database(settings)() as s, s.begin():
        for i, (table, folder) in enumerate(
            [
                ("interactions", "interactions/agent=a/date=2026-11-02"),
                ("quarantine", "quarantine/abc"),
            ]
        ):
            rel = f"{folder}/part-ref{i}.parquet"
            store.write_bytes(rel, b"referenced")
            repo.record_part(
                s,
                repo.PartRecord(
                    table_name=table,
                    path=rel,
                    rows=1,
                    content_hash=str(i) * 64,
                    redaction_version="v",
                    agent_id="a" if table != "quarantine" else None,
                ),
            )
            kept.append(rel)
    for rel in [
        "interactions/agent=a/date=2026-11-02/part-orphan.parquet",
        "feedback/agent=a/date=2026-11-02/part-orphan.parquet",
        "quarantine/abc/part-orphan.parquet",
        "interactions/agent=a/date=2026-11-02/.tmp-deadbeef",
    ]:
        store.write_bytes(rel, b"nobody reads me")
        orphans.append(rel)
    store.write_bytes("datasets/a/eval_cases/v1/data.parquet", b"not a part")  # not gc's business
    for rel in kept + orphans + ["datasets/a/eval_cases/v1/data.parquet"]:
        _age(store, rel, 7200)
    return store, kept, orphans


def _referenced() -> set[str]:
    with open_database(get_settings())() as s:
        return repo.referenced_part_paths(s)


def test_gc_deletes_only_old_unreferenced_part_files(ratchet_env: Path) -> None:
    store, kept, orphans = _setup(ratchet_env)
    young = "feedback/agent=a/date=2026-11-03/part-young.parquet"
    store.write_bytes(young, b"a concurrent run is writing me")

    dry = collect_orphans(store, _referenced, grace=timedelta(hours=1), dry_run=True)
    assert sorted(dry.orphans) == sorted(orphans) and dry.deleted == []
    assert all(store.exists(r) for r in orphans)

    done = collect_orphans(store, _referenced, grace=timedelta(hours=1))
    assert sorted(done.deleted) == sorted(orphans)
    assert done.young == 1 and store.exists(young)
    assert all(store.exists(r) for r in kept)
    assert store.exists("datasets/a/eval_cases/v1/data.parquet")
    assert not any(store.exists(r) for r in orphans)


def test_store_gc_command_dry_run_and_json(ratchet_env: Path) -> None:
    store, _, orphans = _setup(ratchet_env)
    res = runner.invoke(app, ["store", "gc", "--dry-run", "--json"])
    assert res.exit_code == 0, res.output
    out = json.loads(res.stdout)
    assert sorted(out["orphans"]) == sorted(orphans) and out["deleted"] == []
    assert out["dry_run"] is True
    res = runner.invoke(app, ["store", "gc", "--grace", "3h"])
    assert res.exit_code == 0, res.output
    assert all(store.exists(r) for r in orphans)  # younger than 3 hours
    res = runner.invoke(app, ["store", "gc"])
    assert res.exit_code == 0 and "deleted 4" in res.output
    assert not any(store.exists(r) for r in orphans)
    assert runner.invoke(app, ["store", "gc", "--grace", "soon"]).exit_code == 2
