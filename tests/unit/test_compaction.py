"""Compaction: small parts of a partition merged into parts of the target size, switched in one
ledger transaction, rows unchanged, reruns no-ops, retired files purged after the grace."""

from __future__ import annotations

import json
from datetime import timedelta
from pathlib import Path

import pytest
from sqlalchemy import select
from typer.testing import CliRunner

from flows.cli import app
from ratchet import schemas
from ratchet.compaction import (
    CompactionConflict,
    compact,
    compact_partition,
    plan_compaction,
)
from ratchet.config import StoreConfig
from ratchet.db import open_database, repo
from ratchet.db.feedback_index import feedback_parts_for, unindexed_feedback_parts
from ratchet.db.models import FeedbackIndex, Part, PartReplacement, RecordKey
from ratchet.settings import get_settings
from ratchet.store import Store
from tests.unit.compaction_parts import add_part, keys_resolve, live_rows

A, B = "shop-bot", "help-bot"
CFG = StoreConfig(compaction_target_rows=4, compaction_min_parts=2, compaction_grace_s=3600)


@pytest.fixture
def env(ratchet_env: Path):
    settings = get_settings()
    store, sessions = Store(settings.store_root), open_database(settings)
    # agent A, 2026-11-02: five small interaction parts (14 rows) and three feedback parts (7)
    for n, size in enumerate([2, 3, 3, 3, 3]):
        add_part(
            store, sessions, "interactions", A, "2026-11-02", [f"a{n}-{k}" for k in range(size)]
        )
    for n, size in enumerate([3, 2, 2]):
        add_part(
            store, sessions, "feedback", A, "2026-11-02", [f"f{n}-{k}" for k in range(size)],
            [f"a{n}-{k}" for k in range(size)],
        )  # fmt: skip
    # left alone: a part already at the target size, a partition with one small part, and a
    # small part of another redaction version
    add_part(store, sessions, "interactions", A, "2026-11-03", [f"big-{k}" for k in range(4)])
    add_part(store, sessions, "interactions", A, "2026-11-03", ["lone-1"])
    add_part(store, sessions, "interactions", A, "2026-11-02", ["old-1"], redaction="rules-0")
    add_part(store, sessions, "interactions", B, "2026-11-02", ["b-1"])
    add_part(store, sessions, "interactions", B, "2026-11-02", ["b-2"])
    return store, sessions


def _live_paths(sessions, table: str) -> list[str]:
    with sessions() as s:
        return [p.path for p in repo.list_parts(s, table)]


def test_small_parts_are_merged_with_rows_unchanged_and_keys_moved(env) -> None:
    store, sessions = env
    before = {t: live_rows(store, sessions, t) for t in ("interactions", "feedback")}
    with sessions() as s:
        arrivals = dict(
            s.execute(select(RecordKey.record_id, RecordKey.first_seen_at)).tuples().all()
        )

    report = compact(store, sessions, CFG, agent_id=A, purge=False)

    # A's interactions 2026-11-02 (14 rows -> 4+4+4+2) and A's feedback (7 rows -> 4+3)
    assert (report.partitions, report.parts_in, report.parts_out, report.rows) == (2, 8, 6, 21)
    assert report.conflicts == [] and report.bytes_out > 0
    with sessions() as s:
        parts = repo.list_parts(s, "interactions", agent_id=A)
        rows = sorted(p.rows for p in parts if p.partition_date.isoformat() == "2026-11-02")
        assert rows == [1, 2, 4, 4, 4]  # the rules-0 part stays apart
        assert sorted(p.rows for p in parts if p.partition_date.isoformat() == "2026-11-03") == [
            1,
            4,
        ]
        assert len(repo.list_parts(s, "interactions", agent_id=B)) == 2  # not asked for
        retired = [p for p in s.execute(select(Part)).scalars() if p.retired_at is not None]
        assert len(retired) == 8
        assert len(s.execute(select(PartReplacement)).all()) == 5 * 4 + 3 * 2
        # arrival times (what curation windows on) are kept
        assert (
            dict(s.execute(select(RecordKey.record_id, RecordKey.first_seen_at)).tuples().all())
            == arrivals
        )
    for t in ("interactions", "feedback"):
        after = live_rows(store, sessions, t)
        assert after.num_rows == before[t].num_rows
        # the same rows, value for value (the order across parts follows the part paths)
        key = "interaction_id" if t == "interactions" else "feedback_id"
        assert after.sort_by(key).equals(before[t].sort_by(key))
        assert set(keys_resolve(store, sessions, t).values()) == {1}


