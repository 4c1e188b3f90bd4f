"""A fake trainer and a seeded database for the training tests (unit, tasks, flows).

The fake keeps the trainer rules of ratchet.backends.base: it finds a job by its training-record
tag before creating one, and counts how many jobs it *created*, so a test can prove a retry, a
rerun or a resumed flow never pays twice.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pyarrow as pa

from ratchet.backends.base import (
    Answer,
    BackendError,
    JobEvent,
    JobSpec,
    JobStatus,
    ModelSpec,
)
from ratchet.db import repo
from ratchet.schemas import EVAL_CASES, SFT_EXAMPLES

AGENT = "support-bot"


@dataclass
class FakeTrainer:
    """Jobs run through ``script``: the n-th poll of a job returns ``script[min(n, len-1)]``."""

    name: str = "fake"
    script: Sequence[str] = ("in_progress", "in_progress", "completed")
    estimate: float = 1.0
    error: str | None = None
    trained_tokens: int | None = 2_000_000
    lose_submit_response: bool = False  # create the job, then fail as a timeout would
    jobs: dict[str, str] = field(default_factory=dict)  # tag -> external id
    polls: dict[str, int] = field(default_factory=dict)
    created: int = 0
    submit_calls: int = 0
    cancelled: list[str] = field(default_factory=list)

    def estimate_cost(self, spec: JobSpec) -> float:
        return self.estimate

    def find(self, training_run_id: str) -> str | None:
        return self.jobs.get(training_run_id)

    def submit(self, spec: JobSpec) -> str:
        self.submit_calls += 1
        found = self.find(spec.training_run_id)
        if found:
            return found
        self.created += 1
        ext = f"job-{self.created}"
        self.jobs[spec.training_run_id] = ext
        self.polls[ext] = 0
        if self.lose_submit_response:
            self.lose_submit_response = False
            raise BackendError("fake: request timed out after the job was created", retryable=True)
        return ext

    def _state(self, ext: str) -> str:
        if ext in self.cancelled:
            return "cancelled"
        n = self.polls[ext]
        return self.script[min(n, len(self.script) - 1)]

    def poll(self, external_id: str) -> JobStatus:
        state = self._state(external_id)
        n = self.polls[external_id]
        self.polls[external_id] = n + 1
        events = tuple(
            JobEvent(
                at=f"2026-11-30T00:00:{i:02d}Z",
                message=f"step {i}",
                step=i,
                metrics={"train_loss": 2.0 / (i + 1), "valid_loss": 2.5 / (i + 1)},
            )
            for i in range(n + 1)
        )
        done = state == "completed"
        return JobStatus(
            external_id=external_id,
            state=state,  # type: ignore[arg-type]
            progress=1.0 if done else min(0.9, (n + 1) / len(self.script)),
            events=events,
            metrics={"train_loss": 2.0 / (n + 1)},
            trained_tokens=self.trained_tokens if done else None,
            error=self.error if state == "failed" else None,
            result_ref=f"fake-model-{external_id}" if done else None,
        )

    def cancel(self, external_id: str) -> JobStatus:
        self.cancelled.append(external_id)
        return self.poll(external_id)

    def collect(self, spec: JobSpec, status: JobStatus) -> ModelSpec:
        return ModelSpec(
            backend="fake",
            model_ref=status.result_ref or "",
            system_prompt=spec.base.system_prompt,
            parameters={"tuned": True},
        )


class EchoAnswerer:
    """A base answerer that answers with the last message it was given (to see the prompt)."""

    def __init__(self) -> None:
        self.spec = ModelSpec(backend="fake", model_ref="echo")
        self.seen: list[list[Any]] = []

    def answer(self, messages: Sequence[Any]) -> Answer:
        self.seen.append(list(messages))
        return Answer(text=str(messages[-1]["content"]))


def _msgs(question: str, answer: str | None = None) -> list[dict[str, Any]]:
    out = [{"role": "user", "content": question}]
    if answer is not None:
        out.append({"role": "assistant", "content": answer})
    return out


def _register(session: Any, store: Any, kind: str, table: pa.Table, schema: pa.Schema) -> str:
    version = hashlib.sha256(f"{kind}{table.num_rows}{table.to_pylist()}".encode()).hexdigest()
    rel = f"datasets/{AGENT}/{kind}/{version}/data.parquet"
    written = store.write_table_at(rel, table, schema)
    repo.register_dataset_version(
        session,
        version_id=version,
        agent_id=AGENT,
        kind=kind,
        path=rel,
        rows=table.num_rows,
        schema_fingerprint=written.schema_fingerprint,
        config_hash="0" * 64,
        stats={"signal_golden": 2, "signal_regression": 1, "rows_sft_examples": table.num_rows},
        lineage=[("feedback_file", "f" * 64), ("part", "feedback/agent=support-bot/p1")],
    )
    return version


@dataclass(frozen=True)
class Seeded:
    base_id: str
    sft: str
    evals: str


def seed(sessions: Any, store: Any) -> Seeded:
    """A production (logs) base version, an sft_examples version and an eval_cases version."""
    sft = pa.Table.from_pylist(
        [
            {
                "example_id": f"e{i}",
                "agent_id": AGENT,
                "case_id": f"c{i}",
                "origin": "correction",
                "split": split,
                "messages": _msgs(q, a),
                "topic": None,
                "pii_residual": 0,
            }
            for i, (q, a, split) in enumerate(
                [
                    ("how do I reset my password", "Use Settings > Security > Reset.", "train"),
                    (
                        "what are your opening hours",
                        "We are open 9 to 5, Monday to Friday.",
                        "train",
                    ),
                    ("can I get a refund", "Refunds within 30 days from the Orders page.", "train"),
                    ("where is my parcel", "Track it under Orders > Tracking.", "validation"),
                ]
            )
        ],
        schema=SFT_EXAMPLES,
    )
    cases = pa.Table.from_pylist(
        [
            {
                "case_id": cid,
                "agent_id": AGENT,
                "interaction_id": f"i-{cid}",
                "kind": kind,
                "split": split,
                "fix_check": split == "train",
                "input": _msgs(q),
                "expected": exp,
                "expected_tool_calls": None,
                "production_answer": "wrong",
                "status": "active",
                "retired_reason": None,
                "feedback_ids": ["fb"],
                "topic": None,
                "first_seen": None,
                "pii_residual": 0,
            }
            for cid, kind, split, q, exp in [
                (
                    "c1",
                    "regression",
                    "train",
                    "can I pay by invoice",
                    "Yes, for business accounts.",
                ),
                ("c2", "regression", "holdout", "do you ship abroad", "HOLDOUT-ANSWER"),
                ("c3", "golden", "train", "hello", "Hi!"),
            ]
        ],
        schema=EVAL_CASES,
    )
    with sessions() as s, s.begin():
        base = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="logs",
            model_ref="logs",
            system_prompt="You are helpful.",
            status="production",
        )
        ids = Seeded(
            base.id,
            _register(s, store, "sft_examples", sft, SFT_EXAMPLES),
            _register(s, store, "eval_cases", cases, EVAL_CASES),
        )
    return ids


def store_at(root: Path) -> Any:
    from ratchet.store import Store

    return Store(str(root))


#: The trainer the registry hands out for backend "fake" (``BACKENDS["fake"]`` points at this
#: module in the task and flow tests): one object, so a test can count its submissions.
CURRENT: dict[str, FakeTrainer] = {"trainer": FakeTrainer()}


def make_trainer(context: Any) -> FakeTrainer:
    return CURRENT["trainer"]


def make_answerer(spec: ModelSpec, context: Any) -> EchoAnswerer:
    return EchoAnswerer()
