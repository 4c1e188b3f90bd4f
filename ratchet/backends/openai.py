"""The ``openai`` backend: OpenAI fine-tuning jobs, and chat answers from any OpenAI-compatible
server, through the ``openai`` SDK (pinned 3.54.0; everything below was checked in its source).

Training (``sft`` -> the supervised method, ``dpo`` -> the DPO method; ``kto`` is refused, TRL
trains it): the dataset version's curated table is turned into OpenAI JSONL by
:mod:`ratchet.export`'s record builders and validated by its validators *before* anything is
uploaded; the train split (and the validation split, when it has examples) is uploaded with
purpose ``fine-tune``; the job is created with the method's hyperparameters, a suffix, a seed
and ``metadata={"ratchet_training_run": <training record id>}``.

**Never pay twice.** The SDK retries a non-GET request after a timeout, a 408/409/429 or a 5xx,
and this client sends no idempotency header, so a retried ``jobs.create`` whose first response
was lost starts a second paid job. Therefore:

* every request goes through one client whose ``max_retries`` and ``timeout`` come from config
  (``backends.openai_max_retries``, ``backends.openai_timeout_s``): that is the *one place*
  where rate limits (429) and 5xx are retried, and the SDK waits as the server's
  ``Retry-After``/``retry-after-ms`` says (``_calculate_retry_timeout``; up to 120 s, a longer
  wait is not retried) or backs off exponentially with jitter;
* ``jobs.create`` alone runs with ``max_retries=0`` and ``backends.openai_create_timeout_s``.
  ``submit`` looks for a job tagged with the record's id before creating (``jobs.list`` with the
  ``metadata`` filter, then a scan of recent jobs' metadata and suffix for a server that ignores
  the filter); after a create that timed out or failed it looks again, and raises a *retryable*
  :class:`BackendError` when the job is not (yet) there: the caller's next attempt finds the
  job instead of creating a second one.

Errors keep the provider's own message as it is (a failed job's ``error.message``, a refusal such
as the 2027-01-06 wind-down of self-serve fine-tuning) and say which backends would serve
instead; only API-key fragments are masked out of them.

**The key** comes from ``settings.openai_api_key`` (``RATCHET_OPENAI_API_KEY``, falling back to
``OPENAI_API_KEY``). A flow that keeps it in a Prefect Secret block resolves the block at the edge
and passes ``settings.model_copy(update={"openai_api_key": SecretStr(block.get())})`` in the
:class:`~ratchet.backends.BackendContext` (:func:`api_key` is the one hook that reads it): the
core never imports Prefect. The key is never logged, stored or put in an error message.

Answering (:class:`OpenAIAnswerer`) calls chat completions on ``settings.openai_base_url`` or on
the model version's own ``base_url`` parameter (vLLM, Ollama, llama.cpp, hosted vendors). The
settings' key is sent only to the settings' endpoint, never to another server a model version
names; such a server gets a placeholder key (they run keyless on a private network).
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import openai
from pydantic import SecretStr

from ratchet import schemas
from ratchet.backends import BackendContext
from ratchet.backends.base import (
    Answer,
    BackendError,
    JobEvent,
    JobRefused,
    JobSpec,
    JobStatus,
    ModelSpec,
)
from ratchet.config import BackendsConfig, PipelineConfig
from ratchet.export import (
    _message_tokens,  # the export's own per-example token reckoning, shared with validation
    min_examples_for,
    openai_chat_records,
    openai_dpo_records,
    token_counter,
    validate_records,
)

log = logging.getLogger(__name__)

NAME = "openai"
TAG = "ratchet_training_run"
#: Backends that train what OpenAI will not (refusals, wind-down, kto).
ALTERNATIVES = ("trl", "local")
KEYLESS = "not-needed"  # what a keyless OpenAI-compatible server is sent as its key
SCAN_PAGES = 5  # pages of 100 recent jobs scanned when the server ignores the metadata filter
EVENT_PAGES = 10  # pages of 100 events read back to the last one seen, per poll

#: OpenAI job status -> training-run state.
STATES: dict[str, str] = {
    "validating_files": "pending",
    "queued": "pending",
    "running": "in_progress",
    "paused": "in_progress",
    "succeeded": "completed",
    "failed": "failed",
    "cancelled": "cancelled",
}
METHODS = {"sft": "supervised", "dpo": "dpo"}
HYPERPARAMETERS = {
    "supervised": ("n_epochs", "batch_size", "learning_rate_multiplier"),
    "dpo": ("n_epochs", "batch_size", "learning_rate_multiplier", "beta"),
}
_KEYISH = re.compile(r"\b(sk|sess|org)-[A-Za-z0-9_*\-]{4,}")


# --- the client, the key and errors -----------------------------------------------------------
def api_key(context: BackendContext) -> SecretStr | None:
    """The API key from the settings (the hook a flow fills from a Prefect Secret block)."""
    key = getattr(context.settings, "openai_api_key", None)
    if key is None or isinstance(key, SecretStr):
        return key
    raise BackendError("openai: settings.openai_api_key must be a SecretStr")


def _backends(context: BackendContext) -> BackendsConfig:
    cfg = getattr(context.config, "backends", None)
    return cfg if isinstance(cfg, BackendsConfig) else BackendsConfig()


def make_client(context: BackendContext, base_url: str | None = None) -> openai.OpenAI:
    """The one configured SDK client: explicit timeout and retry budget from config.

    ``base_url`` other than the settings' endpoint gets no key from the settings."""
    cfg = _backends(context)
    default_url = getattr(context.settings, "openai_base_url", None)
    key = api_key(context)
    own_endpoint = base_url is None or base_url.rstrip("/") == (default_url or "").rstrip("/")
    if own_endpoint:
        if key is None or not key.get_secret_value():
            raise BackendError(
                "openai: no API key: set RATCHET_OPENAI_API_KEY (or "
                "OPENAI_API_KEY), or resolve a Secret block into the settings"
            )
        secret = key.get_secret_value()
        url = default_url
    else:
        secret, url = KEYLESS, base_url
    return openai.OpenAI(
        api_key=secret,
        base_url=url,
        timeout=cfg.openai_timeout_s,
        max_retries=cfg.openai_max_retries,
    )


