"""The ``openai`` backend over real HTTP, through the real SDK, against a loopback server
(tests/integration/openai_server.py): the lifecycle end to end, every failure status the issue
names, never paying twice, and the key never leaking. No network, no Prefect."""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
from pydantic import SecretStr
from sqlalchemy import inspect, select, text

from ratchet.backends import BackendContext, answerer_for
from ratchet.backends.base import BackendError, JobRefused, JobSpec, ModelSpec, TrainingData
from ratchet.backends.openai import OpenAITrainer, make_trainer
from ratchet.config import PipelineConfig
from ratchet.db import repo
from ratchet.db.models import TrainingRun
from ratchet.db.session import dispose_all, session_factory
from ratchet.schemas import PREFERENCE_PAIRS
from ratchet.settings import Settings
from ratchet.training import (
    TrainingCancelled,
    TrainingContext,
    TrainingFailed,
    TrainingTimeout,
    TrainRequest,
    cancel_training,
    plan_training,
    submit_job,
    train,
)
from tests.integration.openai_server import WIND_DOWN, FakeOpenAI, serve
from tests.training_fakes import AGENT, _msgs, seed, store_at

KEY = "sk-test-SECRETKEY0123456789abcdef"
BASE = "gpt-4.1-mini-2025-04-14"


@pytest.fixture
def server(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[str, FakeOpenAI]]:
    for name in (
        "OPENAI_API_KEY",
        "OPENAI_BASE_URL",
        "RATCHET_OPENAI_API_KEY",
        "RATCHET_OPENAI_BASE_URL",
    ):
        monkeypatch.delenv(name, raising=False)
    with serve(KEY) as s:
        yield s


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """A migrated, seeded database and store, made once and copied per test (fast setup)."""
    root = tmp_path_factory.mktemp("openai-template")
    sessions = session_factory(f"sqlite:///{root / 'ratchet.db'}")
    seeded = seed(sessions, store_at(root / "store"))
    with sessions() as s, s.begin():
        base = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="openai",
            model_ref=BASE,
            system_prompt="You are helpful.",
            parameters={"temperature": 0.2},
        )
        base_id = base.id
    dispose_all()
    return {"root": root, "seeded": seeded, "base": base_id}


@pytest.fixture
def env(
    tmp_path: Path, template: dict[str, Any], server: tuple[str, FakeOpenAI]
) -> Iterator[dict[str, Any]]:
    shutil.copy(template["root"] / "ratchet.db", tmp_path / "ratchet.db")
    shutil.copytree(template["root"] / "store", tmp_path / "store")
    sessions = session_factory(f"sqlite:///{tmp_path / 'ratchet.db'}")
    yield {
        "sessions": sessions,
        "store": store_at(tmp_path / "store"),
        "seeded": template["seeded"],
        "base": template["base"],
        "url": server[0],
        "state": server[1],
        "db": tmp_path / "ratchet.db",
    }
    dispose_all()


def _config(**training: Any) -> PipelineConfig:
    t = {"poll_interval_s": 0.02, "poll_backoff": 1.0, "poll_max_interval_s": 0.05, **training}
    return PipelineConfig.model_validate(
        {
            "export": {"min_examples": 1, "token_estimator": "chars"},
            "training": t,
            "backends": {
                "openai_timeout_s": 5.0,
                "openai_max_retries": 2,
                "openai_create_timeout_s": 0.5,
            },
        }
    )


def _settings(url: str, key: str = KEY) -> Settings:
    return Settings(openai_api_key=SecretStr(key), openai_base_url=url)


def _ctx(env: dict[str, Any], key: str = KEY, **training: Any) -> TrainingContext:
    return TrainingContext(
        sessions=env["sessions"],
        store=env["store"],
        config=_config(**training),
        settings=_settings(env["url"], key),
    )


def _req(env: dict[str, Any], **params: Any) -> TrainRequest:
    return TrainRequest(
        dataset_version_id=env["seeded"].sft,
        strategy="sft",
        backend="openai",
        base=env["base"],
        params={"n_epochs": 2, "seed": 7, **params},
    )


def _trainer(env: dict[str, Any], **backends: Any) -> OpenAITrainer:
    cfg = _config()
    cfg = cfg.model_copy(update={"backends": cfg.backends.model_copy(update=backends)})
    return make_trainer(
        BackendContext(store=env["store"], settings=_settings(env["url"]), config=cfg)
    )


