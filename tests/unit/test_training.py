"""The training lifecycle (ratchet.training) with a fake trainer: records, never paying twice,
budgets, failure paths, no-job strategies and the model card. No Prefect."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ratchet.backends.base import BudgetExceeded, JobStatus
from ratchet.config import PipelineConfig
from ratchet.db import repo
from ratchet.db.session import dispose_all, session_factory
from ratchet.training import (
    TrainingCancelled,
    TrainingContext,
    TrainingError,
    TrainingFailed,
    TrainingTimeout,
    TrainRequest,
    cancel_training,
    job_cost,
    plan_training,
    submit_job,
    train,
)
from tests.training_fakes import (
    AGENT,
    EchoAnswerer,
    FakeTrainer,
    Seeded,
    seed,
    store_at,
)


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def sleep(self, s: float) -> None:
        self.sleeps.append(s)
        self.now += s

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def env(tmp_path: Path) -> Iterator[dict[str, Any]]:
    sessions = session_factory(f"sqlite:///{tmp_path / 'state' / 'ratchet.db'}")
    store = store_at(tmp_path / "store")
    yield {"sessions": sessions, "store": store, "seeded": seed(sessions, store)}
    dispose_all()


def _ctx(env: dict[str, Any], trainer: FakeTrainer, **training: Any) -> TrainingContext:
    t = {"poll_interval_s": 1.0, "poll_backoff": 2.0, "poll_max_interval_s": 4.0, **training}
    config = PipelineConfig.model_validate({"training": t})
    clock = FakeClock()
    return TrainingContext(
        sessions=env["sessions"],
        store=env["store"],
        config=config,
        trainers={"fake": trainer},
        sleep=clock.sleep,
        clock=clock,
    )


def _req(seeded: Seeded, **kw: Any) -> TrainRequest:
    return TrainRequest(
        **{
            "dataset_version_id": seeded.sft,
            "strategy": "sft",
            "backend": "fake",
            "created_by": "alice",
            **kw,
        }
    )


def _run(env: dict[str, Any], run_id: str) -> Any:
    with env["sessions"]() as s:
        return repo.get_training_run(s, run_id)


def test_happy_path_writes_every_field_links_the_candidate_and_reports_progress(env):
    trainer = FakeTrainer(
        script=("pending", "in_progress", "in_progress", "in_progress", "completed")
    )
    ctx = _ctx(env, trainer, price_per_1m_tokens_usd={"fake": {"default": 25.0}})
    seen: list[tuple[JobStatus, list[Any]]] = []
    out = train(
        ctx,
        _req(env["seeded"], params={"epochs": 2}, notes="more refunds data"),
        lambda st, ev: seen.append((st, ev)),
    )

    run = _run(env, out.training_run_id)
    assert (run.status, run.agent_id, run.training_type, run.backend) == (
        "completed",
        AGENT,
        "sft",
        "fake",
    )
    assert run.dataset_version_id == env["seeded"].sft
    assert run.base_model_version == env["seeded"].base_id
    assert run.parameters == {"epochs": 2} and run.created_by == "alice"
    assert run.notes == "more refunds data" and run.error is None
    assert run.created_at and run.started_at and run.completed_at and run.external_job_id
    assert run.metrics["train_loss"] == pytest.approx(2.0 / 6)  # the collect poll is the 6th
    assert run.artifacts["model_version"] == out.model_version_id
    assert run.artifacts["model_card"] == f"models/{out.model_version_id}/model_card.md"
    # 2M trained tokens x the configured price (25 USD per 1M) replaces the estimate
    assert run.cost_usd == pytest.approx(50.0) and "trained tokens" in run.artifacts["cost_basis"]
    assert run.artifacts["cost_estimate_usd"] == 1.0
    with env["sessions"]() as s:
        mv = repo.get_model_version(s, out.model_version_id)
        assert (mv.status, mv.parent_id, mv.training_run_id) == (
            "candidate",
            env["seeded"].base_id,
            run.id,
        )
        assert mv.model_ref == "fake-model-job-1"
    # events arrive once each, with their step metrics; the waits back off 1, 2, 4, 4
    steps = [e.step for _, new in seen for e in new]
    assert steps == [0, 1, 2, 3, 4]
    assert ctx.sleep.__self__.sleeps == [1.0, 2.0, 4.0, 4.0]  # type: ignore[attr-defined]
    card = env["store"].read_bytes(run.artifacts["model_card"]).decode()
    assert env["seeded"].sft in card and "feedback_file (1)" in card and "epochs" in card
    assert "Base (parent) model version" in card and out.model_card == card
    assert f"`{run.id}` (sft on fake, completed)" in card


def test_rerun_reuses_the_finished_model_and_other_params_train_again(env):
    trainer = FakeTrainer()
    ctx = _ctx(env, trainer)
    first = train(ctx, _req(env["seeded"], params={"epochs": 2}))
    again = train(ctx, _req(env["seeded"], params={"epochs": 2}))
    assert again.reused and again.model_version_id == first.model_version_id
    assert again.training_run_id == first.training_run_id
    assert trainer.created == 1 and trainer.submit_calls == 1
    other = train(ctx, _req(env["seeded"], params={"epochs": 3}))
    assert other.model_version_id != first.model_version_id and trainer.created == 2


def test_a_killed_flow_resumed_polls_its_job_instead_of_creating_a_second(env):
    trainer = FakeTrainer()
    ctx = _ctx(env, trainer)
    plan = plan_training(ctx, _req(env["seeded"]))
    submit_job(ctx, plan.training_run_id)  # ... and the flow is killed here
    assert _run(env, plan.training_run_id).status == "in_progress"

    resumed = plan_training(ctx, _req(env["seeded"]))
    assert (resumed.action, resumed.training_run_id) == ("resume", plan.training_run_id)
    assert resumed.external_job_id == "job-1"
    out = train(ctx, _req(env["seeded"]))
    assert trainer.created == 1 and trainer.submit_calls == 1  # submit_job never called it again
    assert out.training_run_id == plan.training_run_id
    assert _run(env, plan.training_run_id).status == "completed"


def test_a_lost_submit_response_is_retried_and_finds_the_tagged_job(env):
    trainer = FakeTrainer(lose_submit_response=True)
    ctx = _ctx(env, trainer)
    plan = plan_training(ctx, _req(env["seeded"]))
    with pytest.raises(Exception, match="timed out"):
        submit_job(ctx, plan.training_run_id)
    assert _run(env, plan.training_run_id).status == "pending"  # retryable: not failed
    assert submit_job(ctx, plan.training_run_id) == "job-1"
    assert trainer.created == 1 and trainer.submit_calls == 2


def test_budget_per_run_refuses_before_submitting_and_the_record_says_why(env):
    trainer = FakeTrainer(estimate=10.0)
    ctx = _ctx(env, trainer, budget_per_run_usd=5.0)
    with pytest.raises(BudgetExceeded) as err:
        train(ctx, _req(env["seeded"]))
    msg = str(err.value)
    assert "training.budget_per_run_usd 5.00" in msg and "estimate 10.00" in msg
    assert "spent so far" in msg and trainer.submit_calls == 0
    with env["sessions"]() as s:
        (run,) = repo.list_training_runs(s, agent_id=AGENT)
    assert run.status == "failed" and "budget_per_run_usd" in run.error and run.completed_at


def test_budget_per_month_counts_this_months_spend(env):
    trainer = FakeTrainer(estimate=6.0, trained_tokens=None)
    ctx = _ctx(env, trainer, budget_per_month_usd=10.0)
    first = plan_training(ctx, _req(env["seeded"], params={"epochs": 1}))
    submit_job(ctx, first.training_run_id)  # running: its estimate counts as spend
    with pytest.raises(BudgetExceeded) as err:
        train(ctx, _req(env["seeded"], params={"epochs": 2}))
    msg = str(err.value)
    assert "spent this month 6.00 USD + estimate 6.00 USD" in msg
    assert "training.budget_per_month_usd 10.00" in msg and trainer.created == 1


@pytest.mark.parametrize(
    ("state", "error", "exc"),
    [
        ("failed", "The job failed: invalid training file", TrainingFailed),
        ("cancelled", None, TrainingCancelled),
    ],
)
def test_a_failed_or_cancelled_job_ends_the_record_with_the_providers_message(
    env, state, error, exc
):
    trainer = FakeTrainer(script=("in_progress", state), error=error)
    ctx = _ctx(env, trainer)
    with pytest.raises(exc) as err:
        train(ctx, _req(env["seeded"]))
    with env["sessions"]() as s:
        (run,) = repo.list_training_runs(s, agent_id=AGENT)
        assert repo.model_version_of_run(s, run.id) is None
    assert run.status == state
    if error:
        assert error in run.error and error in str(err.value)


def test_a_job_that_never_finishes_times_out_is_cancelled_and_fails(env):
    trainer = FakeTrainer(script=("in_progress",))
    ctx = _ctx(env, trainer, timeout_s=10.0)
    with pytest.raises(TrainingTimeout, match=r"training\.timeout_s"):
        train(ctx, _req(env["seeded"]))
    with env["sessions"]() as s:
        (run,) = repo.list_training_runs(s, agent_id=AGENT)
    assert run.status == "failed" and "timed out" in run.error
    assert trainer.cancelled == ["job-1"]


def test_cancel_stops_the_job_and_leaves_a_finished_run_alone(env):
    trainer = FakeTrainer(script=("in_progress",))
    ctx = _ctx(env, trainer)
    plan = plan_training(ctx, _req(env["seeded"]))
    submit_job(ctx, plan.training_run_id)
    assert cancel_training(ctx, plan.training_run_id) == "cancelled"
    assert trainer.cancelled == ["job-1"] and _run(env, plan.training_run_id).status == "cancelled"
    again = plan_training(ctx, _req(env["seeded"]))  # a cancelled run is neither reused nor resumed
    assert again.action == "submit" and again.training_run_id != plan.training_run_id


def test_cancel_of_a_completed_run_changes_nothing(env):
    trainer = FakeTrainer()
    ctx = _ctx(env, trainer)
    out = train(ctx, _req(env["seeded"]))
    assert cancel_training(ctx, out.training_run_id) == "completed"
    assert trainer.cancelled == []


@pytest.mark.parametrize(
    ("status", "expected", "basis"),
    [
        (JobStatus("j", "completed", cost_usd=1.25), 1.25, "reported"),
        (JobStatus("j", "completed", trained_tokens=3_000_000), 15.0, "trained tokens"),
        (
            JobStatus("j", "completed", metrics={"gpu_seconds": 100.0, "cpu_seconds": 10.0}),
            0.21,
            "GPU s",
        ),
        (JobStatus("j", "completed"), 0.0, "no spend"),
    ],
)
def test_job_cost_from_tokens_prices_or_seconds(status, expected, basis):
    config = PipelineConfig.model_validate(
        {
            "training": {
                "price_per_1m_tokens_usd": {"openai": {"gpt-x": 5.0, "default": 25.0}},
                "gpu_second_usd": 0.002,
                "cpu_second_usd": 0.001,
            }
        }
    )
    cost, how = job_cost(config, "openai", "gpt-x", status)
    assert cost == pytest.approx(expected) and basis in how


def test_prompt_candidate_takes_rules_from_train_regressions_only(env):
    trainer = FakeTrainer()
    ctx = _ctx(env, trainer)
    out = train(
        ctx,
        _req(
            env["seeded"], dataset_version_id=env["seeded"].evals, strategy="prompt", backend="logs"
        ),
    )
    with env["sessions"]() as s:
        mv = repo.get_model_version(s, out.model_version_id)
        run = repo.get_training_run(s, out.training_run_id)
    assert mv.backend == "logs" and mv.parent_id == env["seeded"].base_id
    assert mv.system_prompt.startswith("You are helpful.")
    assert "can I pay by invoice" in mv.system_prompt and "business accounts" in mv.system_prompt
    assert "HOLDOUT-ANSWER" not in mv.system_prompt and "Hi!" not in mv.system_prompt
    assert run.status == "completed" and run.metrics == {"rules": 1.0} and run.cost_usd == 0.0
    assert run.external_job_id is None and trainer.submit_calls == 0


def test_prompt_candidate_with_a_given_system_prompt(env):
    ctx = _ctx(env, FakeTrainer())
    out = train(
        ctx,
        _req(
            env["seeded"], strategy="prompt", backend="logs", params={"system_prompt": "Be brief."}
        ),
    )
    with env["sessions"]() as s:
        assert repo.get_model_version(s, out.model_version_id).system_prompt == "Be brief."


def test_few_shot_candidate_and_its_answerer_retrieve_the_nearest_examples(env):
    from ratchet.backends.fewshot import ExampleIndex, FewShotAnswerer, load_examples

    ctx = _ctx(env, FakeTrainer())
    out = train(ctx, _req(env["seeded"], strategy="few_shot", backend="logs", params={"k": "1"}))
    with env["sessions"]() as s:
        mv = repo.get_model_version(s, out.model_version_id)
        path = repo.get_dataset_version(s, env["seeded"].sft).path
    assert mv.parameters == {"few_shot_dataset": env["seeded"].sft, "k": 1}
    assert (mv.backend, mv.model_ref) == ("logs", "logs")
    examples = load_examples(env["store"], path)
    assert len(examples) == 3  # the validation example is not a shot
    base = EchoAnswerer()
    answerer = FewShotAnswerer(base, base.spec, ExampleIndex(examples), k=1)
    answerer.answer(
        [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "I need a refund please"},
        ]
    )
    sent = base.seen[-1]
    assert [m["role"] for m in sent] == ["system", "user", "assistant", "user"]
    assert "Refunds within 30 days" in sent[2]["content"]


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"strategy": "dpo"}, "needs a dataset of kind preference_pairs"),
        ({"dataset_version_id": "nope"}, "no dataset version 'nope'"),
        ({"base": "missing"}, "no model version 'missing'"),
        ({"strategy": "rlhf"}, "strategy must be one of"),
        ({"agent_id": "other-bot"}, "belongs to another agent than 'other-bot'"),
    ],
)
def test_bad_requests_are_refused_before_any_record(env, kw, match):
    ctx = _ctx(env, FakeTrainer())
    with pytest.raises(TrainingError, match=match):
        plan_training(ctx, _req(env["seeded"], **kw))
    with env["sessions"]() as s:
        assert repo.list_training_runs(s) == []


def test_the_real_local_backend_trains_a_candidate_that_answers_with_its_examples(env):
    from ratchet.backends import BackendContext, answerer_for
    from ratchet.training import model_spec_of

    config = PipelineConfig()
    ctx = TrainingContext(sessions=env["sessions"], store=env["store"], config=config)
    req = _req(env["seeded"], backend="local")
    out = train(ctx, req)  # trainer from the registry: ratchet.backends.local
    with env["sessions"]() as s:
        run = repo.get_training_run(s, out.training_run_id)
        mv = repo.get_model_version(s, out.model_version_id)
    assert run.status == "completed" and run.cost_usd == 0.0 and run.metrics["examples"] == 3.0
    assert (mv.backend, mv.parent_id) == ("local", env["seeded"].base_id)
    assert env["store"].exists(f"models/{mv.id}/model_card.md")
    answerer = answerer_for(model_spec_of(mv), BackendContext(env["store"], None, config))
    reply = answerer.answer([{"role": "user", "content": "how do I reset my password"}])
    assert reply.text == "Use Settings > Security > Reset."
    again = train(ctx, req)
    assert again.reused and again.model_version_id == out.model_version_id


def test_a_few_shot_candidate_answers_through_the_registry_with_its_base_wrapped(
    env, tmp_path, monkeypatch
):
    from ratchet.backends import BACKENDS, BackendContext, answerer_for
    from ratchet.backends.fewshot import FewShotAnswerer
    from ratchet.settings import get_settings
    from ratchet.training import model_spec_of

    monkeypatch.setitem(BACKENDS, "fake", ("tests.training_fakes", None))
    with env["sessions"]() as s, s.begin():
        base = repo.create_model_version(s, agent_id=AGENT, backend="fake", model_ref="echo")
        base_id = base.id
    ctx = _ctx(env, FakeTrainer())
    out = train(ctx, _req(env["seeded"], strategy="few_shot", base=base_id, params={"k": 2}))
    with env["sessions"]() as s:
        spec = model_spec_of(repo.get_model_version(s, out.model_version_id))
    settings = get_settings(database_url=f"sqlite:///{tmp_path / 'state' / 'ratchet.db'}")
    answerer = answerer_for(spec, BackendContext(env["store"], settings, ctx.config))
    assert isinstance(answerer, FewShotAnswerer) and answerer.spec == spec
    reply = answerer.answer([{"role": "user", "content": "what are the opening hours today"}])
    assert reply.text == "what are the opening hours today"  # the echo base got the shots first
    sent = answerer.base.seen[-1]  # type: ignore[attr-defined]
    # k=2, but only one example shares a word with the question: unrelated ones are not shots
    assert sent[1]["content"] == "We are open 9 to 5, Monday to Friday." and len(sent) == 3