def _scrub(text: str, client: openai.OpenAI | None) -> str:
    """The provider's message as it is, but with anything key-like masked out."""
    key = getattr(client, "api_key", None)
    if isinstance(key, str) and len(key) >= 4 and key != KEYLESS:
        text = text.replace(key, "***")
    return _KEYISH.sub(lambda m: m.group(1) + "-***", text)


def _provider_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, Mapping) and isinstance(body.get("message"), str):
        return str(body["message"])
    return exc.response.reason_phrase or "no message"


def _translate(
    exc: openai.OpenAIError, what: str, client: openai.OpenAI | None, *, refusal: bool = False
) -> BackendError:
    """One SDK error as a :class:`BackendError` (raise it ``from None``: the SDK exception
    carries the request, whose headers hold the key)."""
    if isinstance(exc, openai.APITimeoutError):
        return BackendError(f"openai: {what}: timed out", retryable=True)
    if isinstance(exc, openai.APIConnectionError):
        return BackendError(f"openai: {what}: connection failed", retryable=True)
    if not isinstance(exc, openai.APIStatusError):
        return BackendError(f"openai: {what}: {type(exc).__name__}")
    code = exc.status_code
    message = _scrub(_provider_message(exc), client)
    if code == 429 or code >= 500 or code in (408, 409):
        return BackendError(
            f"openai: {what}: HTTP {code} (after the SDK's retries): {message}", retryable=True
        )
    if code == 401:
        return BackendError(f"openai: {what}: HTTP 401, the API key was not accepted: {message}")
    if refusal and code in (400, 403, 404, 422):
        return JobRefused(
            f"openai: {what} refused (HTTP {code}): {message}", alternatives=ALTERNATIVES
        )
    return BackendError(f"openai: {what}: HTTP {code}: {message}")


