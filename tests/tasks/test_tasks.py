"""Each task's function (``.fn``, no Prefect run) on real small inputs: a sample week ingested
file by file, then one agent curated, against the ledger, the store and the manifest."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from ratchet.config import load_config
from ratchet.db import repo
from ratchet.ingest.inputs import write_input_list
from ratchet.ingest.reader import file_sha256
from ratchet.settings import get_settings
from tasks import runtime
from tasks.curate import curate_agent_task
from tasks.ingest import ingest_file_task
from tests.conftest import SAMPLE_DIR

MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())
FILES = {f["name"]: f for f in MANIFEST["files"]}


@pytest.fixture(autouse=True)
def _key(ratchet_env: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A pseudonym key in the environment: no Secret-block lookup (no Prefect server) needed."""
    monkeypatch.setenv("RATCHET_PSEUDONYM_KEY", "3f" * 32)


def _ingest(path: Path, kind: str) -> dict:
    """The task as the flow calls it: an input-list reference and an index, never a path."""
    settings = get_settings()
    ref = write_input_list(settings.home, [(kind, path)])
    return ingest_file_task.fn(
        ref,
        0,
        file_sha256(path),
        kind,
        "auto",
        None,
        load_config(settings),
        datetime.now(UTC),
        None,
    )


def test_runtime_services_come_from_settings(ratchet_env: Path) -> None:
    s = runtime.settings()
    assert s.home == ratchet_env
    assert runtime.store(s) is runtime.store(s)  # cached per process
    assert len(runtime.pseudonym_key(s)) >= 32
    with runtime.sessions(s)() as session:
        assert repo.list_dataset_versions(session) == []


def test_ingest_task_fn_stores_a_sample_file_once(ratchet_env: Path) -> None:
    path = SAMPLE_DIR / "feedback-week-01.jsonl"
    report = _ingest(path, "feedback")
    assert report["status"] == "ingested"
    assert report["source_file"] == FILES[path.name]["sha256"]
    assert report["lines"] == FILES[path.name]["lines"]
    assert report["stored"] == {"feedback": FILES[path.name]["lines"]}  # a clean feedback file
    assert report["quarantined"] == {} and report["parts"]
    assert all(q["success"] for q in report["quality"])
    again = _ingest(path, "feedback")
    assert again["status"] == "already_ingested" and again["stored"] == {}


def test_curate_task_fn_registers_versions_and_exports(ratchet_env: Path) -> None:
    _ingest(SAMPLE_DIR / "interactions-week-01.jsonl", "interactions")
    _ingest(SAMPLE_DIR / "feedback-week-01.jsonl", "feedback")
    config = load_config(get_settings())
    until = datetime.now(UTC) + timedelta(seconds=1)
    agent = "shop-assistant"
    report = curate_agent_task.fn(agent, None, until, config, None)
    assert report["agent"] == agent and report["status"] == "curated"
    assert report["selection"]["feedback_in_window"] > 0
    made = {v["kind"]: v for v in report["versions"]}
    assert "eval_cases" in made
    store = runtime.store(runtime.settings())
    with runtime.sessions(runtime.settings())() as s:
        registered = {v.id: v for v in repo.list_dataset_versions(s, agent_id=agent)}
    assert set(registered) == {v["version"] for v in report["versions"]}
    for v in report["versions"]:
        assert registered[v["version"]].rows == v["rows"] > 0
        assert store.exists(v["path"])
    assert {e["status"] for e in report["exports"]} <= {"written", "refused"}
    # idempotent: the same window again makes the same versions, none new
    again = curate_agent_task.fn(agent, None, until, config, None)
    assert {v["version"] for v in again["versions"]} == set(registered)
    assert not any(v["created"] for v in again["versions"])


def test_curate_task_fn_without_feedback(ratchet_env: Path) -> None:
    config = load_config(get_settings())
    report = curate_agent_task.fn("nobody", None, datetime.now(UTC), config, None)
    assert report["status"] == "no_feedback" and report["versions"] == []


def test_ingest_task_fn_counts_against_the_manifest(ratchet_env: Path) -> None:
    path = SAMPLE_DIR / "interactions-week-01.jsonl"
    report = _ingest(path, "interactions")
    assert report["lines"] == FILES[path.name]["lines"]
    assert report["source_file"] == FILES[path.name]["sha256"]
    stored = sum(report["stored"].values())
    assert (
        stored
        + sum(report["quarantined"].values())
        + report["dropped_consent"]
        + sum(report["skipped_stored"].values())
        >= report["lines"] - report["blank"] - 1
    )