def test_rows_keep_their_input_order_inside_compacted_parts(env) -> None:
    store, sessions = env
    with sessions() as s:
        (plan,) = [p for p in plan_compaction(s, CFG, A) if p.table_name == "interactions"]

    def ids(paths: list[str]) -> list[str]:
        t = store.read_tables(paths, schemas.INTERACTIONS, ["interaction_id"])
        return t["interaction_id"].to_pylist()

    before = ids([p.path for p in plan.parts])
    written = compact_partition(store, sessions, plan)
    assert ids([w.path for w in written]) == before
    assert [w.rows for w in written] == [4, 4, 4, 2]


def test_a_rerun_is_a_no_op_and_a_dry_run_changes_nothing(env) -> None:
    store, sessions = env
    dry = compact(store, sessions, CFG, dry_run=True)
    assert (dry.partitions, dry.parts_out, dry.bytes_out) == (3, 7, 0)  # B's pair: one part
    assert _live_paths(sessions, "interactions") == _live_paths(sessions, "interactions")
    files = set(store.list_files("interactions"))
    assert len(_live_paths(sessions, "interactions")) == 10 and len(files) == 10

    compact(store, sessions, CFG, purge=False)
    paths = {t: _live_paths(sessions, t) for t in ("interactions", "feedback")}
    again = compact(store, sessions, CFG, purge=False)
    assert (again.partitions, again.parts_in, again.parts_out) == (0, 0, 0)
    assert {t: _live_paths(sessions, t) for t in ("interactions", "feedback")} == paths


def test_feedback_index_follows_compaction(env) -> None:
    store, sessions = env
    with sessions() as s:
        old = set(feedback_parts_for(s, A, ["a0-0", "a2-1"]))
    assert len(old) == 2
    compact(store, sessions, CFG, agent_id=A, purge=False)
    with sessions() as s:
        live = {p.id for p in repo.list_parts(s, "feedback", agent_id=A)}
        indexed = set(s.execute(select(FeedbackIndex.part_id)).scalars())
        now = feedback_parts_for(s, A, ["a0-0", "a2-1"])
    assert indexed == live and not (indexed & old)  # the index names live parts only
    assert set(now) <= live and len(now) >= 1


def test_unindexed_feedback_parts_are_indexed_by_a_compaction_run(env) -> None:
    store, sessions = env
    add_part(
        store, sessions, "feedback", B, "2026-11-05", ["g1", "g2"], ["b-1", "b-2"], indexed=False
    )
    with sessions() as s:
        assert len(unindexed_feedback_parts(s, B)) == 1
        assert feedback_parts_for(s, B, ["b-1"]) == {}
    report = compact(store, sessions, CFG, agent_id=B, purge=False)
    assert report.indexed_parts == 1
    with sessions() as s:
        assert unindexed_feedback_parts(s, B) == {}
        assert len(feedback_parts_for(s, B, ["b-1"])) == 1