# --- training files ---------------------------------------------------------------------------
def _jsonl(records: list[dict[str, Any]]) -> bytes:
    return "".join(
        json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in records
    ).encode("utf-8")


def training_records(
    store: Any, config: PipelineConfig, spec: JobSpec
) -> dict[str, list[dict[str, Any]]]:
    """``{"train": [...], "validation": [...]}`` OpenAI records of the dataset version, each
    validated (line numbers and rules, no text, on failure: :class:`JobRefused`)."""
    method = _method(spec)
    path = spec.data.train_path
    if not path:
        raise BackendError("openai: the job names no dataset file")
    fmt = "openai_chat" if method == "supervised" else "openai_dpo"
    splits: dict[str, list[Any]]
    if path.endswith(".jsonl"):  # an export already in OpenAI's format: all of it is train
        splits = {"train": _read_jsonl(store, path), "validation": []}
    elif method == "supervised":
        table = store.read_table(path, schemas.SFT_EXAMPLES)
        splits = {k: openai_chat_records(table, k) for k in ("train", "validation")}
    else:
        table = store.read_table(path, schemas.PREFERENCE_PAIRS)
        splits = {k: openai_dpo_records(table, k) for k in ("train", "validation")}
    out: dict[str, list[dict[str, Any]]] = {}
    for split, records in splits.items():
        if split == "validation" and not records:
            continue
        violations, _, _ = validate_records(
            records, fmt, config.export, min_examples=min_examples_for(split, config.export)
        )
        if violations:
            head = "; ".join(v.describe() for v in violations[:5])
            raise JobRefused(
                f"openai: the {split} split of dataset version "
                f"{spec.data.dataset_version_id} is not a valid {fmt} file "
                f"({len(violations)} violation(s): {head})"
            )
        out[split] = records
    return out


def _read_jsonl(store: Any, path: str) -> list[Any]:
    out: list[Any] = []
    for n, line in enumerate(store.read_bytes(path).decode("utf-8").splitlines(), 1):
        if line.strip():
            try:
                out.append(json.loads(line))
            except ValueError:
                raise JobRefused(f"openai: {path} line {n} is not JSON") from None
    return out


def _record_messages(record: Mapping[str, Any]) -> list[Any]:
    if "messages" in record:
        return list(record["messages"])
    return (
        list(record["input"]["messages"])
        + list(record["preferred_output"])
        + list(record["non_preferred_output"])
    )


def _method(spec: JobSpec) -> str:
    if spec.strategy == "kto":
        raise JobRefused(
            "openai: strategy kto is not offered by OpenAI fine-tuning (supervised and dpo only)",
            alternatives=("trl",),
        )
    if spec.strategy not in METHODS:
        raise JobRefused(f"openai: strategy {spec.strategy} needs no training job")
    return METHODS[spec.strategy]


def _number(key: str, value: Any) -> int | float | str:
    if value == "auto":
        return "auto"
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        raise BackendError(f"openai: parameter {key} must be a number or 'auto'")
    try:
        number = float(value)
    except ValueError:
        raise BackendError(f"openai: parameter {key} must be a number or 'auto'") from None
    return int(number) if key in ("n_epochs", "batch_size") else number


def suffix_of(training_run_id: str) -> str:
    """The fine-tuned model's suffix: the record's id, shortened to 18 characters."""
    return f"r-{training_run_id[:16]}"


