"""The ``local`` backend: the embedded default, no network and no keys.

A retrieval response model over a dataset version's SFT train split: "training" fits the
encoder and indexes the examples' questions (the last user message before the answer, with the
tool results that followed it: ``retrieval.context_text``); answering returns the nearest
example's answer when its cosine similarity reaches ``min_similarity``, else the base model's
answer. A turn with tool results takes an example's answer only when the question and the tool
data are the same: a retrieval model cannot rewrite another order's answer for this order, so it
leaves such turns to its base (a fine-tuned model learns the skill; this stand-in learns facts). It stands where a fine-tuned model stands,
so the whole loop (train, evaluate, gate) runs offline, in CI, with real metrics: a candidate
answers the questions it was corrected on with the correction, and anything else as its base.

Store layout, keyed by the training run (the tag that makes submission idempotent):

``models/<training_run_id>/index.json``, ``rows.parquet`` (``vectors.npy``)  the index
                                             (ratchet.backends.retrieval; same data and
                                             settings, same bytes)
``models/<training_run_id>/job.json``        the marker ``find`` looks for, written last: the
                                             job's state, metrics and (value-free) error

The job runs in process and synchronously inside ``submit`` (seconds for 100k examples;
benchmarks/README.md), so ``poll`` always finds it finished and ``cancel`` returns its final
state. Only the ``sft`` strategy on an ``sft_examples`` dataset trains here; ``dpo`` and ``kto``
are refused naming the backends that train them.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc

from ratchet import schemas
from ratchet.backends import BackendContext, answerer_for
from ratchet.backends.base import (
    Answer,
    Answerer,
    BackendError,
    JobEvent,
    JobRefused,
    JobSpec,
    JobStatus,
    ModelSpec,
)
from ratchet.backends.retrieval import (
    MissingExtraError,
    RetrievalIndex,
    build_index,
    context_text,
    example_pair,
    has_tool_results,
    json_bytes,
)
from ratchet.config import BackendsConfig
from ratchet.store import Store, StoreError

log = logging.getLogger(__name__)

NAME = "local"
JOB_FILE = "job.json"
TRAINED_BY_OTHERS = ("openai", "trl")


def model_dir(training_run_id: str) -> str:
    """``models/<training_run_id>/``: where the run's index and marker live (its model_ref)."""
    if not training_run_id or "/" in training_run_id or training_run_id in (".", ".."):
        raise BackendError("local: a training run id is one path segment")
    return f"models/{training_run_id}/"


def _backends_config(context: BackendContext) -> BackendsConfig:
    cfg = getattr(context.config, "backends", None)
    return cfg if isinstance(cfg, BackendsConfig) else BackendsConfig()


def _float_param(params: Mapping[str, Any], key: str, default: float) -> float:
    value = params.get(key, default)
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BackendError(f"local: parameter {key} must be a number") from None
    if not 0.0 <= number <= 1.0:
        raise BackendError(f"local: parameter {key} must be within [0, 1]")
    return number


# --- reading the train split ------------------------------------------------------------------
def read_train_examples(store: Store, path: str) -> tuple[pa.Table, int]:
    """(id, question, answer, tool calls) rows of the train split, and how many were skipped.

    ``path`` is a dataset version's ``data.parquet`` (only ``split == "train"`` rows are used:
    validation rows stay out of the model) or an export's chat JSONL (every line is train).
    An example whose messages do not end with the assistant's answer is skipped and counted.
    """
    records: list[tuple[str, list[dict[str, Any]]]] = []
    if path.endswith(".jsonl"):
        for n, line in enumerate(store.read_bytes(path).decode("utf-8").splitlines(), 1):
            if line.strip():
                try:
                    obj = json.loads(line)
                except ValueError:
                    raise BackendError(f"local: {path} line {n} is not JSON") from None
                messages = obj.get("messages") if isinstance(obj, dict) else None
                records.append((f"line-{n:09d}", messages if isinstance(messages, list) else []))
    else:
        table = store.read_table(path, schemas.SFT_EXAMPLES, ["example_id", "split", "messages"])
        table = table.filter(pc.equal(table["split"], "train"))
        records = list(
            zip(table["example_id"].to_pylist(), table["messages"].to_pylist(), strict=True)
        )
    ids, questions, answers, calls = [], [], [], []
    skipped = 0
    for example_id, messages in records:
        pair = example_pair(messages)
        if pair is None:
            skipped += 1
            continue
        ids.append(example_id)
        questions.append(pair[0])
        answers.append(pair[1])
        calls.append(pair[2])
    rows = pa.table(
        {"id": ids, "question": questions, "answer": answers, "tool_calls": calls},
        schema=pa.schema(
            [
                ("id", pa.string()),
                ("question", pa.string()),
                ("answer", pa.string()),
                ("tool_calls", pa.string()),
            ]
        ),
    )
    return rows, skipped


