"""The weekly flow under a real Prefect run: the bundled sample through the inbox, counted
exactly against its manifest; its curate stage's versions per agent (registered once, with
lineage, exports and artifacts; an idempotent rerun); the run's own report, name, logs and
progress as the API serves them to the UI; an empty inbox; and a transient error retried by the
task (a permanent one not). The sample is ingested and curated once, for all of these checks.
"""

from __future__ import annotations

import json
import re
import shutil
import sqlite3
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import SAMPLE_DIR

MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())
AGENTS = ("billing-helper", "returns-bot", "shop-assistant")
RUN_LINK = re.compile(r"/runs/flow-run/([0-9a-f-]{36})")
STAGE_LINK = {  # the report's stage table: | stage | state | [run id](.../runs/flow-run/<id>) |
    stage: re.compile(
        rf"\| {stage} \| Completed \| \[[^]]*\]\([^)]*/runs/flow-run/([0-9a-f-]{{36}})\)"
    )
    for stage in ("ingest", "curate")
}


def _inline_events_without_consent() -> int:
    """Inline feedback rides on its record: a record without consent drops its events too."""
    n = 0
    for path in sorted(SAMPLE_DIR.glob("interactions-*.jsonl")):
        for line in path.read_bytes().splitlines():
            try:
                obj = json.loads(line)
            except ValueError:
                continue
            if isinstance(obj, dict) and obj.get("consent") is False and "feedback" in obj:
                fb = obj["feedback"]
                n += len(fb) if isinstance(fb, list) else 1
    return n


def _client() -> Any:
    from prefect.client.orchestration import get_client

    return get_client(sync_client=True)


def _artifacts(flow_run_id: Any) -> list[Any]:
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with _client() as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )


def _logs(flow_run_ids: list[Any]) -> list[str]:
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the handler ships in batches
    with _client() as client:
        logs = client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=flow_run_ids)), limit=200
        )
    return [f"{log.name}: {log.message}" for log in logs]


def _fill_inbox(home: Path) -> None:
    logs, feedback = home / "inbox" / "logs", home / "inbox" / "feedback"
    logs.mkdir(parents=True)
    feedback.mkdir(parents=True)
    for f in MANIFEST["files"]:
        shutil.copy(SAMPLE_DIR / f["name"], (feedback if f["kind"] == "feedback" else logs))


def _curate_checks(first: dict[str, Any], curate_run_id: str) -> None:
    """The curate stage on the sample: versions per agent, each registered once with its
    lineage, exports written or refused per rule, the run's artifacts; a rerun adds nothing."""
    from flows.curate import curate_flow
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    reports = {r["agent"]: r for r in first["reports"]}
    assert sorted(reports) == list(AGENTS)
    for agent, r in reports.items():
        kinds = {v["kind"] for v in r["versions"]}
        assert {"eval_cases", "sft_examples", "binary_feedback", "review_queue"} <= kinds, agent
        assert all(v["created"] for v in r["versions"])
    assert "preference_pairs" in {v["kind"] for v in reports["shop-assistant"]["versions"]}
    assert first["signals"]["golden"] > 0 and first["signals"]["regression"] > 0
    assert first["holdout_overlap"] == 0

    settings = get_settings()
    with open_database(settings)() as s:
        registered = {v.id for v in repo.list_dataset_versions(s)}
        for r in reports.values():
            for v in r["versions"]:
                row = repo.get_dataset_version(s, v["version"])
                assert row.rows == v["rows"] and row.agent_id == r["agent"]
                refs = repo.dataset_lineage(s, v["version"])
                assert any(k == "part" for k, _ in refs)
                assert ("flow_run", curate_run_id) in refs
    assert len(registered) == first["versions_new"]

    store = Path(settings.store_root)
    for r in reports.values():
        for v in r["versions"]:
            assert (store / v["path"]).is_file()
        for e in r["exports"]:
            folder = store / "exports" / r["agent"] / e["version"]
            if e["status"] == "written":
                assert all((folder / f).is_file() for f in e["files"])
            else:  # refused: reason counted per rule, nothing written for that format
                assert e["violations"] and e["files"] == []
    eval_export = next(e for e in reports["shop-assistant"]["exports"] if e["kind"] == "eval_cases")
    assert eval_export["status"] == "written"
    assert first["exports_refused"]  # some formats have fewer than min_examples

    arts = {a.key: json.dumps(a.data) for a in _artifacts(curate_run_id) if a.key}
    assert {"curate-summary", "curate-versions", "curate-exports"} <= set(arts)
    assert "Signals" in arts["curate-summary"] and "too_few_examples" in arts["curate-exports"]

    second = curate_flow()
    assert second["versions_new"] == 0
    assert second["versions"] == {k: v.replace(", new", "") for k, v in first["versions"].items()}
    with open_database(settings)() as s:
        assert {v.id for v in repo.list_dataset_versions(s)} == registered


