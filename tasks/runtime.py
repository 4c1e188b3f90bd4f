"""What every task needs from its environment: settings, store, database, pseudonym key.

Tasks rebuild these from settings on whichever worker runs them rather than receiving them as
parameters: a store client or a session factory does not serialise, and a secret passed as a
parameter would be shown (Prefect masks ``SecretStr`` parameters to asterisks, so it would not
even work). Each is cached per process.
"""

from __future__ import annotations

import errno
import logging
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any

from prefect.task_runners import TaskRunner
from sqlalchemy.orm import Session, sessionmaker

from ratchet.config import RuntimeConfig
from ratchet.db import open_database
from ratchet.redaction import resolve_pseudonym_key
from ratchet.redaction.pseudonym import PseudonymKeyUnavailable
from ratchet.settings import Settings, get_settings
from ratchet.store import Store

PSEUDONYM_SECRET_BLOCK = "ratchet-pseudonym-key"  # noqa: S105 - a block's name, not a secret


def settings() -> Settings:
    return get_settings()


@lru_cache(maxsize=8)
def store_for(root: str, endpoint: str | None) -> Store:
    return Store(root, s3_endpoint_url=endpoint)


def store(s: Settings) -> Store:
    return store_for(s.store_root, s.s3_endpoint_url)


def sessions(s: Settings) -> sessionmaker[Session]:
    return open_database(s)


_block_value: str | None = None  # cached once found; a missing block is asked again next time


def _secret_block_value() -> str | None:
    """The key from the Prefect Secret block, or None when no such block exists.

    Only "no block of that name" lets resolution go on to the next source. Any other failure
    (the server down or erroring, a block that does not decode) raises
    :class:`PseudonymKeyUnavailable`: falling back to a key file would pseudonymise with
    another key, silently.
    """
    global _block_value
    if _block_value is None:
        from prefect.blocks.system import Secret
        from prefect.exceptions import ObjectNotFound

        try:
            _block_value = str(Secret.load(PSEUDONYM_SECRET_BLOCK).get())  # type: ignore[union-attr]
        except ValueError as exc:
            if isinstance(exc.__cause__, ObjectNotFound):  # no such block: the next source
                return None
            raise _unavailable(exc) from None
        except Exception as exc:
            raise _unavailable(exc) from None
    return _block_value


def _unavailable(exc: Exception) -> PseudonymKeyUnavailable:
    return PseudonymKeyUnavailable(
        f"the pseudonym key's Secret block {PSEUDONYM_SECRET_BLOCK!r} cannot be read "
        f"({type(exc).__name__}; is the Prefect server at PREFECT_API_URL up?). Stopped rather "
        f"than use another key; set RATCHET_PSEUDONYM_KEY or bring the server back."
    )


def pseudonym_key(s: Settings) -> bytes:
    """The shared HMAC key: environment, then a Secret block, then (local store only) a file."""
    if s.pseudonym_key is not None:
        return resolve_pseudonym_key(s)
    return resolve_pseudonym_key(s, secret_block_value=_secret_block_value())


# --- retries: transient infrastructure errors only ---------------------------------------------
# A task is retried when its error (or anything in its cause chain) is a connection or lock
# problem that a later attempt can outlive; bad data, a failed quality suite and config or
# usage errors fail at once, since a retry would fail the same way.
TRANSIENT_ERRNOS = frozenset({
    errno.ECONNRESET, errno.ECONNREFUSED, errno.ECONNABORTED, errno.ETIMEDOUT, errno.EPIPE,
    errno.EHOSTUNREACH, errno.ENETUNREACH, errno.ENETRESET, errno.EAGAIN,
})  # fmt: skip
_TRANSIENT_TEXT = re.compile(
    r"database is locked|database table is locked|lock timeout|lock wait timeout"
    r"|could not serialize access|deadlock detected|connection reset|connection refused"
    r"|server closed the connection|connection (?:was )?closed|broken pipe|timed out"
    r"|too many connections|(?:HTTP|status|response)(?: code)?:? ?5\d\d\b"
    r"|\b5(?:00|02|03|04)\b|SlowDown|ServiceUnavailable|InternalError|RequestTimeout",
    re.IGNORECASE,
)
# an OperationalError that names the schema is a bug or a missing migration, not a blip
_PERMANENT_OPERATIONAL = re.compile(
    r"no such (?:table|column)|syntax error|has no column", re.IGNORECASE
)


def _chain(exc: BaseException) -> list[BaseException]:
    seen: list[BaseException] = []
    cur: BaseException | None = exc
    while cur is not None and cur not in seen and len(seen) < 16:
        seen.append(cur)
        cur = cur.__cause__ or cur.__context__
    return seen


def _http_status(exc: BaseException) -> int | None:
    """The HTTP status an object-store client attached to its error, when it did."""
    for attr in ("status_code", "status", "http_status"):
        value = getattr(exc, attr, None)
        if isinstance(value, int):
            return value
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore ClientError
        status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        return status if isinstance(status, int) else None
    return None