# --- the trainer ------------------------------------------------------------------------------
class LocalTrainer:
    """Builds a retrieval index as a training job; finds a job by its marker file."""

    name = NAME

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.store: Store = context.store
        self.config = _backends_config(context)

    def estimate_cost(self, spec: JobSpec) -> float:
        """Nothing is paid: the index is built on this machine in seconds."""
        return 0.0

    def find(self, training_run_id: str) -> str | None:
        return training_run_id if self.store.exists(model_dir(training_run_id) + JOB_FILE) else None

    def _check(self, spec: JobSpec) -> None:
        if spec.strategy != "sft":
            raise JobRefused(
                f"local: strategy {spec.strategy} is not trained by the local "
                "backend (it trains sft only)",
                alternatives=TRAINED_BY_OTHERS,
            )
        if spec.data.kind != "sft_examples":
            raise JobRefused(
                f"local: a dataset of kind {spec.data.kind or 'none'} cannot train "
                "it; sft needs sft_examples"
            )
        if not spec.data.train_path:
            raise BackendError("local: the job names no train file")

    def submit(self, spec: JobSpec) -> str:
        """Build the index now (in process) unless the run's marker already exists."""
        self._check(spec)
        found = self.find(spec.training_run_id)
        if found is not None:
            log.info("local: job %s found by its marker; not built again", found)
            return found
        prefix = model_dir(spec.training_run_id)
        encoder = str(spec.params.get("encoder", self.config.local_encoder))
        started = time.perf_counter()
        try:
            rows, skipped = read_train_examples(self.store, spec.data.train_path)
            if rows.num_rows == 0:
                raise BackendError(
                    f"local: dataset version {spec.data.dataset_version_id} has "
                    "no train-split example ending with an answer"
                )
            index = build_index(
                rows["id"].to_pylist(),
                rows["question"].to_pylist(),
                rows["answer"].to_pylist(),
                rows["tool_calls"].to_pylist(),
                encoder=encoder,
                ngram_max=self.config.tfidf_ngram_max,
                max_features=self.config.tfidf_max_features,
                meta={
                    "backend": NAME,
                    "agent_id": spec.agent_id,
                    "dataset_version_id": spec.data.dataset_version_id,
                },
            )
            written = index.save(self.store, prefix)
        except MissingExtraError:
            raise  # a missing extra is a refusal at submission, not a failed job
        except (BackendError, StoreError, ValueError) as exc:
            self._mark(prefix, "failed", {}, f"{type(exc).__name__}: {exc}")
            return spec.training_run_id
        seconds = time.perf_counter() - started
        metrics = {
            "examples": float(rows.num_rows),
            "skipped_examples": float(skipped),
            "vocabulary": float(len(written["encoder_state"].get("vocabulary", []))),
        }
        self._mark(prefix, "completed", metrics, None, seconds)
        log.info(
            "local: indexed %d examples of %s in %.2f s (%s)",
            rows.num_rows,
            spec.data.dataset_version_id,
            seconds,
            encoder,
        )
        return spec.training_run_id

    def _mark(
        self,
        prefix: str,
        state: str,
        metrics: Mapping[str, float],
        error: str | None,
        seconds: float | None = None,
    ) -> None:
        self.store.write_bytes(
            prefix + JOB_FILE,
            json_bytes(
                {
                    "backend": NAME,
                    "state": state,
                    "metrics": dict(metrics),
                    "error": error,
                    "finished_at": datetime.now(UTC).isoformat(),
                    "build_seconds": seconds,
                }
            ),
        )

    def poll(self, external_id: str) -> JobStatus:
        prefix = model_dir(external_id)
        try:
            job = json.loads(self.store.read_bytes(prefix + JOB_FILE))
        except StoreError:
            raise BackendError(f"local: no job {external_id} (no {prefix}{JOB_FILE})") from None
        state = job["state"]
        message = f"index {state}" + (f": {job['error']}" if job.get("error") else "")
        return JobStatus(
            external_id=external_id,
            state=state,
            progress=1.0,
            events=(
                JobEvent(
                    at=job["finished_at"],
                    message=message,
                    step=None,
                    metrics=job.get("metrics") or {},
                ),
            ),
            metrics=job.get("metrics") or {},
            trained_tokens=None,
            cost_usd=0.0,
            error=job.get("error"),
            result_ref=prefix if state == "completed" else None,
        )

    def cancel(self, external_id: str) -> JobStatus:
        """The build ran inside ``submit``: there is never a running job left to stop."""
        return self.poll(external_id)

    def collect(self, spec: JobSpec, status: JobStatus) -> ModelSpec:
        if status.state != "completed":
            raise BackendError(
                f"local: job {status.external_id} is {status.state}; nothing to collect"
            )
        params = {
            "min_similarity": _float_param(
                spec.params, "min_similarity", self.config.local_min_similarity
            ),
            "dataset_version_id": spec.data.dataset_version_id,
            "base": asdict(spec.base) | {"parameters": dict(spec.base.parameters)},
        }
        return ModelSpec(
            backend=NAME,
            model_ref=model_dir(spec.training_run_id),
            system_prompt=spec.base.system_prompt,
            parameters=params,
        )