def test_weekly_on_the_sample_inbox_counts_reports_and_logs(
    prefect_harness, ratchet_env, tmp_path, monkeypatch
) -> None:
    from flows.weekly import weekly_flow

    # A bar some of the sample's smaller datasets miss, so refused exports show too.
    (tmp_path / "bar.yaml").write_text("export:\n  min_examples: 60\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(tmp_path / "bar.yaml"))
    _fill_inbox(ratchet_env)
    state = weekly_flow(all_time=True, improve=False, return_state=True)  # no paths: the inbox
    assert state.is_completed(), state.message
    result = state.result()
    ingest, curate = result["ingest"], result["curate"]
    m, fb = MANIFEST["interactions"], MANIFEST["feedback"]

    # data in, exactly as the sample's manifest says
    assert ingest["files"] == len(MANIFEST["files"])
    assert ingest["lines"] == sum(f["lines"] for f in MANIFEST["files"])
    assert ingest["quarantined"] == m["expected_quarantine"]
    assert ingest["dropped_consent"] == m["consent_false"] + _inline_events_without_consent()
    assert ingest["skipped_already_stored"] == {"interactions": m["exact_duplicates"]}
    assert ingest["stored"]["interactions"] == (
        # every chat-completions line is one interaction (a tool-call turn as well)
        m["valid_distinct"] - m["consent_false"] + MANIFEST["openai_chat"]["lines"]
    )
    stored_feedback = fb["events_total"] - _inline_events_without_consent()
    assert ingest["stored"]["feedback"] == stored_feedback
    # curated: every stored event arrived in this run's window, every agent of the sample
    assert curate["feedback_in_window"] == stored_feedback
    assert {r["agent"] for r in curate["reports"]} == set(m["by_agent"])
    assert all(r["status"] == "curated" for r in curate["reports"])
    versions = [v for r in curate["reports"] for v in r["versions"]]
    exports = [e for r in curate["reports"] for e in r["exports"]]
    assert curate["versions_new"] == len(versions) > 0
    assert curate["exports_written"] == sum(e["status"] == "written" for e in exports) > 0

    # the run is named by its window, and carries the week's report
    weekly_id = state.state_details.flow_run_id
    with _client() as client:
        run = client.read_flow_run(weekly_id)
    assert run.name == f"weekly-all-to-{datetime.now(UTC):%Y-%m-%d}"
    report = {a.key: a for a in _artifacts(weekly_id)}["weekly-report"]
    text = report.data
    assert f"files: {ingest['files']} (0 already ingested)" in text
    assert f"feedback {stored_feedback}, interactions {ingest['stored']['interactions']}" in text
    for reason, n in m["expected_quarantine"].items():
        assert f"| {reason} | {n} |" in text
    for v in versions:
        assert f"| {v['kind']} | {v['version']} | {v['rows']} | yes |" in text
    assert (
        f"Written: {curate['exports_written']}; refused: "
        f"{sum(e['status'] == 'refused' for e in exports)}"
    ) in text
    subflows = [STAGE_LINK[stage].search(text).group(1) for stage in ("ingest", "curate")]
    assert set(subflows) <= set(RUN_LINK.findall(text))
    with _client() as client:
        names = [client.read_flow_run(i).name for i in subflows]
    assert names[0].startswith("ingest-") and names[1].startswith("curate-")

    # the core's records reach the runs' logs (what the UI shows): per file, batch, agent, stage
    logs = "\n".join(_logs([weekly_id, *subflows]))
    assert "ratchet.flows.weekly: stage ingest: started" in logs
    assert "ratchet.flows.weekly: stage curate: started" in logs
    assert "interactions-week-01.jsonl: batch 1 committed" in logs
    assert "feedback-week-04.jsonl (" in logs and "ingest started" in logs
    for agent in m["by_agent"]:
        assert f"ratchet.curation.registry: {agent}: curating" in logs

    # progress: per agent on the curate run (complete), per file on the ingest task runs
    curate_progress = [a for a in _artifacts(subflows[1]) if a.type == "progress"]
    assert [a.data for a in curate_progress] == [100.0]
    ingest_progress = [a for a in _artifacts(subflows[0]) if a.type == "progress"]
    assert len(ingest_progress) == len(MANIFEST["files"]) - 0
    assert all(a.data > 0 for a in ingest_progress)

    _curate_checks(curate, str(subflows[1]))


def test_weekly_on_an_empty_inbox_warns_and_is_named_by_its_window(
    prefect_harness, ratchet_env
) -> None:
    from flows.weekly import weekly_flow

    until = datetime(2026, 11, 30, 3, tzinfo=UTC)
    state = weekly_flow(until=until, return_state=True)
    assert state.is_completed(), state.message
    result = state.result()
    assert "ingest" not in result and result["curate"]["feedback_in_window"] == 0
    assert (ratchet_env / "inbox" / "logs").is_dir()  # created on first use
    assert (ratchet_env / "inbox" / "feedback").is_dir()
    weekly_id = state.state_details.flow_run_id
    with _client() as client:
        assert client.read_flow_run(weekly_id).name == "weekly-2026-11-23"
    text = {a.key: a for a in _artifacts(weekly_id)}["weekly-report"].data
    assert "Nothing ingested" in text and "2026-11-23T03:00:00+00:00" in text
    assert "| ingest | not run | - |" in text
    assert any("inbox is empty" in line for line in _logs([weekly_id]))


def test_a_transient_error_is_retried_by_the_task_a_permanent_one_is_not(
    prefect_harness, ratchet_env, monkeypatch: pytest.MonkeyPatch
) -> None:
    import flows.curate as curate_mod
    import tasks.curate as task_mod
    from flows.curate import CurateFailed, curate_flow

    real = task_mod.curate_agent
    calls: list[str] = []

    def locked_once(ctx: Any, agent: str, window: Any) -> dict[str, Any]:
        calls.append(agent)
        if len(calls) == 1:
            raise sqlite3.OperationalError("database is locked")
        return real(ctx, agent, window)

    monkeypatch.setattr(task_mod, "curate_agent", locked_once)
    fast = task_mod.curate_agent_task.with_options(retry_delay_seconds=0, retry_jitter_factor=None)
    monkeypatch.setattr(curate_mod, "curate_agent_task", fast)
    summary = curate_flow(agent="quiet-agent")
    assert calls == ["quiet-agent", "quiet-agent"]  # failed once, retried, then done
    assert summary["agents"] == "quiet-agent (no_feedback)"

    calls.clear()

    def bad_data(ctx: Any, agent: str, window: Any) -> dict[str, Any]:
        calls.append(agent)
        raise ValueError("feedback.rating must be 1-5")

    monkeypatch.setattr(task_mod, "curate_agent", bad_data)
    with pytest.raises(CurateFailed, match="ValueError"):
        curate_flow(agent="quiet-agent")
    assert calls == ["quiet-agent"]  # not retried