def is_transient(exc: BaseException) -> bool:
    """Whether a retry may succeed: a lost connection, a lock timeout, a 5xx from a store.

    Any permanent error in the chain wins (bad input, failed quality suite, config): those are
    ``ValueError``s, :class:`~ratchet.ingest.pipeline.IngestError`,
    :class:`~ratchet.quality.DataQualityError` and the database's own conflict errors.
    """
    from ratchet.db.errors import DatabaseError
    from ratchet.quality import DataQualityError

    permanent: tuple[type[BaseException], ...] = (ValueError, DataQualityError, DatabaseError)
    try:
        from ratchet.ingest.pipeline import IngestError

        permanent += (IngestError,)
    except ImportError:  # pragma: no cover - the ingest core always imports
        pass
    chain = _chain(exc)
    if any(isinstance(e, permanent) for e in chain):
        return False
    for e in chain:
        text = str(e)
        if type(e).__name__ in ("OperationalError", "DisconnectionError", "InterfaceError"):
            return not _PERMANENT_OPERATIONAL.search(text)
        if isinstance(e, (ConnectionError, TimeoutError)):
            return True
        if isinstance(e, OSError) and e.errno in TRANSIENT_ERRNOS:
            return True
        status = _http_status(e)
        if status is not None:
            return status >= 500 or status == 429
        if isinstance(e, OSError) and e.errno is None and _TRANSIENT_TEXT.search(text):
            # pyarrow's S3 errors: OSError without an errno, the status in the message
            return True
    return False


def retry_transient(task: Any, task_run: Any, state: Any) -> bool:
    """Prefect ``retry_condition_fn``: retry a failed task run only on a transient error."""
    try:
        state.result()
    except Exception as exc:
        return is_transient(exc)
    return False


# backoff between attempts: 5, 20, 80 s (with jitter), enough for a lock or a restart to pass
RETRIES = 3
RETRY_DELAYS: list[float] = [5, 20, 80]
RETRY_JITTER = 0.5


# --- task runners: threads here, or a Dask cluster -------------------------------------------
class ScaleExtraMissing(RuntimeError):
    """``runtime.task_runner: dask`` without the ``scale`` extra installed."""


def task_runner(config: RuntimeConfig) -> TaskRunner[Any]:
    """The task runner ``runtime`` asks for, not started (use it as a context manager).

    ``threads``: Prefect's thread pool, bounded by ``runtime.max_workers`` (its default is
    unbounded). ``dask``: prefect-dask's runner on the cluster at ``runtime.dask_address``, or,
    when it is empty, on a ``LocalCluster`` of ``runtime.dask_workers`` processes with one thread
    each (the work is CPU-bound Python: threads would share one GIL) and no dashboard port to
    collide with. Workers rebuild settings, store and database from their own environment
    (:func:`settings`, :func:`store`, :func:`sessions`), so a cluster's workers need the same
    ``RATCHET_*`` variables (and credentials) as the process that starts the flow.
    """
    if config.task_runner == "threads":
        from prefect.task_runners import ThreadPoolTaskRunner

        return ThreadPoolTaskRunner(max_workers=config.max_workers)
    try:
        from prefect_dask import DaskTaskRunner
    except ImportError:
        raise ScaleExtraMissing(
            "runtime.task_runner is dask but prefect-dask is not installed: "
            "pip install 'agent-ratchet[scale]'"
        ) from None
    if config.dask_address:
        return DaskTaskRunner(address=config.dask_address)
    return DaskTaskRunner(
        cluster_class="distributed.LocalCluster",
        cluster_kwargs={
            "n_workers": config.dask_workers,
            "threads_per_worker": 1,
            "processes": True,
            "dashboard_address": None,
        },
    )


def wait_states(futures: list[Any]) -> list[Any]:
    """Wait for submitted task runs and return their final states, in submission order (a
    failed one does not stop the others: the flow reports every failure)."""
    for future in futures:
        future.wait()
    return [future.state for future in futures]


# --- one pipeline run per agent at a time: a Prefect global concurrency limit per agent ---------
AGENT_LIMIT_PREFIX = "ratchet-agent-"


class AgentBusy(RuntimeError):
    """Another pipeline run holds the agent's slot (policy ``refuse``, or ``wait`` timed out)."""


def agent_limit_name(agent: str) -> str:
    """The global concurrency limit of one agent: ``ratchet-agent-<agent id>``."""
    return f"{AGENT_LIMIT_PREFIX}{agent}"


