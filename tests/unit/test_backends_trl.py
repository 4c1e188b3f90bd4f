"""The trl backend: SFT, DPO and KTO on a tiny GPT-2 built from a config, offline, on the CPU.

The base model is built once per module (:mod:`ratchet.backends.tiny_model`: a BPE tokenizer
trained on the bundled sample, a chat template set by hand, a 2-layer GPT-2) and saved to a tmp
folder: no downloads. Each strategy must lower its training loss in a few steps (first vs last
logged loss). Under CI a missing ``train`` extra fails these tests instead of skipping them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.extras import require_extra

require_extra("train", "torch", "transformers", "trl", "peft", "datasets", "tokenizers")

from ratchet import schemas  # noqa: E402
from ratchet.backends import BackendContext, answerer_for, trainer_for  # noqa: E402
from ratchet.backends.base import (  # noqa: E402
    BackendError,
    JobRefused,
    JobSpec,
    JobStatus,
    ModelSpec,
    Trainer,
    TrainingData,
)
from ratchet.backends.trl import TrlTrainer, _alive  # noqa: E402
from ratchet.config import PipelineConfig  # noqa: E402
from ratchet.store import Store  # noqa: E402

AGENT = "shop-assistant"
QA = [
    ("Where is my parcel?", "Your parcel ships today."),
    ("Can I return shoes?", "Yes, within 30 days."),
    ("Do you ship to Ireland?", "Yes, in 3 to 5 days."),
    ("Is the jacket waterproof?", "Yes, it is waterproof."),
]
FAST = {
    "max_steps": 8,
    "learning_rate": 1e-2,
    "batch_size": 4,
    "lora_r": 8,
    "lora_alpha": 16,
    "lora_dropout": 0.0,
    "max_length": 64,
    "gradient_checkpointing": False,
    "cpu_threads": 1,
}


@pytest.fixture(scope="module", autouse=True)
def offline() -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE")}
    os.environ.update({"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1"})
    yield
    for key, value in saved.items():
        if value is None:
            os.environ.pop(key, None)
        else:
            os.environ[key] = value


@pytest.fixture(scope="module")
def base_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from ratchet.backends.tiny_model import build_tiny_model

    return build_tiny_model(tmp_path_factory.mktemp("tiny") / "base")


def _context(store: Store, work: Path, **backends: Any) -> BackendContext:
    config = PipelineConfig.model_validate(
        {"backends": {"trl_work_dir": str(work), "trl_cpu_threads": 1, **backends}}
    )
    return BackendContext(store=store, settings=None, config=config)


def _messages(q: str, a: str | None = None) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": q},
    ]
    return out + ([{"role": "assistant", "content": a}] if a is not None else [])


def _table(kind: str) -> pa.Table:
    rows: list[dict[str, Any]] = []
    for n, (q, a) in enumerate(QA * 2):
        common = {"agent_id": AGENT, "case_id": f"c{n}", "split": "train", "pii_residual": 0}
        if kind == "sft_examples":
            rows.append(
                common
                | {
                    "example_id": f"e{n}",
                    "origin": "golden",
                    "topic": None,
                    "messages": _messages(q, a),
                }
            )
        elif kind == "preference_pairs":
            rows.append(
                common
                | {
                    "pair_id": f"p{n}",
                    "input": _messages(q),
                    "chosen": a,
                    "rejected": "No idea, sorry.",
                    "topic": None,
                }
            )
        else:
            rows.append(
                common
                | {
                    "example_id": f"b{n}",
                    "prompt": _messages(q),
                    "completion": a if n % 2 == 0 else "No idea, sorry.",
                    "label": n % 2 == 0,
                }
            )
    rows[-1]["split"] = "validation"
    return pa.Table.from_pylist(rows, schema=schemas.TABLES[kind])


def _spec(store: Store, base: Path, strategy: str, kind: str, **params: Any) -> JobSpec:
    run_id = f"run-{uuid.uuid4().hex[:8]}"
    path = f"datasets/{AGENT}/{kind}/v1/data.parquet"
    store.write_table_at(path, _table(kind), schemas.TABLES[kind])
    return JobSpec(
        training_run_id=run_id,
        agent_id=AGENT,
        strategy=strategy,  # type: ignore[arg-type]
        base=ModelSpec(backend="trl", model_ref=str(base), system_prompt="Be brief."),
        data=TrainingData(
            agent_id=AGENT, dataset_version_id="dv-1", kind=kind, train_path=path, rows=8
        ),
        params=FAST | params,
    )


def _wait(trainer: Trainer, run_id: str, timeout: float = 240.0) -> JobStatus:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = trainer.poll(run_id)
        if status.done:
            return status
        time.sleep(0.5)
    trainer.cancel(run_id)
    raise AssertionError(f"job {run_id} did not finish in {timeout} s")


def _losses(status: JobStatus) -> list[float]:
    return [e.metrics["loss"] for e in status.events if "loss" in e.metrics]


def test_sft_in_a_subprocess_lowers_the_loss_is_found_collected_and_answers(
    base_model: Path, tmp_path: Path
) -> None:
    store = Store(f"memory://trl-{uuid.uuid4().hex}")
    context = _context(store, tmp_path / "work")
    trainer = trainer_for("trl", context)
    assert isinstance(trainer, TrlTrainer)
    spec = _spec(store, base_model, "sft", "sft_examples")
    assert trainer.find(spec.training_run_id) is None
    assert trainer.submit(spec) == spec.training_run_id
    pid = json.loads((trainer.job_dir(spec.training_run_id) / "job.json").read_text())["pid"]
    # find before create: a retry, and a resumed flow (a new trainer), find the same job
    assert trainer.submit(spec) == spec.training_run_id
    again = trainer_for("trl", context)
    assert again.find(spec.training_run_id) == spec.training_run_id
    assert again.submit(spec) == spec.training_run_id
    marker = json.loads((trainer.job_dir(spec.training_run_id) / "job.json").read_text())
    assert marker["pid"] == pid
    status = _wait(again, spec.training_run_id)
    assert status.state == "completed", status.error
    losses = _losses(status)
    assert len(losses) >= 4 and losses[-1] < losses[0]
    assert status.progress == 1.0 and status.metrics["cpu_seconds"] > 0
    assert {e.step for e in status.events} >= {1, 8}

    model = trainer.collect(spec, status)
    prefix = f"models/{spec.training_run_id}/"
    assert model.backend == "trl" and model.model_ref == prefix
    files = {f[len(prefix) :] for f in store.list_files(prefix)}
    assert {
        "adapter_config.json",
        "metrics.json",
        "progress.jsonl",
        "tokenizer_config.json",
    } <= files
    assert json.loads(store.read_bytes(prefix + "metrics.json"))["metrics"]["steps"] == 8.0

    answerer = answerer_for(
        ModelSpec("trl", prefix, "Be brief.", {"max_new_tokens": 6}),
        _context(store, tmp_path / "elsewhere"),
    )  # copied out of the store
    answer = answerer.answer([{"role": "user", "content": QA[0][0]}])
    assert isinstance(answer.text, str) and answer.completion_tokens
    assert answer.prompt_tokens and answer.prompt_tokens > 3


@pytest.mark.parametrize("strategy,kind", [("dpo", "preference_pairs"), ("kto", "binary_feedback")])
def test_preference_strategies_in_process_lower_the_loss(
    base_model: Path, tmp_path: Path, strategy: str, kind: str
) -> None:
    store = Store(f"memory://trl-{uuid.uuid4().hex}")
    trainer = trainer_for("trl", _context(store, tmp_path / "work", trl_in_process=True))
    spec = _spec(store, base_model, strategy, kind, max_steps=6)
    trainer.submit(spec)  # runs inside submit
    status = trainer.poll(spec.training_run_id)
    assert status.state == "completed", status.error
    losses = _losses(status)
    assert len(losses) >= 3 and losses[-1] < losses[0], losses
    model = trainer.collect(spec, status)
    assert store.exists(model.model_ref + "adapter_model.safetensors")


def test_cancel_kills_the_job_and_records_cancelled(base_model: Path, tmp_path: Path) -> None:
    store = Store(f"memory://trl-{uuid.uuid4().hex}")
    trainer = trainer_for("trl", _context(store, tmp_path / "work"))
    assert isinstance(trainer, TrlTrainer)
    spec = _spec(store, base_model, "sft", "sft_examples", max_steps=100000)
    trainer.submit(spec)
    job = trainer.job_dir(spec.training_run_id)
    pid = json.loads((job / "job.json").read_text())["pid"]
    assert trainer.poll(spec.training_run_id).state == "in_progress"
    status = trainer.cancel(spec.training_run_id)
    assert status.state == "cancelled" and not _alive(pid)
    assert trainer.submit(spec) == spec.training_run_id  # found: not started again
    assert trainer.poll(spec.training_run_id).state == "cancelled"
    with pytest.raises(BackendError, match="cancelled; nothing to collect"):
        trainer.collect(spec, status)


def test_a_job_that_dies_without_a_result_is_failed(base_model: Path, tmp_path: Path) -> None:
    store = Store(f"memory://trl-{uuid.uuid4().hex}")
    trainer = trainer_for("trl", _context(store, tmp_path / "work"))
    assert isinstance(trainer, TrlTrainer)
    spec = _spec(store, base_model, "sft", "sft_examples")
    job = trainer.job_dir(spec.training_run_id)
    job.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    (job / "job.json").write_text(json.dumps({"pid": dead.pid}))
    status = trainer.poll(spec.training_run_id)
    assert status.state == "failed" and "without a result" in (status.error or "")


def test_refusals_name_the_rule(base_model: Path, tmp_path: Path) -> None:
    store = Store(f"memory://trl-{uuid.uuid4().hex}")
    trainer = trainer_for("trl", _context(store, tmp_path / "work"))
    spec = _spec(store, base_model, "dpo", "sft_examples")
    with pytest.raises(JobRefused, match="needs a dataset of kind preference_pairs"):
        trainer.submit(spec)
    logs_base = JobSpec(
        spec.training_run_id,
        AGENT,
        "sft",
        ModelSpec("logs", "models/x/"),
        TrainingData(AGENT, "dv", "sft_examples", spec.data.train_path),
    )
    with pytest.raises(JobRefused, match="base_model"):
        trainer.submit(logs_base)
    missing = JobSpec(
        spec.training_run_id,
        AGENT,
        "sft",
        ModelSpec("trl", "/nowhere/model"),
        TrainingData(AGENT, "dv", "sft_examples", spec.data.train_path),
    )
    with pytest.raises(BackendError, match="neither a local folder nor in the store"):
        trainer.submit(missing)
    assert trainer.find(spec.training_run_id) is None  # refused: no marker left behind
    assert (
        TrlTrainer(_context(store, tmp_path / "work")).hyper(
            _spec(store, base_model, "sft", "sft_examples", merge="false")
        )["merge"]
        is False
    )
    with pytest.raises(BackendError, match="parameter merge must be true or false"):
        trainer.estimate_cost(_spec(store, base_model, "sft", "sft_examples", merge="maybe"))
    with pytest.raises(BackendError, match="parameter learning_rate must be a number"):
        trainer.estimate_cost(_spec(store, base_model, "sft", "sft_examples", learning_rate="fast"))


def test_importing_the_backend_loads_no_torch() -> None:
    code = "import sys, ratchet.backends.trl; print(sorted({'torch', 'trl'} & set(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    assert out.stdout.strip() == "[]"


def test_the_training_lifecycle_trains_costs_and_reuses_with_trl(
    base_model: Path, tmp_path: Path
) -> None:
    """ratchet.training end to end: record, submit (in process), wait, collect, CPU cost."""
    from ratchet.db.session import dispose_all, session_factory
    from ratchet.training import TrainingContext, TrainRequest, train
    from tests.training_fakes import seed, store_at

    sessions = session_factory(f"sqlite:///{tmp_path / 'ratchet.db'}")
    try:
        store = store_at(tmp_path / "store")
        seeded = seed(sessions, store)  # its production base is a logs model: base_model given
        config = PipelineConfig.model_validate(
            {
                "training": {"cpu_second_usd": 0.01, "poll_interval_s": 0.01},
                "backends": {
                    "trl_work_dir": str(tmp_path / "work"),
                    "trl_in_process": True,
                    "trl_cpu_threads": 1,
                },
            }
        )
        ctx = TrainingContext(sessions=sessions, store=store, config=config)
        req = TrainRequest(
            dataset_version_id=seeded.sft,
            strategy="sft",
            backend="trl",
            params=FAST | {"base_model": str(base_model), "max_steps": 3},
        )
        out = train(ctx, req)
        assert out.cost_usd > 0 and "CPU s x 0.01" in out.cost_basis
        assert store.exists(f"models/{out.model_version_id}/adapter_config.json")
        assert store.exists(out.model_card_path)
        again = train(ctx, req)
        assert again.reused and again.model_version_id == out.model_version_id
    finally:
        dispose_all()