def test_a_part_retired_meanwhile_rolls_the_partition_back(env) -> None:
    store, sessions = env
    with sessions() as s:
        plans = plan_compaction(s, CFG, A)
    plan = next(p for p in plans if p.table_name == "interactions")
    with sessions() as s, s.begin():  # a concurrent erasure rewrote one of them
        repo.retire_parts(s, [plan.parts[0].id])
    before = _live_paths(sessions, "interactions")
    with pytest.raises(CompactionConflict):
        compact_partition(store, sessions, plan)
    assert _live_paths(sessions, "interactions") == before  # nothing of it committed


def test_purge_deletes_compacted_files_after_the_grace_only(env) -> None:
    store, sessions = env
    with sessions() as s, s.begin():  # retired by someone else (erasure): not compaction's
        other = next(p for p in repo.list_parts(s, "interactions", agent_id=B))
        repo.retire_parts(s, [other.id])
    on_disk = set(store.list_files("interactions")) | set(store.list_files("feedback"))
    report = compact(store, sessions, CFG, agent_id=A)  # purge with the grace: nothing yet
    assert report.purge is not None and report.purge["deleted"] == []
    written = set(store.list_files("interactions")) | set(store.list_files("feedback"))
    assert written > on_disk

    from datetime import UTC, datetime

    later = datetime.now(UTC) + timedelta(hours=2)
    report = compact(store, sessions, CFG, agent_id=A, now=later)
    with sessions() as s:
        live = {p.path for t in ("interactions", "feedback") for p in repo.list_parts(s, t)}
    left = set(store.list_files("interactions")) | set(store.list_files("feedback"))
    assert left == live | {other.path}
    assert len(report.purge["deleted"]) == 8


def test_cli_store_compact(env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    over = tmp_path / "over.yaml"
    over.write_text("store:\n  compaction_target_rows: 4\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(over))
    runner = CliRunner()
    dry = runner.invoke(app, ["store", "compact", "--agent", A, "--dry-run", "--json"])
    assert dry.exit_code == 0, dry.output
    out = json.loads(dry.stdout)
    assert (out["dry_run"], out["partitions"], out["parts_in"], out["parts_out"]) == (True, 2, 8, 6)
    done = runner.invoke(app, ["store", "compact", "--agent", A])
    assert done.exit_code == 0, done.output
    assert "compacted 2 partition(s): 8 parts -> 6" in done.stdout
    bad = runner.invoke(app, ["store", "compact", "--grace", "soon"])
    assert bad.exit_code == 2 and "--grace" in bad.output


def test_an_output_identical_to_an_input_leaves_that_input_in_place(ratchet_env: Path) -> None:
    settings = get_settings()
    store, sessions = Store(settings.store_root), open_database(settings)
    ids = [add_part(store, sessions, "interactions", A, "2026-11-02", [f"x{n}-{k}" for k in range(size)])
           for n, size in enumerate([3, 1, 2])]  # fmt: skip
    report = compact(store, sessions, CFG, purge=False)  # cut at 4: the third part is an output
    assert (report.parts_in, report.parts_out) == (3, 2)
    with sessions() as s:
        live = {p.id for p in repo.list_parts(s, "interactions")}
    assert ids[2] in live and ids[0] not in live and ids[1] not in live
    assert set(keys_resolve(store, sessions, "interactions").values()) == {1}
    assert compact(store, sessions, CFG, purge=False).partitions == 0


def test_weekly_step_compacts_and_reports_counts_only(
    env, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.weekly import report_markdown
    from tasks.compact import compact_store_task

    over = tmp_path / "over.yaml"
    over.write_text("store:\n  compaction_target_rows: 4\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(over))
    counts = compact_store_task.fn(A)
    assert (counts["partitions"], counts["parts_in"], counts["parts_out"]) == (2, 8, 6)
    assert "purge" not in counts and counts["purged_files"] == 0  # no paths in Prefect's records
    text = report_markdown(
        "weekly-x", "[a, b)", {"ingest": {"files": 1}, "compact": counts}, {}, None
    )
    assert "- compaction: 2 partition(s), 8 small parts -> 6; 0 retired file(s) purged" in text
