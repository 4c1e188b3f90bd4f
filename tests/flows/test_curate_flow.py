"""The curate flow on the bundled sample: versions per agent, idempotent reruns, exports,
artifacts. Flow calls are few (each costs 1-2 s under the session harness)."""

from __future__ import annotations

import json
from pathlib import Path

from ratchet.db import open_database, repo
from ratchet.settings import get_settings

SAMPLE = Path(__file__).resolve().parents[2] / "ratchet" / "data" / "sample"
AGENTS = ("billing-helper", "returns-bot", "shop-assistant")


def _artifacts(flow_run_id) -> dict[str, str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return {a.key: json.dumps(a.data) for a in arts if a.key}


def test_curate_sample_registers_versions_once_with_exports(
    prefect_harness, ratchet_env, tmp_path, monkeypatch
) -> None:
    from flows.curate import curate_flow
    from flows.ingest import ingest_flow

    # A bar some of the sample's smaller datasets miss, so refused exports show too.
    (tmp_path / "bar.yaml").write_text("export:\n  min_examples: 60\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(tmp_path / "bar.yaml"))

    ingest_flow(
        paths=[str(p) for p in sorted(SAMPLE.glob("interactions-*.jsonl"))]
        + [str(SAMPLE / "openai-chat.jsonl")],
        feedback_paths=[str(p) for p in sorted(SAMPLE.glob("feedback-*.jsonl"))],
    )
    state = curate_flow(return_state=True)
    assert state.is_completed(), state.message
    first = state.result()
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
                assert ("flow_run", str(state.state_details.flow_run_id)) in refs
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

    arts = _artifacts(state.state_details.flow_run_id)
    assert {"curate-summary", "curate-versions", "curate-exports"} <= set(arts)
    assert "Signals" in arts["curate-summary"] and "too_few_examples" in arts["curate-exports"]

    second = curate_flow()
    assert second["versions_new"] == 0
    assert second["versions"] == {k: v.replace(", new", "") for k, v in first["versions"].items()}
    with open_database(settings)() as s:
        assert {v.id for v in repo.list_dataset_versions(s)} == registered
