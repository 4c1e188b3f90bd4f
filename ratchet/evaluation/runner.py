"""Answering eval cases: concurrently, rate limited, with a timeout and retries, and cached.

Answers are cached on (model version, input hash) in the store under
``evals/cache/<model_version_id>/part-<content-hash>.parquet`` (one content-addressed part per
run that paid for new answers; the same answers write the same file), so a rerun pays nothing
twice. Only successful answers are cached, after redaction: an answer of a remote model can
carry personal data, and nothing unredacted is ever written.

The pool is a ``ThreadPoolExecutor`` with ``evaluation.concurrency`` workers (answering is I/O
bound: a remote model, a loopback server). The rate limiter spaces call *starts* across all
workers. A call that outlives ``evaluation.timeout_s`` is abandoned (its thread finishes in the
background; backends set their own HTTP timeouts) and retried like a failure; a
:class:`BackendError` that is not ``retryable`` is not retried. Error messages are value-free:
the exception's type and, for a backend error (value-free by rule), its message.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from ratchet import schemas
from ratchet.backends.base import Answer, Answerer, BackendError
from ratchet.store import Store

logger = logging.getLogger(__name__)

CACHE_ROOT = "evals/cache"


def input_hash(messages: Sequence[Mapping[str, Any]]) -> str:
    """sha256 of the canonical JSON of a chat input (keys sorted, no whitespace)."""
    text = json.dumps(list(messages), sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def tool_calls_json(answer: Answer) -> str | None:
    calls = [dict(c) for c in answer.tool_calls or ()]
    return json.dumps(calls, sort_keys=True, separators=(",", ":")) if calls else None


def cache_dir(model_version_id: str) -> str:
    return f"{CACHE_ROOT}/{model_version_id}"


@dataclass(frozen=True)
class Outcome:
    """One case answered: the answer (redacted), where it came from, or a value-free error."""

    answer: Answer
    source: str  # answered | cached | error
    error: str | None = None
    attempts: int = 0


class AnswerCache:
    """The stored answers of one model version, read once, added to once per run."""

    def __init__(self, store: Store, model_version_id: str) -> None:
        self.store, self.model_version_id = store, model_version_id
        parts = store.list_files(cache_dir(model_version_id))
        table = store.read_tables(
            [p for p in parts if p.endswith(".parquet")], schemas.EVAL_ANSWER_CACHE
        )
        self.answers: dict[str, Answer] = {}
        for row in table.to_pylist():
            calls = json.loads(row["tool_calls"]) if row["tool_calls"] else []
            self.answers[row["input_hash"]] = Answer(
                text=row["answer"],
                tool_calls=tuple(calls),
                latency_ms=row["latency_ms"] or 0.0,
                cost_usd=row["cost_usd"] or 0.0,
            )
        self.new: dict[str, Answer] = {}

    def get(self, key: str) -> Answer | None:
        return self.answers.get(key)

    def put(self, key: str, answer: Answer) -> None:
        self.new[key] = answer

    def flush(self) -> str | None:
        """Write the answers paid for in this run as one part; returns its path (or None)."""
        if not self.new:
            return None
        rows = [
            {
                "model_version_id": self.model_version_id,
                "input_hash": k,
                "answer": a.text,
                "tool_calls": tool_calls_json(a),
                "latency_ms": a.latency_ms,
                "cost_usd": a.cost_usd,
            }
            for k, a in sorted(self.new.items())
        ]
        table = pa.Table.from_pylist(rows, schema=schemas.EVAL_ANSWER_CACHE)
        part = self.store.write_part(
            cache_dir(self.model_version_id), table, schemas.EVAL_ANSWER_CACHE
        )
        self.answers.update(self.new)
        self.new = {}
        return part.path


class RateLimiter:
    """Spaces call starts at least ``1 / per_s`` seconds apart, across threads."""

    def __init__(
        self,
        per_s: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_s if per_s else 0.0
        self.clock, self.sleep = clock, sleep
        self._next = 0.0
        self._lock = threading.Lock()

    def wait(self) -> None:
        if not self.interval:
            return
        with self._lock:
            now = self.clock()
            start = max(now, self._next)
            self._next = start + self.interval
        if start > now:
            self.sleep(start - now)


@dataclass(frozen=True)
class CallPolicy:
    concurrency: int = 4
    timeout_s: float = 120.0
    retries: int = 2
    retry_backoff_s: float = 0.5
    rate_limit_per_s: float | None = None

    @classmethod
    def from_config(cls, cfg: Any) -> CallPolicy:
        return cls(
            cfg.concurrency, cfg.timeout_s, cfg.retries, cfg.retry_backoff_s, cfg.rate_limit_per_s
        )


class CallTimeout(TimeoutError):
    pass


def _call(answerer: Answerer, messages: Sequence[Mapping[str, Any]], timeout_s: float) -> Answer:
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["answer"] = answerer.answer(messages)
        except BaseException as exc:
            box["error"] = exc

    started = time.perf_counter()
    worker = threading.Thread(target=target, daemon=True, name="eval-answer")
    worker.start()
    worker.join(timeout_s)
    if worker.is_alive():
        raise CallTimeout(f"no answer within evaluation.timeout_s={timeout_s}")
    if "error" in box:
        raise box["error"]
    answer: Answer = box["answer"]
    if not answer.latency_ms:  # a backend that does not time itself
        answer = Answer(
            answer.text,
            answer.tool_calls,
            (time.perf_counter() - started) * 1000,
            answer.prompt_tokens,
            answer.completion_tokens,
            answer.cost_usd,
            answer.details,
        )
    return answer


def _reason(exc: BaseException) -> str:
    if isinstance(exc, BackendError | CallTimeout):
        return f"{type(exc).__name__}: {exc}"
    return type(exc).__name__


def answer_all(
    answerer: Answerer,
    inputs: Sequence[Sequence[Mapping[str, Any]]],
    *,
    cache: AnswerCache,
    policy: CallPolicy,
    redact: Callable[[str], str],
    sleep: Callable[[float], None] = time.sleep,
) -> list[Outcome]:
    """Answer every input (same order), from the cache where it holds the answer.

    Redaction happens before anything is cached or returned. Failures become ``error``
    outcomes with an empty answer, never an exception: one bad case does not lose the run.
    """
    keys = [input_hash(m) for m in inputs]
    limiter = RateLimiter(policy.rate_limit_per_s, sleep=sleep)
    out: list[Outcome | None] = [None] * len(inputs)
    todo: list[int] = []
    for i, key in enumerate(keys):
        hit = cache.get(key)
        if hit is not None:
            out[i] = Outcome(hit, "cached")
        else:
            todo.append(i)
    # the same input twice in a suite is paid once
    first: dict[str, int] = {}
    for i in todo:
        first.setdefault(keys[i], i)

    def work(i: int) -> Outcome:
        last: BaseException | None = None
        for attempt in range(policy.retries + 1):
            if attempt:
                sleep(policy.retry_backoff_s * 2 ** (attempt - 1))
            limiter.wait()
            try:
                a = _call(answerer, inputs[i], policy.timeout_s)
            except Exception as exc:
                last = exc
                if isinstance(exc, BackendError) and not exc.retryable:
                    break
                continue
            text = redact(a.text or "")
            try:
                calls = tuple(json.loads(redact(tool_calls_json(a) or "[]")))
            except ValueError:  # a placeholder broke the JSON: keep the names, drop the values
                calls = tuple(
                    {
                        "type": "function",
                        "function": {
                            "name": redact(str((c.get("function") or {}).get("name") or "")),
                            "arguments": "{}",
                        },
                    }
                    for c in a.tool_calls
                )
            clean = Answer(
                text,
                calls,
                a.latency_ms,
                a.prompt_tokens,
                a.completion_tokens,
                a.cost_usd,
                a.details,
            )
            return Outcome(clean, "answered", attempts=attempt + 1)
        reason = _reason(last) if last else "unknown"
        logger.warning("an eval answer failed after %d attempt(s): %s", policy.retries + 1, reason)
        return Outcome(Answer(""), "error", reason, attempts=policy.retries + 1)

    unique = sorted(first.values())
    if unique:
        workers = max(1, min(policy.concurrency, len(unique)))
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="eval") as pool:
            done = dict(zip(unique, pool.map(work, unique), strict=True))
    else:
        done = {}
    for i in todo:
        got = done[first[keys[i]]]
        out[i] = (
            got if i == first[keys[i]] or got.source == "error" else Outcome(got.answer, "cached")
        )
        if got.source == "answered":
            cache.put(keys[i], got.answer)
    return [o for o in out if o is not None]