def _spec(
    env: dict[str, Any],
    run_id: str = "a" * 32,
    strategy: str = "sft",
    path: str | None = None,
    kind: str = "sft_examples",
    **params: Any,
) -> JobSpec:
    with env["sessions"]() as s:
        dv = repo.get_dataset_version(s, env["seeded"].sft)
    return JobSpec(
        training_run_id=run_id,
        agent_id=AGENT,
        strategy=strategy,  # type: ignore[arg-type]
        base=ModelSpec("openai", BASE),
        data=TrainingData(AGENT, dv.id, kind, path or dv.path, None, dv.rows),
        params=params,
    )


def _db_text(db: Path, sessions: Any) -> str:
    """Every value of every row of every table, as one string (to look for the key)."""
    out = []
    with sessions() as s:
        for table in inspect(s.get_bind()).get_table_names():
            query = text(f'SELECT * FROM "{table}"')  # noqa: S608 (names from the schema)
            out += [repr(tuple(r)) for r in s.execute(query)]
    return "\n".join(out)


def _only_run(session: Any) -> TrainingRun:
    runs = list(session.scalars(select(TrainingRun)))
    assert len(runs) == 1
    return runs[0]


# --- the happy path -----------------------------------------------------------------------------
def test_happy_path_end_to_end_makes_a_candidate_with_cost_and_answers(env, caplog):
    caplog.set_level(logging.DEBUG)
    ctx, state = _ctx(env), env["state"]
    seen: list[Any] = []
    done = train(ctx, _req(env), lambda status, new: seen.append((status, new)))

    assert state.creates == 1
    job = next(iter(state.jobs.values()))
    req = job["_request"]
    assert req["method"] == {
        "type": "supervised",
        "supervised": {"hyperparameters": {"n_epochs": 2}},
    }
    assert req["seed"] == 7 and req["metadata"]["ratchet_training_run"] == done.training_run_id
    assert req["suffix"] == f"r-{done.training_run_id[:16]}" and req["model"] == BASE
    train_file = state.files[req["training_file"]]
    assert train_file["purpose"] == "fine-tune" and train_file["content"].count(b"\n") == 3
    assert state.files[req["validation_file"]]["content"].count(b"\n") == 1  # the validation split

    with env["sessions"]() as s:
        run = repo.get_training_run(s, done.training_run_id)
        mv = repo.get_model_version(s, done.model_version_id)
        assert run.status == "completed" and run.external_job_id == job["id"]
        assert mv.status == "candidate" and mv.backend == "openai"
        assert mv.model_ref == job["fine_tuned_model"] and mv.model_ref.startswith(f"ft:{BASE}:")
        assert run.metrics["valid_loss"] == 0.4 and run.metrics["train_loss"] == 0.25
    # 3 lines x 1000 trained tokens at 5 USD per 1M (training.price_per_1m_tokens_usd.openai)
    assert done.cost_usd == pytest.approx(3000 / 1e6 * 5.0)
    assert "3000 trained tokens" in done.cost_basis
    events = [e for _, new in seen for e in new]
    assert any(e.step == 1 and e.metrics.get("train_loss") == 2.0 for e in events)
    assert [e.message for e in events].count("Created fine-tuning job") == 1
    assert seen[-1][0].progress == 1.0

    answerer = answerer_for(
        ModelSpec(
            "openai", mv.model_ref, mv.system_prompt, dict(mv.parameters) | {"max_tokens": 50}
        ),
        BackendContext(env["store"], _settings(env["url"]), _config()),
    )
    answer = answerer.answer(_msgs("how do I reset my password"))
    assert answer.text == "echo: how do I reset my password"
    assert answer.prompt_tokens == 9 and answer.completion_tokens == 7  # system + user words
    # a fine-tune is priced as its base (0.8 in, 3.2 out per 1M)
    assert answer.cost_usd == pytest.approx((9 * 0.8 + 7 * 3.2) / 1e6)
    assert answer.latency_ms > 0

    assert KEY not in caplog.text and "SECRETKEY" not in caplog.text
    assert KEY not in _db_text(env["db"], env["sessions"])
    # a second request with the same dataset, parameters and base reuses the model: no job
    again = train(ctx, _req(env))
    assert again.reused and again.model_version_id == done.model_version_id
    assert state.creates == 1