def ensure_agent_limit(agent: str) -> str:
    """Create the agent's limit (1 slot) on the Prefect server when it does not exist yet;
    an operator's own setting of an existing limit (more slots, inactive) is left alone."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.actions import GlobalConcurrencyLimitCreate
    from prefect.exceptions import ObjectAlreadyExists, ObjectNotFound

    name = agent_limit_name(agent)
    with get_client(sync_client=True) as client:
        try:
            client.read_global_concurrency_limit_by_name(name)
        except ObjectNotFound:
            try:
                client.create_global_concurrency_limit(
                    GlobalConcurrencyLimitCreate(name=name, limit=1)
                )
            except ObjectAlreadyExists:  # another run created it first
                pass
    return name


@contextmanager
def agent_slot(agent: str, policy: str, wait_s: float) -> Iterator[None]:
    """Hold agent ``agent``'s slot for the block (``runtime.agent_concurrency``).

    ``off``: no limit. ``wait``: queue behind the run that holds it, for at most ``wait_s``
    seconds. ``refuse``: give up at once. Either way a run that does not get the slot raises
    :class:`AgentBusy` naming the agent and the limit (the caller turns that into a Cancelled
    state); a crash releases the slot when its lease runs out.
    """
    if policy == "off":
        yield
        return
    from prefect.concurrency.sync import concurrency

    name = ensure_agent_limit(agent)
    timeout = wait_s if policy == "wait" else 0.5
    try:
        cm = concurrency(name, occupy=1, timeout_seconds=timeout, strict=True)
        cm.__enter__()
    except TimeoutError:
        raise AgentBusy(
            f"agent {agent}: another pipeline run holds its slot (Prefect global concurrency "
            f"limit {name}); runtime.agent_concurrency is {policy}"
            + (f", gave up after {wait_s:g} s" if policy == "wait" else "")
        ) from None
    try:
        yield
    finally:
        cm.__exit__(None, None, None)


# --- logs: the core's `ratchet` loggers in the run's logs --------------------------------------
def route_core_logs(level: int = logging.INFO) -> None:
    """Send the core's ``ratchet.*`` records at ``level`` to the Prefect run's logs (the UI).

    ``PREFECT_LOGGING_EXTRA_LOGGERS=ratchet`` does this when it is set before Prefect starts
    (the CLI and the deployment set it); a worker or a test may have started Prefect without it,
    so a flow calls this at its start as well. Idempotent.
    """
    logger = logging.getLogger("ratchet")
    if logger.level == logging.NOTSET or logger.level > level:
        logger.setLevel(level)
    extra = logging.getLogger("prefect.extra")
    for handler in extra.handlers:
        if handler not in logger.handlers:
            logger.addHandler(handler)


# --- progress: a Prefect progress artifact, and any listener in this process (the CLI's bar) ---
ProgressListener = Callable[[str, float, str], None]
progress_listeners: list[ProgressListener] = []


class Progress:
    """One progress artifact for one piece of long work, updated as it goes (0-100)."""

    def __init__(self, key: str | None, description: str) -> None:
        self.key, self.description = key, description
        self.artifact_id: Any = None
        self.last = -1.0

    def update(self, percent: float, label: str = "") -> None:
        percent = max(0.0, min(100.0, float(percent)))
        if percent - self.last < 0.5 and percent < 100.0:
            return
        self.last = percent
        for listener in list(progress_listeners):
            listener(self.key or "", percent, label or self.description)
        if not _in_a_run():
            return
        try:
            from prefect.artifacts import create_progress_artifact, update_progress_artifact

            if self.artifact_id is None:
                self.artifact_id = create_progress_artifact(
                    percent, key=self.key, description=self.description
                )
            else:
                update_progress_artifact(self.artifact_id, percent)
        except Exception:  # outside a run (or a server hiccup): progress is best-effort
            logging.getLogger("ratchet.tasks").debug("progress artifact not updated")


def _in_a_run() -> bool:
    """Inside a Prefect flow or task run (an artifact has somewhere to go)."""
    from prefect.context import FlowRunContext, TaskRunContext

    return FlowRunContext.get() is not None or TaskRunContext.get() is not None


def estimate_lines(path: Path, sample_bytes: int = 1 << 20) -> int:
    """Lines in a (possibly gzipped) JSONL file, estimated from its first MiB, for progress."""
    import gzip

    size = path.stat().st_size
    if size == 0:
        return 0
    with path.open("rb") as raw:
        gz = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        if gz:
            raw.seek(-4, 2)
            size = int.from_bytes(raw.read(4), "little") or size  # ISIZE: uncompressed mod 2^32
            raw.seek(0)
            head = gzip.GzipFile(fileobj=raw).read(sample_bytes)
        else:
            head = raw.read(sample_bytes)
    if not head:
        return 0
    lines = head.count(b"\n") + (0 if head.endswith(b"\n") else 1)
    if len(head) >= size:
        return lines
    return max(1, round(lines * size / len(head)))


def batch_progress(path: Path, name: str) -> Callable[[Any], None]:
    """An ingest ``on_batch`` callback: the file's progress (lines read of its estimated lines)
    as a progress artifact on the task run, and to any listener (the CLI's bar)."""
    try:
        total = estimate_lines(path)
    except OSError:  # unreadable here: the ingest itself reports why
        total = 0
    progress = Progress(key=None, description=f"Ingest progress: {name}")
    progress.update(0.0, f"ingest {name}")

    def on_batch(report: Any) -> None:
        share = 100.0 * report.lines / total if total else 0.0
        progress.update(share, f"ingest {name}: {report.lines} lines")

    return on_batch
