"""Selection by feedback arrival: late feedback is curated in the window it arrives in.

Core only (no Prefect): records go in through the ingest core, curation through
``curate_agent``, as the curate task calls it. Arrival is the ledger's commit time
(``record_keys.first_seen_at``); the tests set it to a chosen instant after each ingest, which is
what an ingest run at that instant would have recorded.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.compute as pc
import pytest
from sqlalchemy import update

from ratchet import schemas
from ratchet.config import load_config
from ratchet.curation.registry import CurationContext, curate_agent, read_version
from ratchet.curation.select import Window, WindowError, select_inputs, to_utc
from ratchet.db import open_database, repo
from ratchet.db.models import RecordKey
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor, resolve_pseudonym_key
from ratchet.settings import get_settings
from ratchet.store import Store

AGENT = "late-bot"
QUESTIONS = {
    "i1": ("How do I reset my router password?", "Hold the reset button for ten seconds."),
    "i2": ("Which plans include international roaming?", "The Travel and Premium plans do."),
    "i3": ("Can I pay my invoice by bank transfer?", "Yes, details are on the invoice."),
}


def _interaction(iid: str, day: str) -> dict:
    q, a = QUESTIONS[iid]
    return {
        "interaction_id": iid,
        "agent_id": AGENT,
        "timestamp": f"{day}T09:00:00Z",
        "messages": [{"role": "user", "content": q}],
        "response": a,
    }


def _fb(iid: str, ts: str, **kw: object) -> dict:
    return {"interaction_id": iid, "agent_id": AGENT, "timestamp": ts, **kw}


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _arrived(ctx: IngestContext | CurationContext, when: str, ids: list[str]) -> None:
    """Stamp these feedback records as committed by the ledger at ``when``."""
    with ctx.sessions() as s, s.begin():
        s.execute(
            update(RecordKey)
            .where(RecordKey.kind == "feedback", RecordKey.record_id.in_(ids))
            .values(first_seen_at=to_utc(when))
        )


@pytest.fixture
def env(ratchet_env: Path, tmp_path: Path):
    settings = get_settings()
    config = load_config(settings)
    store, sessions = Store(settings.store_root), open_database(settings)
    redactor = Redactor(config.redaction)
    ictx = IngestContext(
        store=store,
        sessions=sessions,
        config=config,
        redactor=redactor,
        pseudonym_key=resolve_pseudonym_key(settings),
        now=datetime(2026, 2, 1, tzinfo=UTC),
    )
    # interactions of week 1 (two days, so two parts); i3 stays without feedback
    ingest_file(
        ictx,
        _write(
            tmp_path / "i.jsonl",
            [
                _interaction("i1", "2026-01-05"),
                _interaction("i2", "2026-01-06"),
                _interaction("i3", "2026-01-07"),
            ],
        ),
        "interactions",
    )
    # week 1: i1 voted up. week 3: i2 voted up (late), i1 voted down by the same user (changed)
    ingest_file(
        ictx,
        _write(
            tmp_path / "f1.jsonl",
            [
                _fb("i1", "2026-01-06T10:00:00Z", thumb=1, annotator="u1", feedback_id="f-1"),
            ],
        ),
        "feedback",
    )
    _arrived(ictx, "2026-01-06T12:00:00Z", ["f-1"])
    ingest_file(
        ictx,
        _write(
            tmp_path / "f3.jsonl",
            [
                _fb("i2", "2026-01-20T10:00:00Z", thumb=1, annotator="u2", feedback_id="f-2"),
                _fb("i1", "2026-01-21T10:00:00Z", thumb=-1, annotator="u1", feedback_id="f-3"),
                _fb("i2", "2026-01-26T00:00:00Z", thumb=-1, annotator="u2", feedback_id="f-4"),
            ],
        ),
        "feedback",
    )
    _arrived(ictx, "2026-01-21T12:00:00Z", ["f-2", "f-3"])
    _arrived(ictx, "2026-01-26T00:00:00Z", ["f-4"])  # arrives exactly at week 3's until
    return CurationContext(store, sessions, config, redactor, None)


WEEK1 = Window(datetime(2026, 1, 5, tzinfo=UTC), datetime(2026, 1, 12, tzinfo=UTC))
WEEK3 = Window(datetime(2026, 1, 19, tzinfo=UTC), datetime(2026, 1, 26, tzinfo=UTC))


def test_window_selects_by_feedback_arrival_with_history(env: CurationContext) -> None:
    with env.sessions() as s:
        w1 = select_inputs(s, env.store, AGENT, WEEK1)
        w3 = select_inputs(s, env.store, AGENT, WEEK3)
        w2 = select_inputs(s, env.store, AGENT, Window(WEEK1.until, WEEK3.since))
    assert sorted(w1.interactions["interaction_id"].to_pylist()) == ["i1"]
    assert w1.feedback["feedback_id"].to_pylist() == ["f-1"]
    # week 3: the late vote on i2 and the changed vote on i1, with i1's week-1 history; the event
    # that arrived exactly at `until` belongs to the next window
    assert sorted(w3.interactions["interaction_id"].to_pylist()) == ["i1", "i2"]
    assert sorted(w3.feedback["feedback_id"].to_pylist()) == ["f-1", "f-2", "f-3"]
    assert w3.stats["feedback_in_window"] == 2 and w3.stats["feedback_history_events"] == 1
    # only the parts holding i1 and i2 are read (i3's part is never opened)
    assert w3.stats["interaction_parts_read"] == 2
    assert len(w3.feedback_part_ids) == 3 and len(w3.interaction_part_ids) == 2
    assert w2.interactions.num_rows == 0 and w2.stats["feedback_in_window"] == 0


def test_late_feedback_is_curated_in_its_window_and_retires(env: CurationContext) -> None:
    r1 = curate_agent(env, AGENT, WEEK1)
    assert r1["status"] == "curated"
    kinds1 = {v["kind"]: v for v in r1["versions"]}
    assert kinds1["eval_cases"]["rows"] == 1
    quiet = curate_agent(env, AGENT, Window(WEEK1.until, WEEK3.since))
    assert quiet["status"] == "no_feedback" and quiet["versions"] == []

    r3 = curate_agent(env, AGENT, WEEK3)
    kinds3 = {v["kind"]: v for v in r3["versions"]}
    with env.sessions() as s:
        v = repo.get_dataset_version(s, kinds3["eval_cases"]["version"])
        cases = read_version(env.store, v)
        lineage = repo.dataset_lineage(s, v.id)
    by_iid = {r["interaction_id"]: r for r in cases.to_pylist()}
    assert by_iid["i1"]["status"] == "retired" and by_iid["i1"]["retired_reason"] == "voted_down"
    assert by_iid["i2"]["status"] == "active" and by_iid["i2"]["kind"] == "golden"
    assert r3["stats"]["retired_golden"] == 1
    assert ("dataset_version", kinds1["eval_cases"]["version"]) in lineage
    assert sum(k == "part" for k, _ in lineage) == 5  # 2 interaction parts + 3 feedback parts
    assert v.parent_id == kinds1["eval_cases"]["version"]
    # the review queue holds i1 (thumbs down, no correction)
    rq = read_version(env.store, repo_get(env, kinds3["review_queue"]["version"]))
    assert rq["interaction_id"].to_pylist() == ["i1"]
    # rerunning week 3 registers nothing new, with the same ids
    again = curate_agent(env, AGENT, WEEK3)
    assert {v["kind"]: v["version"] for v in again["versions"]} == {
        k: v["version"] for k, v in kinds3.items()
    }
    assert not any(v["created"] for v in again["versions"])
    assert int(pc.sum(cases["pii_residual"]).as_py()) == 0


def repo_get(env: CurationContext, version: str):
    with env.sessions() as s:
        v = repo.get_dataset_version(s, version)
        s.expunge(v)
        return v


def test_window_rules() -> None:
    assert to_utc("2026-01-05") == datetime(2026, 1, 5, tzinfo=UTC)
    assert to_utc("2026-01-05T10:00:00+02:00") == datetime(2026, 1, 5, 8, tzinfo=UTC)
    with pytest.raises(WindowError):
        Window(WEEK3.since, WEEK1.until)
    with pytest.raises(WindowError):
        Window(None, datetime(2026, 1, 1))


def test_vote_dated_in_week_1_but_ingested_after_its_run_is_curated_by_week_2(
    env: CurationContext, tmp_path: Path
) -> None:
    week2 = Window(WEEK1.until, WEEK3.since)
    first = curate_agent(env, AGENT, WEEK1)
    assert first["selection"]["interactions_selected"] == 1  # i1 only
    # after week 1's run: a vote on i3, dated Wednesday of week 1, reaches the ledger on Tuesday
    ictx = IngestContext(
        store=env.store,
        sessions=env.sessions,
        config=env.config,
        redactor=env.redactor,
        pseudonym_key=b"k" * 32,
        now=datetime(2026, 2, 1, tzinfo=UTC),
    )
    ingest_file(
        ictx,
        _write(
            tmp_path / "late.jsonl",
            [
                _fb("i3", "2026-01-07T15:00:00Z", thumb=1, annotator="u3", feedback_id="f-late"),
            ],
        ),
        "feedback",
    )
    _arrived(ictx, "2026-01-13T08:00:00Z", ["f-late"])

    with env.sessions() as s:
        rerun1 = select_inputs(s, env.store, AGENT, WEEK1)
        w2 = select_inputs(s, env.store, AGENT, week2)
    # a rerun of week 1 sees what the first run saw; week 2 curates the late vote
    assert rerun1.feedback["feedback_id"].to_pylist() == ["f-1"]
    assert w2.interactions["interaction_id"].to_pylist() == ["i3"]
    assert w2.feedback["feedback_id"].to_pylist() == ["f-late"]
    report = curate_agent(env, AGENT, week2)
    assert report["status"] == "curated" and report["stats"]["signal_golden"] == 1
    cases = read_version(
        env.store,
        repo_get(env, next(v["version"] for v in report["versions"] if v["kind"] == "eval_cases")),
    )
    assert sorted(cases["interaction_id"].to_pylist()) == ["i1", "i3"]


def test_active_holdout_cases_over_every_version_newest_decides(tmp_path: Path) -> None:
    from ratchet.curation.select import active_holdout_cases
    from tests.unit.test_curation import CFG, QUESTIONS, fb, interaction, run

    store = Store(str(tmp_path / "store"))
    holdout = CFG.model_copy(update={"holdout_share": 0.999999})
    a = run(
        [interaction("i1", QUESTIONS[0]), interaction("i2", QUESTIONS[1])],
        [fb("i1", thumb=1), fb("i2", thumb=1)],
        holdout,
    ).eval_cases
    assert a["split"].to_pylist() == ["holdout", "holdout"]
    # a newer version holds i2's case retired and nothing of i1's
    b = a.filter(pc.equal(a["interaction_id"], "i2"))
    b = b.set_column(b.schema.get_field_index("status"), "status", pa.array(["retired"]))
    paths = []
    for name, table in (("old", a), ("new", b)):
        part = store.write_table_at(
            f"datasets/x/eval_cases/{name}/data.parquet", table, schemas.EVAL_CASES
        )
        paths.append(part.path)
    ref, used = active_holdout_cases(store, [("new", paths[1]), ("old", paths[0])])
    assert ref["interaction_id"].to_pylist() == ["i1"] and used == ["old"]