def test_answerer_passes_parameters_returns_tool_calls_and_keeps_the_key_home(env, server):
    url, state = server
    context = BackendContext(env["store"], _settings(url), _config())
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    answerer = answerer_for(
        ModelSpec(
            "openai",
            "my-model",
            "Be brief.",
            {"temperature": 0.0, "max_tokens": 20, "tools": tools},
        ),
        context,
    )
    answer = answerer.answer(_msgs("what is the weather in Paris"))
    assert answer.text == ""
    assert answer.tool_calls == (
        {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
        },
    )
    assert answer.cost_usd == 0.0  # no price for my-model: the 'default' (self-hosted) price
    # a model version naming its own server (vLLM, Ollama...) never gets the settings' key
    own = answerer_for(
        ModelSpec("openai", "llama", None, {"base_url": url}),
        BackendContext(env["store"], Settings(openai_api_key=SecretStr(KEY)), _config()),
    )
    assert own.answer(_msgs("hi")).text == "echo: hi"
    assert state.requests[-1][3] == "not-needed" and state.requests[-2][3] == KEY


# --- never pay twice ----------------------------------------------------------------------------
@pytest.mark.parametrize("ignore_filter", [False, True])
def test_a_second_submit_with_the_same_run_finds_the_first_job(env, ignore_filter):
    state = env["state"]
    state.ignore_metadata_filter = ignore_filter
    other = _trainer(env).submit(_spec(env, run_id="b" * 32))  # another run's job, listed first
    trainer = _trainer(env)
    first = trainer.submit(_spec(env))
    again = _trainer(env).submit(_spec(env))  # a new process: nothing remembered in memory
    assert again == first != other
    assert state.creates == 2 and state.count("POST", "/fine_tuning/jobs") == 2


def test_a_create_whose_response_is_lost_is_found_not_created_again(env):
    state = env["state"]
    state.create_delay_s = 1.5  # past backends.openai_create_timeout_s (0.5 s)
    external = _trainer(env).submit(_spec(env))
    assert external in state.jobs
    assert state.creates == 1 and state.count("POST", "/fine_tuning/jobs") == 1


def test_a_lost_create_not_yet_listed_is_retryable_and_the_next_attempt_finds_it(env):
    state = env["state"]
    state.create_delay_s, state.list_lag_s = 1.0, 60.0
    ctx = _ctx(env)
    plan = plan_training(ctx, _req(env))
    with pytest.raises(BackendError) as err:
        submit_job(ctx, plan.training_run_id)
    assert err.value.retryable and "timed out" in str(err.value)
    with env["sessions"]() as s:
        assert repo.get_training_run(s, plan.training_run_id).status == "pending"
    state.list_lag_s = 0.0
    for job in state.jobs.values():
        job["_visible_at"] = 0.0  # the listing catches up
    external = submit_job(ctx, plan.training_run_id)  # the task's retry, or a resumed flow
    assert external in state.jobs and state.creates == 1


def test_an_export_jsonl_trains_as_it_is(env):
    lines = b"".join(
        b'{"messages":[{"role":"user","content":"q%d"},{"role":"assistant",'
        b'"content":"a%d"}]}\n' % (i, i)
        for i in range(2)
    )
    env["store"].write_bytes("exports/x/openai_chat.train.jsonl", lines)
    state = env["state"]
    _trainer(env).submit(_spec(env, path="exports/x/openai_chat.train.jsonl"))
    req = next(iter(state.jobs.values()))["_request"]
    assert state.files[req["training_file"]]["content"] == lines
    assert "validation_file" not in req


def test_a_5xx_on_create_is_not_retried_by_the_sdk_and_the_next_attempt_creates_once(env):
    state = env["state"]
    state.inject("POST", "/fine_tuning/jobs", 500, "The server had an error")
    ctx = _ctx(env)
    plan = plan_training(ctx, _req(env))
    with pytest.raises(BackendError) as err:
        submit_job(ctx, plan.training_run_id)
    assert err.value.retryable and "HTTP 500" in str(err.value)
    assert state.count("POST", "/fine_tuning/jobs") == 1 and state.creates == 0
    with env["sessions"]() as s:
        assert repo.get_training_run(s, plan.training_run_id).status == "pending"
    external = submit_job(ctx, plan.training_run_id)  # the task's retry
    assert state.creates == 1 and external in state.jobs


