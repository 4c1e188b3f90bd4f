"""Retention (issue 12): records older than the configured age go, with the reach of an
erasure (parts, dataset versions and their exports); younger ones stay; a dry run changes
nothing; the scheduled deployment in deployments/prefect.yaml loads."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

REPO = Path(__file__).resolve().parents[2]
AGENT = "shop-assistant"
runner = CliRunner()


def _files(folder: Path, now: datetime) -> tuple[Path, Path]:
    """Ten interactions with feedback: five 100 days old ("ancient ..."), five a day old."""
    rows, feedback = [], []
    for i in range(10):
        old = i < 5
        when = now - timedelta(days=100 if old else 1, hours=i)
        word = "ancient" if old else "recent"
        iid = f"rt-{i:02d}"
        rows.append(
            {
                "interaction_id": iid,
                "agent_id": AGENT,
                "user_id": f"user-{i}",
                "timestamp": when.isoformat(),
                "messages": [
                    {"role": "user", "content": f"{word} question about parcel {i} please"}
                ],
                "response": f"{word} answer about parcel {i}.",
            }
        )
        feedback.append(
            {
                "feedback_id": f"fb-rt-{i}",
                "interaction_id": iid,
                "agent_id": AGENT,
                "timestamp": (when + timedelta(minutes=5)).isoformat(),
                "thumb": 1,
            }
        )
    logs, fb = folder / "logs.jsonl", folder / "fb.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    fb.write_text("".join(json.dumps(r) + "\n" for r in feedback))
    return logs, fb


def _invoke(*args: str) -> Any:
    from flows.cli import app

    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def _grep(root: Path, needle: str) -> list[str]:
    import pyarrow.parquet as pq

    hits = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if path.suffix == ".parquet":
                data = json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
            if needle.encode() in data:
                hits.append(str(path.relative_to(root)))
    return hits


def test_retention_deletes_what_is_older_with_the_reach_of_an_erasure(
    prefect_harness: None, ratchet_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from flows.curate import curate_flow
    from flows.ingest import ingest_flow
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    logs, fb = _files(tmp_path, datetime.now(UTC))
    ingest_flow(paths=[str(logs)], feedback_paths=[str(fb)])
    curate_flow(agent=AGENT)
    store = ratchet_env / "store"
    assert any(h.startswith("datasets/") for h in _grep(store, "ancient"))

    config = tmp_path / "retention.yaml"
    config.write_text(yaml.safe_dump({"retention": {"interactions_days": 30}}))
    monkeypatch.setenv("RATCHET_CONFIG", str(config))

    before = sorted(_grep(store, "ancient"))
    dry = _invoke("retention", "--dry-run", "--json")
    assert dry["dry_run"] and dry["rows_removed"]["interactions"] == 5
    assert dry["cutoffs"]["interactions"] and dry["cutoffs"]["feedback"] is None
    assert sorted(_grep(store, "ancient")) == before

    out = _invoke("retention", "--json")
    assert out["rows_removed"]["interactions"] == 5 and out["rows_removed"]["feedback"] == 5
    assert out["versions_superseded"] >= 1 and out["tombstones_added"] == 0
    assert _grep(store, "ancient") == []
    recent = _grep(store, "recent")
    assert any(h.startswith("interactions/") for h in recent)
    assert any(h.startswith("datasets/") for h in recent)
    with open_database(get_settings())() as s:
        assert repo.list_tombstones(s) == []  # age is not a request to refuse the data later
        latest = repo.latest_dataset_version(s, AGENT, "eval_cases")
        assert latest is not None and latest.superseded_by is None
    assert _invoke("retention", "--json")["rows_removed_total"] == 0  # idempotent


def test_the_retention_deployment_loads_with_a_daily_schedule() -> None:
    from prefect.client.schemas.schedules import CronSchedule
    from prefect.flows import load_flow_from_entrypoint

    spec = yaml.safe_load((REPO / "deployments" / "prefect.yaml").read_text())
    deployment = next(d for d in spec["deployments"] if d["name"] == "retention-daily")
    flow: Any = load_flow_from_entrypoint(str(REPO / deployment["entrypoint"]))
    assert flow.name == "retention"
    assert not deployment.get("parameters")  # every parameter has its default
    (schedule,) = deployment["schedules"]
    CronSchedule(cron=schedule["cron"], timezone=schedule["timezone"])  # a valid cron
    assert deployment["work_pool"]["job_variables"]["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"]
