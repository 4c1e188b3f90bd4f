"""The one interface every training and answering backend sits behind.

The loop must never depend on one provider (OpenAI closes self-serve fine-tuning to new jobs on
2027-01-06), so flows and tasks only ever see these types: a :class:`Trainer` turns a dataset
version into a model version through a job that is submitted, polled, cancelled and collected,
and an :class:`Answerer` answers chat requests for one model version. Backends are plain classes
in ``ratchet/backends/<name>.py``, registered in :mod:`ratchet.backends` by name; nothing here
imports Prefect, so every backend is testable without it.

Two rules every trainer keeps, because a paid job started twice is money lost:

* **Find before create.** ``submit`` first looks for a job tagged with the training record's id
  (provider metadata, a job suffix, or a marker file for local jobs) and returns it when found;
  only then does it create one. The caller writes the training record *before* calling
  ``submit``, so a retry, a rerun or a killed flow resumed finds the job it already started.
* **Value-free errors.** Messages name the backend, the job id and the rule (and a provider's own
  refusal text as it is); never a training example.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

#: Training strategies (DESIGN.md, "Models, backends, candidates"). ``few_shot`` and ``prompt``
#: make a candidate without a job on a trainer.
Strategy = Literal["sft", "dpo", "kto", "few_shot", "prompt"]
STRATEGIES: tuple[str, ...] = ("sft", "dpo", "kto", "few_shot", "prompt")

#: The training-run statuses of the seed schema (ratchet.db.models.RUN_STATUSES).
JobState = Literal["pending", "in_progress", "completed", "failed", "cancelled"]
TERMINAL_STATES: frozenset[str] = frozenset({"completed", "failed", "cancelled"})


class BackendError(RuntimeError):
    """A backend refused or failed; ``retryable`` says whether trying later may succeed."""

    def __init__(self, message: str, *, retryable: bool = False) -> None:
        super().__init__(message)
        self.retryable = retryable


class JobRefused(BackendError):
    """The provider will not run this job (policy, wind-down, quota, invalid data).

    ``alternatives`` names backends that would serve, so the operator is told where to go next.
    """

    def __init__(self, message: str, *, alternatives: Sequence[str] = ()) -> None:
        hint = (
            f" Other backends that can train this: {', '.join(alternatives)}."
            if alternatives
            else ""
        )
        super().__init__(message + hint, retryable=False)
        self.alternatives = tuple(alternatives)


class BudgetExceeded(BackendError):
    """A submission would pass a configured budget; nothing was submitted."""


@dataclass(frozen=True)
class TrainingData:
    """References to what a job trains on: paths in the store, never the rows themselves."""

    agent_id: str
    dataset_version_id: str
    kind: str  # the dataset kind: sft_examples | preference_pairs | binary_feedback
    train_path: str  # store-relative path of the train split (Parquet or an export's JSONL)
    validation_path: str | None = None
    rows: int = 0


@dataclass(frozen=True)
class ModelSpec:
    """What answers: a backend, its model reference, a system prompt and parameters.

    It is the content of a ``model_versions`` row, so a model version can be rebuilt into an
    :class:`Answerer` from the database alone.
    """

    backend: str
    model_ref: str
    system_prompt: str | None = None
    parameters: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobSpec:
    """One training job. ``training_run_id`` is the tag that makes submission idempotent."""

    training_run_id: str
    agent_id: str
    strategy: Strategy
    base: ModelSpec
    data: TrainingData
    params: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class JobEvent:
    """One event of a job (a status change, a step's metrics, a provider message)."""

    at: str  # ISO-8601 UTC
    message: str
    step: int | None = None
    metrics: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class JobStatus:
    """A job as seen by one poll. ``progress`` is 0..1 when the backend can tell."""

    external_id: str
    state: JobState
    progress: float | None = None
    events: tuple[JobEvent, ...] = ()
    metrics: Mapping[str, float] = field(default_factory=dict)
    trained_tokens: int | None = None
    cost_usd: float | None = None
    error: str | None = None
    result_ref: str | None = None  # the trained model's reference once completed

    @property
    def done(self) -> bool:
        return self.state in TERMINAL_STATES


@dataclass(frozen=True)
class Answer:
    """One answer to one chat request, with what it cost."""

    text: str
    tool_calls: tuple[Mapping[str, Any], ...] = ()
    latency_ms: float = 0.0
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float = 0.0
    #: How the answer was made, for ``ratchet ask --json`` and eval reports (e.g. a retrieval
    #: backend's similarity and source); value-free facts only, never prompt text.
    details: Mapping[str, Any] = field(default_factory=dict)


@runtime_checkable
class Trainer(Protocol):
    """A training backend: submit, poll, cancel, collect."""

    name: str

    def estimate_cost(self, spec: JobSpec) -> float:
        """The job's expected spend in USD, for the budget check before submission."""
        ...

    def find(self, training_run_id: str) -> str | None:
        """The external id of a job already tagged with this training record, if any."""
        ...

    def submit(self, spec: JobSpec) -> str:
        """Start the job (or return the one already tagged with ``spec.training_run_id``)."""
        ...

    def poll(self, external_id: str) -> JobStatus:
        """The job's state now; never blocks for long."""
        ...

    def cancel(self, external_id: str) -> JobStatus:
        """Ask the job to stop; cancelling a finished job returns its final state."""
        ...

    def collect(self, spec: JobSpec, status: JobStatus) -> ModelSpec:
        """The model version a completed job produced (artifacts written under models/)."""
        ...


@runtime_checkable
class Answerer(Protocol):
    """Answers chat requests for one model version."""

    spec: ModelSpec

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer:
        """The model's answer to a chat history (OpenAI roles; tool calls included)."""
        ...
