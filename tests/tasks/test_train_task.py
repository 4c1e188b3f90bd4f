"""The train tasks through ``.fn`` with a fake trainer from the backend registry: each step on
its own, a retried submit that pays once, the events table and the retry condition."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from ratchet.backends import BACKENDS
from ratchet.backends.base import BackendError, JobEvent
from ratchet.config import load_config
from ratchet.db import repo
from ratchet.settings import get_settings
from tasks import runtime
from tasks.train import (
    EventTable,
    collect_training_task,
    make_candidate_task,
    plan_training_task,
    retry_backend,
    submit_training_task,
    wait_training_task,
)
from tests import training_fakes
from tests.training_fakes import FakeTrainer, seed


@pytest.fixture
def env(ratchet_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    monkeypatch.setitem(BACKENDS, "fake", ("tests.training_fakes", None))
    trainer = FakeTrainer()
    monkeypatch.setitem(training_fakes.CURRENT, "trainer", trainer)
    s = get_settings()
    seeded = seed(runtime.sessions(s), runtime.store(s))
    config = load_config(s, {"training": {"poll_interval_s": 0.001, "poll_max_interval_s": 0.001}})
    return {"trainer": trainer, "seeded": seeded, "config": config, "settings": s}


def _request(env: dict[str, Any], **kw: Any) -> dict[str, Any]:
    return {
        "dataset_version_id": env["seeded"].sft,
        "strategy": "sft",
        "backend": "fake",
        "base": "production",
        "params": {"n_epochs": 1},
        "created_by": "ratchet",
        **kw,
    }


def test_each_step_as_a_task_and_a_rerun_that_submits_nothing(env):
    config = env["config"]
    plan = plan_training_task.fn(_request(env), config)
    assert plan["action"] == "submit"
    run_id = plan["training_run_id"]
    assert submit_training_task.fn(run_id, config) == "job-1"
    assert submit_training_task.fn(run_id, config) == "job-1"  # a task retry: no second call
    job = wait_training_task.fn(run_id, config)
    assert job["state"] == "completed" and job["events"] == 3
    out = collect_training_task.fn(run_id, config)
    assert out["model_card_path"] == f"models/{out['model_version_id']}/model_card.md"
    assert collect_training_task.fn(run_id, config)["model_version_id"] == out["model_version_id"]
    again = plan_training_task.fn(_request(env), config)
    assert again["action"] == "reuse" and again["model_version_id"] == out["model_version_id"]
    assert env["trainer"].created == 1 and env["trainer"].submit_calls == 1


def test_make_candidate_task_for_prompt(env):
    plan = plan_training_task.fn(
        _request(env, strategy="prompt", params={"system_prompt": "Answer in one sentence."}),
        env["config"],
    )
    assert plan["action"] == "no_job"
    out = make_candidate_task.fn(plan["training_run_id"], env["config"])
    with runtime.sessions(env["settings"])() as s:
        mv = repo.get_model_version(s, out["model_version_id"])
    assert mv.system_prompt == "Answer in one sentence." and env["trainer"].submit_calls == 0


def test_event_table_keeps_each_event_once_with_losses_as_columns():
    table = EventTable()
    table.add(
        [
            JobEvent("t0", "step 1", 1, {"train_loss": 1.5}),
            JobEvent("t1", "step 2", 2, {"train_loss": 1.2, "valid_loss": 1.4}),
        ]
    )
    table.add([JobEvent("t2", "job succeeded")])
    rows = table.table()
    assert [r["step"] for r in rows] == [1, 2, ""]
    assert rows[1]["valid_loss"] == 1.4 and rows[0]["valid_loss"] == ""
    assert set(rows[0]) == {"step", "at", "message", "train_loss", "valid_loss"}


class _State:
    def __init__(self, exc: BaseException) -> None:
        self.exc = exc

    def result(self) -> None:
        raise self.exc


@pytest.mark.parametrize(
    ("exc", "retry"),
    [
        (BackendError("429 rate limited", retryable=True), True),
        (BackendError("400 refused"), False),
        (ValueError("bad request"), False),
    ],
)
def test_retry_condition_follows_the_backends_word(exc, retry):
    assert retry_backend(None, None, _State(exc)) is retry
