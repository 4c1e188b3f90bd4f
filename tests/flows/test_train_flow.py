"""The train flow under the session's Prefect harness, with a fake trainer registered in the
backend registry: a candidate with its artifacts, a rerun that reuses it, a budget refusal,
and the CLI (``ratchet train --json``, ``ratchet models cancel``). Flow calls are few."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ratchet.backends import BACKENDS
from ratchet.db import open_database, repo
from ratchet.settings import get_settings
from tasks import runtime
from tests import training_fakes
from tests.training_fakes import FakeTrainer, seed

FAST = {"training": {"poll_interval_s": 0.01, "poll_max_interval_s": 0.01}}


def _artifacts(flow_run_id: Any) -> dict[str, Any]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    latest: dict[str, Any] = {}
    for a in sorted(arts, key=lambda a: a.created):  # a key republished: its newest version
        if a.key:
            latest[a.key] = a
    return latest


@pytest.fixture
def fake(ratchet_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setitem(BACKENDS, "fake", ("tests.training_fakes", None))
    trainer = FakeTrainer(script=("in_progress", "in_progress", "completed"))
    monkeypatch.setitem(training_fakes.CURRENT, "trainer", trainer)
    s = get_settings()
    return {"trainer": trainer, "seeded": seed(runtime.sessions(s), runtime.store(s))}


def test_train_flow_makes_a_candidate_with_artifacts_and_a_rerun_reuses_it(
    prefect_harness, fake
) -> None:
    from flows.train import train_flow

    seeded = fake["seeded"]
    state = train_flow(
        dataset=seeded.sft,
        strategy="sft",
        backend="fake",
        agent="support-bot",
        params={"n_epochs": 2},
        config_overrides=FAST,
        return_state=True,
    )
    assert state.is_completed(), state.message
    out = state.result()
    assert out["action"] == "submit" and not out["reused"]
    arts = _artifacts(state.state_details.flow_run_id)
    assert {"train-progress", "train-events", "train-model-card", "train-summary"} <= set(arts)
    assert seeded.sft in arts["train-model-card"].data
    events = json.loads(arts["train-events"].data)
    assert [r["step"] for r in events] == [0, 1, 2] and "train_loss" in events[0]
    assert arts["train-progress"].data == 100.0
    with open_database(get_settings())() as s:
        run = repo.get_training_run(s, out["training_run_id"])
        assert run.status == "completed" and run.created_by == "ratchet"
        assert repo.get_model_version(s, out["model_version_id"]).parent_id == seeded.base_id
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        name = client.read_flow_run(state.state_details.flow_run_id).name
    assert name == "train-support-bot-sft-fake"

    again = train_flow(
        dataset=seeded.sft,
        strategy="sft",
        backend="fake",
        params={"n_epochs": 2},
        config_overrides=FAST,
    )
    assert again["reused"] and again["model_version_id"] == out["model_version_id"]
    assert fake["trainer"].created == 1 and fake["trainer"].submit_calls == 1


def test_cli_train_json_budget_refusal_and_models_cancel(
    prefect_harness, fake, monkeypatch
) -> None:
    from flows.cli import app

    seeded = fake["seeded"]
    config = Path(get_settings().home) / "budget.yaml"
    config.parent.mkdir(parents=True, exist_ok=True)
    config.write_text("training:\n  budget_per_run_usd: 0.5\n  poll_interval_s: 0.01\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(config))
    runner = CliRunner()
    refused = runner.invoke(app, ["train", "--dataset", seeded.sft, "--backend", "fake"])
    assert refused.exit_code == 1
    assert "training.budget_per_run_usd 0.50" in refused.output
    assert "estimate 1.00" in refused.output and fake["trainer"].submit_calls == 0

    monkeypatch.setenv("RATCHET_USER", "alice")
    ok = runner.invoke(
        app,
        [
            "train",
            "--dataset",
            seeded.sft,
            "--strategy",
            "prompt",
            "--backend",
            "fake",
            "--param",
            "system_prompt=Be brief.",
            "--notes",
            "a patch for tone",
            "--json",
        ],
    )
    assert ok.exit_code == 0, ok.output
    out = json.loads(ok.output[ok.output.index("{") :])
    assert out["action"] == "no_job" and out["cost_usd"] == 0.0
    with open_database(get_settings())() as s:
        runs = {r.status: r for r in repo.list_training_runs(s)}
    assert runs["failed"].error.startswith("training run")
    assert (runs["completed"].created_by, runs["completed"].notes) == ("alice", "a patch for tone")

    cancel = runner.invoke(app, ["models", "cancel", out["training_run_id"]])
    assert cancel.exit_code == 0 and "completed" in cancel.output  # finished: left alone
    missing = runner.invoke(app, ["models", "cancel", "nope"])
    assert missing.exit_code == 2 and "no training run 'nope'" in missing.output
    bad = runner.invoke(app, ["train", "--dataset", seeded.sft, "--param", "=x"])
    assert bad.exit_code == 2 and "--param #1" in bad.output