# --- the trainer ------------------------------------------------------------------------------
class OpenAITrainer:
    """Fine-tuning jobs on the OpenAI API (or a server that speaks it)."""

    name = NAME

    def __init__(self, context: BackendContext) -> None:
        self.context = context
        self.config: PipelineConfig = context.config or PipelineConfig()
        self.cfg = _backends(context)
        self._client: openai.OpenAI | None = None
        self._last_event: dict[str, str] = {}
        self._metrics: dict[str, dict[str, float]] = {}  # latest value of each metric, per job
        self._progress: dict[str, float] = {}

    @property
    def client(self) -> openai.OpenAI:
        if self._client is None:
            self._client = make_client(self.context)
        return self._client

    def _price(self, model_ref: str) -> float:
        prices = self.config.training.price_per_1m_tokens_usd.get(NAME, {})
        price = prices.get(model_ref, prices.get("default"))
        return 0.0 if price is None else float(price)

    def estimate_cost(self, spec: JobSpec) -> float:
        """Tokens of the train file (the export's token counter) x epochs x the base's price."""
        records = training_records(self.context.store, self.config, spec)["train"]
        _, count = token_counter(self.config.export)
        per = self.config.export.tokens_per_message
        tokens = sum(_message_tokens(_record_messages(r), count, per) for r in records)
        epochs = spec.params.get("n_epochs", "auto")
        n = (
            self.cfg.openai_estimate_epochs
            if epochs == "auto"
            else int(_number("n_epochs", epochs))
        )
        return tokens * n / 1e6 * self._price(spec.base.model_ref)

    # -- find before create
    def find(self, training_run_id: str) -> str | None:
        """The job tagged with this record: the metadata filter first, then (a server that
        ignored the filter) a scan of recent jobs' metadata and suffix."""
        client = self.client
        try:
            page = client.fine_tuning.jobs.list(metadata={TAG: training_run_id}, limit=100)
            for _ in range(SCAN_PAGES):
                for job in page.data:
                    if (job.metadata or {}).get(TAG) == training_run_id or (
                        not job.metadata
                        and job.fine_tuned_model
                        and f":{suffix_of(training_run_id)}:" in job.fine_tuned_model
                    ):
                        return job.id
                if not page.has_next_page():
                    break
                page = page.get_next_page()
        except openai.OpenAIError as exc:
            raise _translate(exc, "looking for the run's job", client) from None
        return None

    def _upload(self, records: list[dict[str, Any]], run_id: str, split: str) -> str:
        client = self.client
        try:
            f = client.files.create(
                file=(f"ratchet-{run_id}-{split}.jsonl", _jsonl(records), "application/jsonl"),
                purpose="fine-tune",
            )
        except openai.OpenAIError as exc:
            raise _translate(exc, f"upload of the {split} file", client, refusal=True) from None
        return f.id

    def _create_args(self, spec: JobSpec, method: str) -> dict[str, Any]:
        hyper = {k: _number(k, spec.params[k]) for k in HYPERPARAMETERS[method] if k in spec.params}
        args: dict[str, Any] = {
            "model": spec.base.model_ref,
            "method": {"type": method, method: {"hyperparameters": hyper}},
            "suffix": str(spec.params.get("suffix", suffix_of(spec.training_run_id)))[:64],
            "metadata": {TAG: spec.training_run_id, "agent_id": spec.agent_id[:512]},
        }
        if "seed" in spec.params:
            args["seed"] = int(_number("seed", spec.params["seed"]))
        return args

    def submit(self, spec: JobSpec) -> str:
        """Find the run's job, or upload its files and create it once (never SDK-retried)."""
        method = _method(spec)
        found = self.find(spec.training_run_id)
        if found is not None:
            log.info(
                "openai: job %s of training run %s found by its tag; not created again",
                found,
                spec.training_run_id,
            )
            return found
        data = training_records(self.context.store, self.config, spec)
        args = self._create_args(spec, method)
        args["training_file"] = self._upload(data["train"], spec.training_run_id, "train")
        if "validation" in data:
            args["validation_file"] = self._upload(
                data["validation"], spec.training_run_id, "validation"
            )
        once = self.client.with_options(max_retries=0, timeout=self.cfg.openai_create_timeout_s)
        try:
            job = once.fine_tuning.jobs.create(**args)
        except openai.OpenAIError as exc:
            error = _translate(exc, "job creation", self.client, refusal=True)
            if not error.retryable:
                raise error from None
            # the request may have created the job before its answer was lost: look, never
            # create again here; not there yet -> the caller's next attempt looks again
            found = self.find(spec.training_run_id)
            if found is not None:
                log.warning(
                    "openai: job creation for training run %s failed (%s) but the job "
                    "%s exists; using it",
                    spec.training_run_id,
                    error,
                    found,
                )
                return found
            raise error from None
        log.info(
            "openai: job %s created for training run %s (%s, %s)",
            job.id,
            spec.training_run_id,
            method,
            spec.base.model_ref,
        )
        return job.id

    # -- poll, cancel, collect
    def _events(self, external_id: str) -> list[Any]:
        """Events newer than the last one this trainer saw, oldest first (the API lists
        newest first, ``after`` paging towards older ones)."""
        last = self._last_event.get(external_id)
        out: list[Any] = []
        page = self.client.fine_tuning.jobs.list_events(external_id, limit=100)
        for _ in range(EVENT_PAGES):
            reached = False
            for event in page.data:
                if event.id == last:
                    reached = True
                    break
                out.append(event)
            if reached or not page.has_next_page():
                break
            page = page.get_next_page()
        out.reverse()
        if out:
            self._last_event[external_id] = out[-1].id
        return out

    def _status(self, job: Any, events: list[Any], checkpoints: list[Any]) -> JobStatus:
        state = STATES.get(job.status, "in_progress")
        mapped: list[JobEvent] = []
        metrics = self._metrics.setdefault(job.id, {})
        progress = self._progress.get(job.id)
        for e in events:
            data = e.data if isinstance(e.data, Mapping) else {}
            numbers = {
                k: float(v)
                for k, v in data.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
            step = int(numbers.pop("step")) if "step" in numbers else None
            total = numbers.pop("total_steps", None)
            if e.type == "metrics" or (step is not None and numbers):
                metrics.update(numbers)
                if step is not None and total:
                    progress = min(1.0, step / total)
            mapped.append(
                JobEvent(
                    at=datetime.fromtimestamp(e.created_at, UTC).isoformat(),
                    message=e.message,
                    step=step,
                    metrics=numbers if e.type == "metrics" else {},
                )
            )
        for cp in sorted(checkpoints, key=lambda c: c.step_number):
            metrics.update(
                {
                    k: float(v)
                    for k, v in cp.metrics.model_dump().items()
                    if isinstance(v, int | float) and k != "step"
                }
            )
        if state == "completed":
            progress = 1.0
        if progress is not None:
            self._progress[job.id] = progress
        error = None
        if state == "failed":
            error = (
                _scrub(job.error.message, self._client)
                if job.error
                else "the job failed (OpenAI gave no message)"
            )
        return JobStatus(
            external_id=job.id,
            state=state,  # type: ignore[arg-type]
            progress=progress,
            events=tuple(mapped),
            metrics=dict(metrics),
            trained_tokens=job.trained_tokens,
            error=error,
            result_ref=job.fine_tuned_model if state == "completed" else None,
        )

    def poll(self, external_id: str) -> JobStatus:
        client = self.client
        try:
            job = client.fine_tuning.jobs.retrieve(external_id)
            events = self._events(external_id)
            checkpoints = list(
                client.fine_tuning.jobs.checkpoints.list(external_id, limit=100).data
            )
        except openai.OpenAIError as exc:
            raise _translate(exc, f"poll of job {external_id}", client) from None
        return self._status(job, events, checkpoints)

    def cancel(self, external_id: str) -> JobStatus:
        """Cancel the job; a job already finished is left as it is and its state returned."""
        client = self.client
        try:
            job = client.fine_tuning.jobs.retrieve(external_id)
            if STATES.get(job.status) not in ("completed", "failed", "cancelled"):
                job = client.fine_tuning.jobs.cancel(external_id)
        except openai.OpenAIError as exc:
            raise _translate(exc, f"cancel of job {external_id}", client) from None
        return self._status(job, [], [])

    def collect(self, spec: JobSpec, status: JobStatus) -> ModelSpec:
        if status.state != "completed" or not status.result_ref:
            raise BackendError(
                f"openai: job {status.external_id} is {status.state} with no "
                "fine-tuned model; nothing to collect"
            )
        params = {
            k: v
            for k, v in spec.base.parameters.items()
            if k in ("temperature", "max_tokens", "top_p")
        }
        params.update(
            {
                "job_id": status.external_id,
                "dataset_version_id": spec.data.dataset_version_id,
                "base_model": spec.base.model_ref,
            }
        )
        return ModelSpec(
            backend=NAME,
            model_ref=status.result_ref,
            system_prompt=spec.base.system_prompt,
            parameters=params,
        )


# --- the answerer -----------------------------------------------------------------------------
def answer_price(config: BackendsConfig, model_ref: str) -> tuple[float, float]:
    """(input, output) USD per 1M tokens: the model, a fine-tune's base, else ``default``."""
    prices = config.openai_answer_price_per_1m_tokens_usd
    base = (
        model_ref.split(":")[1]
        if model_ref.startswith("ft:") and ":" in model_ref[3:]
        else model_ref
    )
    price = prices.get(model_ref) or prices.get(base) or prices.get("default") or {}
    return float(price.get("input", 0.0)), float(price.get("output", 0.0))


class OpenAIAnswerer:
    """Chat completions for one model version; ``parameters``: ``temperature``, ``max_tokens``,
    ``top_p``, ``tools``, and ``base_url`` (an OpenAI-compatible server of its own)."""

    def __init__(self, spec: ModelSpec, context: BackendContext) -> None:
        self.spec, self.context = spec, context
        self.cfg = _backends(context)
        base_url = spec.parameters.get("base_url")
        self.client = make_client(context, str(base_url) if base_url else None)

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer:
        sent: list[Any] = list(messages)
        if self.spec.system_prompt and not (
            sent and sent[0].get("role") in ("system", "developer")
        ):
            sent = [{"role": "system", "content": self.spec.system_prompt}, *sent]
        extra = {
            k: self.spec.parameters[k]
            for k in ("temperature", "max_tokens", "top_p", "tools", "seed")
            if k in self.spec.parameters
        }
        started = time.perf_counter()
        try:
            reply = self.client.chat.completions.create(
                model=self.spec.model_ref, messages=sent, **extra
            )
        except openai.OpenAIError as exc:
            raise _translate(
                exc, f"chat completion of {self.spec.model_ref}", self.client
            ) from None
        latency = (time.perf_counter() - started) * 1000.0
        if not reply.choices:
            raise BackendError(
                f"openai: chat completion of {self.spec.model_ref} returned no choice"
            )
        message = reply.choices[0].message
        calls = tuple(
            {
                "id": c.id,
                "type": "function",
                "function": {"name": c.function.name, "arguments": c.function.arguments},
            }
            for c in (message.tool_calls or [])
            if getattr(c, "function", None)
        )
        usage = reply.usage
        prompt = usage.prompt_tokens if usage else None
        completion = usage.completion_tokens if usage else None
        pin, pout = answer_price(self.cfg, self.spec.model_ref)
        cost = ((prompt or 0) * pin + (completion or 0) * pout) / 1e6
        return Answer(
            text=message.content or "",
            tool_calls=calls,
            latency_ms=latency,
            prompt_tokens=prompt,
            completion_tokens=completion,
            cost_usd=cost,
            details={"model": reply.model, "finish_reason": reply.choices[0].finish_reason},
        )


def make_trainer(context: BackendContext) -> OpenAITrainer:
    return OpenAITrainer(context)


def make_answerer(spec: ModelSpec, context: BackendContext) -> OpenAIAnswerer:
    if spec.backend != NAME:
        raise BackendError(f"openai: cannot answer for a {spec.backend} model")
    return OpenAIAnswerer(spec, context)