# --- the answerer -----------------------------------------------------------------------------
def base_spec(parameters: Mapping[str, Any]) -> ModelSpec | None:
    """The base model a local model falls back to, from its parameters (None: no base)."""
    base = parameters.get("base")
    if not isinstance(base, Mapping):
        return None
    return ModelSpec(
        backend=str(base["backend"]),
        model_ref=str(base["model_ref"]),
        system_prompt=base.get("system_prompt"),
        parameters=dict(base.get("parameters") or {}),
    )


class LocalAnswerer:
    """Answers from the nearest train example above ``min_similarity``, else through the base.

    The index is read from the store once, on the first answer. Without a base (a model built
    outside the train flow), a question below the threshold gets an empty answer: the model
    declines rather than guess.
    """

    def __init__(self, spec: ModelSpec, context: BackendContext) -> None:
        self.spec, self.context = spec, context
        self.min_similarity = _float_param(
            spec.parameters, "min_similarity", _backends_config(context).local_min_similarity
        )
        self._index: RetrievalIndex | None = None
        self._base: Answerer | None = None

    @property
    def index(self) -> RetrievalIndex:
        if self._index is None:
            self._index = RetrievalIndex.load(self.context.store, self.spec.model_ref)
        return self._index

    def _base_answerer(self) -> Answerer | None:
        if self._base is None:
            base = base_spec(self.spec.parameters)
            if base is None:
                return None
            self._base = answerer_for(base, self.context)
        return self._base

    def prepare(self) -> None:
        """Load what answering reads (this index, and the base's, down the chain) once."""
        _ = self.index
        base = self._base_answerer()
        try:
            if isinstance(base, LocalAnswerer):
                base.prepare()
            elif base is not None:
                getattr(base, "index", None)  # a logs base loads its index on first use
        except BackendError:
            pass  # an unreadable base fails the answers that need it, when they ask

    def _base_answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer | None:
        base = self._base_answerer()
        return None if base is None else base.answer(messages)

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer:
        self.prepare()  # before the clock: latency is answering, not loading
        index = self.index
        started = time.perf_counter()
        question = context_text(messages)
        # Tool data is not generalised: an example answers a turn with tool results only when
        # the question and the data are the same (another order's answer is never right).
        tools = has_tool_results(messages)
        exact = index.exact(question) if tools else None
        hit = exact or index.nearest(question)
        details: dict[str, Any] = {
            "similarity": round(hit.score, 6),
            "min_similarity": self.min_similarity,
        }
        same_data = not tools or exact is not None
        if not same_data:
            details["tool_data"] = "differs"
        if hit.row >= 0 and hit.score >= self.min_similarity and same_data:
            return Answer(
                text=hit.answer,
                tool_calls=hit.tool_calls,
                latency_ms=(time.perf_counter() - started) * 1000.0,
                details=details | {"source": "example", "example_id": hit.id},
            )
        base = self._base_answer(messages)
        elapsed = (time.perf_counter() - started) * 1000.0
        if base is None:
            return Answer(text="", latency_ms=elapsed, details=details | {"source": "none"})
        return Answer(
            text=base.text,
            tool_calls=base.tool_calls,
            latency_ms=elapsed,
            prompt_tokens=base.prompt_tokens,
            completion_tokens=base.completion_tokens,
            cost_usd=base.cost_usd,
            details=details | {"source": "base", "base": dict(base.details)},
        )


def make_trainer(context: BackendContext) -> LocalTrainer:
    return LocalTrainer(context)


def make_answerer(spec: ModelSpec, context: BackendContext) -> LocalAnswerer:
    if spec.backend != NAME:
        raise BackendError(f"local: cannot answer for a {spec.backend} model")
    return LocalAnswerer(spec, context)
