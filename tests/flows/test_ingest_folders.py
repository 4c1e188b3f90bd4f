"""`ratchet ingest DIR` on the project's own folders, empty inputs as warnings, and nothing that
Prefect records (parameters, run names, task runs, logs, states, artifacts) holding a path."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import SAMPLE_DIR

runner = CliRunner()


def _ledger_counts() -> dict[str, Any]:
    from ratchet.db import open_database
    from ratchet.db.models import RecordKey, SourceFile
    from ratchet.settings import get_settings

    with open_database(get_settings())() as s:
        files = list(s.query(SourceFile))
        keys = {
            k: s.query(RecordKey).filter(RecordKey.kind == k).count()
            for k in ("interaction", "feedback")
        }
    quarantined: dict[str, int] = {}
    consent = 0
    for f in files:
        assert f.status == "completed", (f.name, f.error)
        consent += f.counts.get("dropped_consent", 0)
        for reason, n in f.counts.get("quarantined", {}).items():
            quarantined[reason] = quarantined.get(reason, 0) + n
    return {
        "files": sorted(f.name for f in files),
        "keys": keys,
        "quarantined": quarantined,
        "consent": consent,
    }


def _assert_matches_manifest(folder: Path) -> None:
    manifest = json.loads((folder / "manifest.json").read_text())
    got = _ledger_counts()
    m = manifest["interactions"]
    assert "manifest.json" not in got["files"]
    assert got["quarantined"] == m["expected_quarantine"]
    assert got["keys"]["interaction"] == (
        m["valid_distinct"] - m["consent_false"] + manifest["openai_chat"]["lines"]
    )
    # every feedback event stored once; the only ones missing rode on a consent refusal
    assert (
        got["keys"]["feedback"] + got["consent"] - m["consent_false"]
        == manifest["feedback"]["events_total"]
    )


def test_ingest_of_the_bundled_sample_folder_in_one_command(prefect_harness, ratchet_env) -> None:
    result = runner.invoke(app, ["ingest", str(SAMPLE_DIR)])
    assert result.exit_code == 0, result.output
    assert "manifest.json" in result.output  # named in the warning that it was skipped
    _assert_matches_manifest(SAMPLE_DIR)


def test_ingest_of_a_generated_sample_folder(prefect_harness, ratchet_env, tmp_path) -> None:
    """Another seed, a quarter of the size (the bundled sample is the test above): every kind of
    noise is still planted (at least once each), and counted by the sample's own manifest."""
    out = tmp_path / "sample"
    args = ["--", "--seed", "11", "--weeks", "2", "--interactions", "600", "--openai", "15"]
    assert runner.invoke(app, ["sample", "--out", str(out), *args]).exit_code == 0
    quarantine = json.loads((out / "manifest.json").read_text())["interactions"]
    assert all(n > 0 for n in quarantine["expected_quarantine"].values())
    result = runner.invoke(app, ["ingest", str(out)])
    assert result.exit_code == 0, result.output
    _assert_matches_manifest(out)


def test_empty_file_and_empty_folder_are_warnings_with_zero_counts(
    prefect_harness, ratchet_env, tmp_path
) -> None:
    from flows.weekly import weekly_flow

    empty_dir = tmp_path / "this-week"
    empty_dir.mkdir()
    out = weekly_flow(paths=[str(empty_dir)])
    assert out["ingest"]["files"] == 0 and out["ingest"]["empty_folders"] == 1
    (empty_dir / "empty.jsonl").write_bytes(b"")
    result = runner.invoke(app, ["ingest", str(empty_dir)])
    assert result.exit_code == 0, result.output
    assert "files empty: 1" in result.output


# --- nothing Prefect records holds an input path -------------------------------------------------
PII_NAME = "jane.doe@example.com_+1-212-555-0100.jsonl"
PII_BAD_NAME = "john.roe@example.org_+1-646-555-0199.jsonl"
NEEDLES = (
    "jane.doe",
    "john.roe",
    "example.com",
    "example.org",
    "212-555-0100",
    "646-555-0199",
    "2125550100",
    "6465550199",
)


def _line(i: int) -> str:
    return json.dumps(
        {
            "interaction_id": f"leak-{i}",
            "agent_id": "shop-assistant",
            "timestamp": "2026-11-02T10:00:00Z",
            "messages": [{"role": "user", "content": f"question {i}"}],
            "response": f"answer {i}",
        }
    )


def _prefect_records_since(t0: datetime) -> str:
    """Every flow run since ``t0`` as the API serves it: parameters, names, states, task runs,
    logs and artifacts."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        FlowRunFilter,
        FlowRunFilterId,
        FlowRunFilterStartTime,
        LogFilter,
        LogFilterFlowRunId,
    )  # fmt: skip

    out: list[Any] = []
    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(start_time=FlowRunFilterStartTime(after_=t0))
        )
        assert runs, "no flow run recorded"
        ids = [r.id for r in runs]
        out += [r.model_dump(mode="json") for r in runs]
        out += [
            t.model_dump(mode="json")
            for t in client.read_task_runs(
                flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=ids))
            )
        ]
        out += [
            log.model_dump(mode="json")
            for log in client.read_logs(
                log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=ids))
            )
        ]
        out += [
            a.model_dump(mode="json")
            for a in client.read_artifacts(
                artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=ids))
            )
        ]
    return json.dumps(out)


def test_no_input_path_or_file_name_reaches_prefect(prefect_harness, ratchet_env, tmp_path) -> None:
    folder = tmp_path / "inbox-jane.doe@example.com"
    folder.mkdir()
    good = folder / PII_NAME
    good.write_text("\n".join(_line(i) for i in range(3)) + "\n")
    bad = folder / PII_BAD_NAME  # fails: past the minimum of lines, all quarantined
    bad.write_text("not json\n" * 120)
    t0 = datetime.now(UTC) - timedelta(seconds=1)
    result = runner.invoke(app, ["ingest", str(good), str(bad)])
    assert result.exit_code == 1, result.output
    assert not list((ratchet_env / "inputs").glob("*.json"))  # the list of raw paths is gone
    text = _prefect_records_since(t0)
    assert "ingest-file" in text and "Ingest summary" in text and "[EMAIL]" in text
    for needle in (*NEEDLES, str(tmp_path)):
        assert needle not in text, f"{needle!r} reached Prefect's records"
