"""tasks.runtime: which errors a task retries, the line estimate behind ingest progress, and
progress reaching a listener (the CLI's bar) without a Prefect run."""

from __future__ import annotations

import errno
import gzip
import sqlite3
from pathlib import Path
from types import SimpleNamespace

import pytest
from sqlalchemy.exc import OperationalError

from ratchet.db.errors import ConflictError
from ratchet.ingest.pipeline import IngestError, QuarantineThresholdExceeded
from ratchet.quality import DataQualityError, QualityReport
from tasks import runtime


def _wrapped(outer: BaseException, inner: BaseException) -> BaseException:
    try:
        try:
            raise inner
        except BaseException as exc:
            raise outer from exc
    except BaseException as exc:  # the chained exception is the value
        return exc


class _S3Error(Exception):
    def __init__(self, status: int) -> None:
        super().__init__(f"status {status}")
        self.response = {"ResponseMetadata": {"HTTPStatusCode": status}}


TRANSIENT = [
    sqlite3.OperationalError("database is locked"),
    OperationalError("INSERT ...", {}, sqlite3.OperationalError("database is locked")),
    OperationalError("SELECT 1", {}, Exception("server closed the connection unexpectedly")),
    ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
    OSError(errno.ECONNRESET, "Connection reset by peer"),
    OSError(errno.ETIMEDOUT, "Connection timed out"),
    TimeoutError("QueuePool limit reached, connection timed out"),
    OSError("When uploading part: AWS Error SLOW_DOWN during UploadPart: HTTP response code: 503"),
    _S3Error(503),
    _S3Error(500),
    _wrapped(RuntimeError("write failed"), OSError(errno.ECONNRESET, "reset")),
]
PERMANENT = [
    IngestError("f.jsonl (abc): 3 of 4 lines quarantined"),
    QuarantineThresholdExceeded("too much quarantined"),
    DataQualityError("suite failed", QualityReport("interactions_suite", False, 3, 5)),
    ValueError("rating must be 1-5"),
    ConflictError("already promoted"),
    sqlite3.OperationalError("no such table: record_keys"),
    FileNotFoundError(errno.ENOENT, "No such file or directory: 'logs-500.jsonl'"),
    PermissionError(errno.EACCES, "Permission denied"),
    _S3Error(404),
    KeyError("messages"),
    # a permanent error anywhere in the chain wins over a transient cause
    _wrapped(IngestError("f.jsonl: cannot read the file"), OSError(errno.ECONNRESET, "reset")),
]


@pytest.mark.parametrize("exc", TRANSIENT, ids=lambda e: f"{type(e).__name__}:{e}"[:60])
def test_transient_errors_are_retried(exc: BaseException) -> None:
    assert runtime.is_transient(exc)


@pytest.mark.parametrize("exc", PERMANENT, ids=lambda e: f"{type(e).__name__}:{e}"[:60])
def test_permanent_errors_are_not_retried(exc: BaseException) -> None:
    assert not runtime.is_transient(exc)


def test_retry_condition_reads_the_failed_state() -> None:
    def state(exc: BaseException | None) -> SimpleNamespace:
        def result() -> None:
            if exc is not None:
                raise exc

        return SimpleNamespace(result=result)

    assert runtime.retry_transient(
        None, None, state(sqlite3.OperationalError("database is locked"))
    )
    assert not runtime.retry_transient(None, None, state(ValueError("bad data")))
    assert not runtime.retry_transient(None, None, state(None))


def test_tasks_carry_the_retry_policy() -> None:
    from tasks.curate import curate_agent_task
    from tasks.ingest import ingest_file_task

    for t in (curate_agent_task, ingest_file_task):
        assert t.retries == runtime.RETRIES >= 1
        assert t.retry_condition_fn is runtime.retry_transient
        assert list(t.retry_delay_seconds) == runtime.RETRY_DELAYS  # backoff: growing delays
        assert runtime.RETRY_DELAYS == sorted(runtime.RETRY_DELAYS)


def test_estimate_lines_plain_gzip_and_empty(tmp_path: Path) -> None:
    body = b"".join(b'{"i": %d, "pad": "%s"}\n' % (i, b"x" * (i % 50)) for i in range(30_000))
    plain = tmp_path / "a.jsonl"
    plain.write_bytes(body)
    gz = tmp_path / "a.jsonl.gz"
    gz.write_bytes(gzip.compress(body))
    small = tmp_path / "s.jsonl"
    small.write_bytes(body[:1000])
    empty = tmp_path / "e.jsonl"
    empty.write_bytes(b"")
    for f in (plain, gz):
        assert abs(runtime.estimate_lines(f) - 30_000) < 3_000  # within 10%
    assert runtime.estimate_lines(small) == body[:1000].count(b"\n") + 1
    assert runtime.estimate_lines(empty) == 0


def test_progress_reaches_listeners_outside_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[tuple[str, float, str]] = []
    monkeypatch.setattr(runtime, "progress_listeners", [lambda *a: seen.append(a)])
    p = runtime.Progress("curate-progress", "Curate")
    for pct in (0, 0.1, 50, 120):
        p.update(pct, "step")
    # tiny steps are skipped, values are clamped to 100, and nothing needed a server
    assert [(k, v) for k, v, _ in seen] == [
        ("curate-progress", 0.0),
        ("curate-progress", 50.0),
        ("curate-progress", 100.0),
    ]


def test_batch_progress_reports_lines_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    f = tmp_path / "x.jsonl"
    f.write_bytes(b"{}\n" * 400)
    seen: list[float] = []
    monkeypatch.setattr(runtime, "progress_listeners", [lambda k, v, label: seen.append(v)])
    on_batch = runtime.batch_progress(f, "x.jsonl")
    on_batch(SimpleNamespace(lines=100))
    on_batch(SimpleNamespace(lines=400))
    assert seen == [0.0, 25.0, 100.0]