# --- failure statuses -------------------------------------------------------------------------
@pytest.mark.parametrize("status", [400, 403])
def test_the_wind_down_refusal_is_surfaced_as_it_is_with_alternatives(env, status):
    env["state"].inject("POST", "/fine_tuning/jobs", status, WIND_DOWN)
    ctx = _ctx(env)
    plan = plan_training(ctx, _req(env))
    with pytest.raises(JobRefused) as err:
        submit_job(ctx, plan.training_run_id)
    assert WIND_DOWN in str(err.value) and err.value.alternatives == ("trl", "local")
    assert "Other backends that can train this: trl, local" in str(err.value)
    with env["sessions"]() as s:
        run = repo.get_training_run(s, plan.training_run_id)
    assert run.status == "failed" and WIND_DOWN in run.error
    assert env["state"].creates == 0


def test_a_wrong_key_is_a_clear_error_that_holds_no_part_of_the_key(env, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-OTHERSECRET9876543210"
    trainer = make_trainer(BackendContext(env["store"], _settings(env["url"], wrong), _config()))
    with pytest.raises(BackendError) as err:
        trainer.submit(_spec(env))
    message = str(err.value)
    assert "HTTP 401" in message and "Incorrect API key provided" in message
    assert not err.value.retryable
    assert "OTHERSECRET" not in message and "sk-wr" not in message and "3210" not in message
    assert err.value.__cause__ is None and err.value.__suppress_context__
    assert "OTHERSECRET" not in caplog.text


def test_a_rate_limit_is_waited_out_as_retry_after_says_then_succeeds(env):
    state = env["state"]
    job = _trainer(env).submit(_spec(env))
    state.inject(
        "GET", f"/fine_tuning/jobs/{job}", 429, "Rate limit reached", headers={"Retry-After": "1"}
    )
    status = _trainer(env).poll(job)
    assert status.state in ("pending", "in_progress")
    times = [t for m, p, t, _ in state.requests if m == "GET" and p == f"/fine_tuning/jobs/{job}"]
    assert len(times) == 2
    # the SDK's own first backoff is at most 0.5 s: a longer gap is the server's Retry-After
    assert times[1] - times[0] >= 0.95


def test_a_5xx_read_is_retried_then_succeeds_and_past_the_budget_is_retryable(env):
    state = env["state"]
    fast = {"retry-after-ms": "20"}  # honoured like Retry-After, so the test does not wait
    state.inject("POST", "/files", 500, "upstream error", times=2, headers=fast)
    _trainer(env).submit(_spec(env))
    assert state.count("POST", "/files") == 4  # train: 2 errors + success; validation: 1
    state.inject("GET", "/fine_tuning/jobs", 503, "overloaded", times=3, headers=fast)
    with pytest.raises(BackendError) as err:
        _trainer(env).find("c" * 32)
    assert err.value.retryable and "HTTP 503" in str(err.value) and "overloaded" in str(err.value)


def test_a_failed_job_ends_the_record_failed_with_openais_message_as_it_is(env):
    state = env["state"]
    state.script = ["validating_files", "running", "failed"]
    ctx = _ctx(env)
    with pytest.raises(TrainingFailed) as err:
        train(ctx, _req(env))
    assert state.fail_message in str(err.value)
    with env["sessions"]() as s:
        run = _only_run(s)
    assert run.status == "failed" and state.fail_message in run.error


def test_a_job_cancelled_on_the_provider_ends_the_record_cancelled(env):
    env["state"].script = ["queued", "running", "cancelled"]
    ctx = _ctx(env)
    with pytest.raises(TrainingCancelled):
        train(ctx, _req(env))
    with env["sessions"]() as s:
        assert _only_run(s).status == "cancelled"


def test_cancelling_a_run_cancels_its_running_job(env):
    state = env["state"]
    state.script = ["running"]
    ctx = _ctx(env)
    plan = plan_training(ctx, _req(env))
    external = submit_job(ctx, plan.training_run_id)
    assert cancel_training(ctx, plan.training_run_id) == "cancelled"
    assert state.jobs[external]["status"] == "cancelled"
    assert _trainer(env).cancel(external).state == "cancelled"  # already over: left as it is


def test_a_job_that_never_finishes_times_out_and_is_cancelled(env):
    state = env["state"]
    state.script = ["queued", "running"]
    ctx = _ctx(env, timeout_s=0.3)
    with pytest.raises(TrainingTimeout):
        train(ctx, _req(env))
    job = next(iter(state.jobs.values()))
    assert job["status"] == "cancelled"
    with env["sessions"]() as s:
        run = _only_run(s)
    assert run.status == "failed" and "training.timeout_s" in run.error


# --- methods, refusals before any request, cost estimate ----------------------------------------
def test_metrics_and_progress_persist_across_polls_without_new_events(env):
    state = env["state"]
    state.script = ["validating_files", "running", "running", "queued"]
    trainer = _trainer(env)
    job = trainer.submit(_spec(env))
    polls = [trainer.poll(job) for _ in range(4)]
    assert [p.state for p in polls] == ["in_progress", "in_progress", "pending", "pending"]
    assert [e.step for e in polls[1].events] == [2] and polls[3].events == ()
    assert polls[3].metrics["train_loss"] == 1.0 and polls[3].progress == 0.5


def test_kto_is_refused_naming_trl_before_any_request(env):
    state = env["state"]
    with pytest.raises(JobRefused) as err:
        _trainer(env).submit(_spec(env, strategy="kto"))
    assert err.value.alternatives == ("trl",) and "kto" in str(err.value)
    assert state.requests == []


def test_dpo_uploads_preference_lines_and_creates_a_dpo_job(env):
    pairs = pa.Table.from_pylist(
        [
            {
                "pair_id": f"p{i}",
                "agent_id": AGENT,
                "case_id": f"c{i}",
                "split": "train",
                "input": _msgs(f"question {i}"),
                "chosen": f"good {i}",
                "rejected": f"bad {i}",
                "topic": None,
                "pii_residual": 0,
            }
            for i in range(3)
        ],
        schema=PREFERENCE_PAIRS,
    )
    env["store"].write_table_at(
        "datasets/x/preference_pairs/v/data.parquet", pairs, PREFERENCE_PAIRS
    )
    state = env["state"]
    _trainer(env).submit(
        _spec(
            env,
            strategy="dpo",
            kind="preference_pairs",
            path="datasets/x/preference_pairs/v/data.parquet",
            beta=0.1,
        )
    )
    req = next(iter(state.jobs.values()))["_request"]
    assert req["method"] == {"type": "dpo", "dpo": {"hyperparameters": {"beta": 0.1}}}
    assert "validation_file" not in req  # no validation pairs: no file
    line = state.files[req["training_file"]]["content"].splitlines()[0]
    assert b'"preferred_output":[{"role":"assistant","content":"good 0"}]' in line


def test_an_invalid_dataset_is_refused_before_upload_naming_the_rule(env):
    trainer = make_trainer(
        BackendContext(env["store"], _settings(env["url"]), PipelineConfig())
    )  # export.min_examples 10
    with pytest.raises(JobRefused) as err:
        trainer.submit(_spec(env))
    assert "too_few_examples" in str(err.value) and "reset" not in str(err.value)
    assert env["state"].count("POST", "/files") == 0


def test_estimate_is_tokens_times_epochs_times_price(env):
    trainer = _trainer(env)
    two = trainer.estimate_cost(_spec(env, n_epochs=2))
    auto = trainer.estimate_cost(_spec(env))  # backends.openai_estimate_epochs = 3
    assert two > 0 and auto == pytest.approx(two * 3 / 2)
    dearer = _trainer(env).estimate_cost(
        JobSpec(**{**_spec(env, n_epochs=2).__dict__, "base": ModelSpec("openai", "unknown")})
    )
    assert dearer == pytest.approx(two * 25.0 / 5.0)  # the 'default' price


def test_no_key_is_a_clear_error_before_any_request(env):
    trainer = make_trainer(
        BackendContext(env["store"], Settings(openai_base_url=env["url"]), _config())
    )
    with pytest.raises(BackendError, match="RATCHET_OPENAI_API_KEY"):
        trainer.find("a" * 32)
    assert env["state"].requests == []
