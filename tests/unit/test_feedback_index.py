"""The feedback index: written with each feedback part, dropped with retired parts, and used by
curation's selection to read only the feedback parts that hold the selected interactions."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select, update

from ratchet.config import PipelineConfig
from ratchet.curation.select import Window, select_inputs
from ratchet.db import open_database, repo
from ratchet.db.feedback_index import feedback_parts_for, unindexed_feedback_parts
from ratchet.db.models import FeedbackIndex, RecordKey
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor
from ratchet.settings import get_settings
from ratchet.store import Store
from tests.unit.compaction_parts import add_part, when

A = "shop-bot"


@pytest.fixture
def env(ratchet_env: Path):
    settings = get_settings()
    return Store(settings.store_root), open_database(settings)


def _arrived(sessions, day: str, ids: list[str]) -> None:
    with sessions() as s, s.begin():
        s.execute(
            update(RecordKey)
            .where(RecordKey.kind == "feedback", RecordKey.record_id.in_(ids))
            .values(first_seen_at=when(day))
        )


def test_ingest_indexes_each_feedback_part_in_its_commit(env, tmp_path: Path) -> None:
    store, sessions = env
    # the sampled second opinion (Presidio) is not what this test is about, and costs seconds
    config = PipelineConfig.model_validate({"quality": {"second_opinion_enabled": False}})
    ctx = IngestContext(
        store=store, sessions=sessions, config=config, redactor=Redactor(config.redaction),
        pseudonym_key=b"k" * 32, now=datetime(2026, 11, 20, tzinfo=UTC),
    )  # fmt: skip
    f = tmp_path / "fb.jsonl"
    rows = [
        {"interaction_id": iid, "agent_id": A, "timestamp": ts, "thumb": 1, "annotator": who}
        for iid, ts, who in [
            ("i1", "2026-11-02T10:00:00Z", "u1"),
            ("i1", "2026-11-02T11:00:00Z", "u2"),  # two events, one index row
            ("i2", "2026-11-03T10:00:00Z", "u1"),
        ]
    ]
    f.write_text("".join(json.dumps(r) + "\n" for r in rows))
    ingest_file(ctx, f, "feedback")
    with sessions() as s:
        parts = {p.partition_date.isoformat(): p.id for p in repo.list_parts(s, "feedback")}
        index = set(s.execute(select(FeedbackIndex.interaction_id, FeedbackIndex.part_id)).tuples())
        assert unindexed_feedback_parts(s, A) == {}
        assert set(feedback_parts_for(s, A, ["i1"])) == {parts["2026-11-02"]}
    assert index == {("i1", parts["2026-11-02"]), ("i2", parts["2026-11-03"])}


def test_keys_must_all_name_their_interaction_and_retirement_drops_the_rows(env) -> None:
    store, sessions = env
    record = repo.PartRecord(
        table_name="feedback", path="feedback/x.parquet", rows=2, content_hash="c" * 64,
        redaction_version="r", agent_id=A,
    )  # fmt: skip
    with pytest.raises(ValueError, match="interaction_id"), sessions() as s, s.begin():
        repo.record_part(s, record, [("f1", "h1", "i1"), ("f2", "h2")])
    pid = add_part(store, sessions, "feedback", A, "2026-11-02", ["f1", "f2"], ["i1", "i2"])
    with sessions() as s, s.begin():
        assert feedback_parts_for(s, A, ["i1", "i2"]) == {
            pid: repo.list_parts(s, "feedback")[0].path
        }
        repo.retire_parts(s, [pid])
    with sessions() as s:
        assert s.execute(select(FeedbackIndex)).all() == []
        assert feedback_parts_for(s, A, ["i1"]) == {}


def test_selection_reads_only_the_parts_holding_the_selected_interactions(env) -> None:
    store, sessions = env
    add_part(store, sessions, "interactions", A, "2026-11-02", ["i1", "i2", "i3"])
    old_i1 = add_part(store, sessions, "feedback", A, "2026-11-02", ["f1"], ["i1"])
    old_i2 = add_part(store, sessions, "feedback", A, "2026-11-02", ["f2", "f3"], ["i2", "i3"])
    unindexed = add_part(
        store, sessions, "feedback", A, "2026-11-03", ["f4"], ["i1"], indexed=False
    )
    window_part = add_part(store, sessions, "feedback", A, "2026-11-10", ["f5"], ["i1"])
    _arrived(sessions, "2026-11-04", ["f1", "f2", "f3", "f4"])
    _arrived(sessions, "2026-11-10", ["f5"])

    with sessions() as s:
        sel = select_inputs(s, store, A, Window(when("2026-11-09"), when("2026-11-16")))
    assert sel.stats["interactions_selected"] == 1
    # the window's part, the part the index names for i1, and the unindexed part; not i2's
    assert sel.stats["feedback_parts_read"] == 3
    assert sorted(sel.feedback["feedback_id"].to_pylist()) == ["f1", "f4", "f5"]
    assert sorted(sel.feedback_part_ids) == sorted([old_i1, unindexed, window_part])
    assert old_i2 not in sel.feedback_part_ids
    assert sel.interactions["interaction_id"].to_pylist() == ["i1"]
