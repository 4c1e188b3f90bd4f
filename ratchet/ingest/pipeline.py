"""Ingest one input file, exactly once: parse → validate → redact → dedupe → write → commit.

The order is the privacy and the idempotency argument in one:

1. every line is parsed and validated; a bad line becomes a quarantine row whose text is
   *redacted before it is kept* and whose reason names the field and rule, never the value;
2. consent-false records are dropped (counted), tombstoned users and interactions skipped;
3. accepted records are redacted in batches (every text field), ``user_id`` pseudonymised, and
   the residual scan counts what the detectors still find, per row;
4. each record's identity (agent, id) is checked against records seen earlier in this file and
   against the database ledger: same content → skipped as already stored; different content →
   quarantined as a conflicting duplicate (the stored one stays);
5. parts are written under content-hashed names, *not yet referenced* by anything;
6. the data-quality suite runs on what the batch wrote; only if it passes are the batch's parts
   and their record keys committed to the ledger, in one short transaction; after the last
   batch the source file is marked completed.

A crash before a batch's commit leaves files nobody reads (readers list parts from the ledger),
and a rerun writes the same bytes under the same names. A crash after it leaves committed
batches whose records the rerun finds in the ledger and skips, so memory never has to hold a
whole file's keys. A completed source file is skipped whole. The ledger's primary key on
(kind, agent, record id) is the last guard: a second writer cannot commit a record twice.
"""

from __future__ import annotations

import json
import logging
import multiprocessing
import os
import threading
import time
from collections import Counter, defaultdict, deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path
from typing import Any, Literal, cast

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session, sessionmaker

from ratchet.config import PipelineConfig
from ratchet.db import repo
from ratchet.ingest.adapters import AmbiguousFormat
from ratchet.ingest.commit import commit_pending
from ratchet.ingest.inputs import display_name, sniff_kind
from ratchet.ingest.prepare import (
    ID_COLUMN,
    RECORD_KIND,
    SCHEMA,
    Format,
    Kind,
    PreparedBatch,
    PrepareSpec,
    prepare_batch,
    quarantine_row,
    quarantine_table,
)
from ratchet.ingest.ranges import ByteRange
from ratchet.ingest.reader import Line, file_sha256, iter_batches, iter_lines
from ratchet.ingest.records import Reject
from ratchet.ingest.sources.detect import source_format, source_lines
from ratchet.privacy.erasure import drop_tombstoned_quarantine, record_withdrawals
from ratchet.quality import (
    DataQualityError,
    QualityReport,
    second_opinion_report,
    validate_frame,
)
from ratchet.redaction import Redactor
from ratchet.schemas import QUARANTINE
from ratchet.second_opinion import (
    SecondOpinionResult,
    batch_sample_rows,
    merge_results,
    scan_written,
)
from ratchet.store import Store, WrittenPart, feedback_dir, interactions_dir, quarantine_dir

logger = logging.getLogger(__name__)
QuarantineKey = tuple[int, str, str]  # (source_line, record_kind, reason)


class IngestError(RuntimeError):
    """Ingest of a file stopped; the message names the file (by name and hash) and the reason."""


class QuarantineThresholdExceeded(IngestError):
    """Too large a share of a file was quarantined: its records are not committed."""


@dataclass(frozen=True)
class IngestContext:
    """Everything a file's ingest needs, resolved once per run at the edge."""

    store: Store
    sessions: sessionmaker[Session]
    config: PipelineConfig
    redactor: Redactor
    pseudonym_key: bytes
    now: datetime  # the run's clock: fixes the accepted timestamp range for the whole run
    flow_run_id: str | None = None
    # called after each committed batch with the file's report so far (a progress bar, an
    # artifact); counts only, never a value
    on_batch: Callable[[FileReport], None] | None = None


@dataclass
class FileReport:
    """Counts for one file: what came in, what was stored, what was not and why."""

    source_file: str
    name: str
    kind: str
    # ingested | already_ingested | quarantine_threshold | empty | not_records
    status: str = "ingested"
    lines: int = 0
    blank: int = 0
    records: int = 0  # valid records (interactions, or feedback events incl. inline ones)
    stored: Counter[str] = field(default_factory=Counter)  # per table
    skipped_stored: Counter[str] = field(default_factory=Counter)  # already stored, same content
    quarantined: Counter[str] = field(default_factory=Counter)  # per reason
    dropped_consent: int = 0
    consent_withdrawn: int = 0  # consent_withdrawn events: tombstones recorded, erasure pending
    skipped_tombstone: int = 0
    assumed_utc: int = 0
    pii_by_type: Counter[str] = field(default_factory=Counter)
    parts: list[str] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)
    second_opinion: dict[str, SecondOpinionResult] = field(default_factory=dict)  # per table

    def as_dict(self) -> dict[str, Any]:
        return {
            "source_file": self.source_file,
            "name": self.name,
            "kind": self.kind,
            "status": self.status,
            "lines": self.lines,
            "blank": self.blank,
            "records": self.records,
            "stored": dict(self.stored),
            "skipped_stored": dict(self.skipped_stored),
            "quarantined": dict(self.quarantined),
            "dropped_consent": self.dropped_consent,
            "consent_withdrawn": self.consent_withdrawn,
            "skipped_tombstone": self.skipped_tombstone,
            "assumed_utc": self.assumed_utc,
            "pii_by_type": dict(self.pii_by_type),
            "parts": list(self.parts),
            "quality": list(self.quality),
            "second_opinion": {t: r.as_dict() for t, r in self.second_opinion.items()},
        }


@dataclass
class _Pending:
    """What one batch wrote but has not committed yet (``seen``: its own ids, for duplicates
    inside the batch; earlier batches are already in the ledger)."""

    parts: list[tuple[str, WrittenPart, str | None, date | None]] = field(default_factory=list)
    keys: dict[str, list[tuple[str, ...]]] = field(
        default_factory=dict
    )  # path -> (id, hash[, iid])
    seen: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (kind, agent, id)->hash
    frames: dict[str, list[pa.Table]] = field(default_factory=lambda: defaultdict(list))
    # path -> the part's rows: a commit that loses a race rewrites the part without the records
    # the winner stored (ratchet.ingest.commit)
    tables: dict[str, pa.Table] = field(default_factory=dict)
    # quarantine rows an earlier attempt at this file already committed: counted, not rewritten
    quarantined_before: frozenset[QuarantineKey] = frozenset()


def _workers(configured: int) -> int:
    return configured or min(8, os.cpu_count() or 1)


def _die_with_parent(parent: int) -> None:
    """Worker initializer: exit when the ingesting process is gone (killed, OOM), instead of
    lingering as an orphan that holds its pipes open."""

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(0.5)
        os._exit(1)

    threading.Thread(target=watch, daemon=True, name="ratchet-parent-watch").start()


def _chunks(lines: Iterator[Line], size: int) -> Iterator[list[Line]]:
    batch: list[Line] = []
    for line in lines:
        batch.append(line)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


def _nbytes(batch: list[Line]) -> int:
    return sum(len(line.data) + 1 for line in batch)


def _prepared_batches(
    spec: PrepareSpec, path: Path, workers: int, lines: Iterator[Line] | None = None
) -> Iterator[tuple[PreparedBatch, int]]:
    """Prepared batches in file order, each with the bytes of its lines. The first batch is
    prepared in process; from the second on, batches go to a pool of worker processes, at most
    ``2 × workers`` in flight, so memory stays bounded by the batch size whatever the file size.
    ``lines``: a source file's mapped records (:func:`ratchet.ingest.sources.detect.source_lines`)
    instead of the file's lines."""
    cfg = spec.config.ingest
    if lines is None:
        batches = iter_batches(path, cfg.batch_size, cfg.max_record_bytes)
    else:
        batches = _chunks(lines, cfg.batch_size)
    first = next(batches, None)
    if first is None:
        return
    second = next(batches, None)
    if second is None or workers <= 1:
        yield prepare_batch(spec, first), _nbytes(first)
        if second is not None:
            yield prepare_batch(spec, second), _nbytes(second)
            for batch in batches:
                yield prepare_batch(spec, batch), _nbytes(batch)
        return
    context = multiprocessing.get_context("spawn")  # no fork under Prefect's threads
    with ProcessPoolExecutor(
        max_workers=workers, mp_context=context, initializer=_die_with_parent,
        initargs=(os.getpid(),),
    ) as pool:  # fmt: skip
        in_flight: deque[tuple[Future[PreparedBatch], int]] = deque(
            (pool.submit(prepare_batch, spec, b), _nbytes(b)) for b in (first, second)
        )
        for batch in batches:
            if len(in_flight) >= 2 * workers:
                done, nbytes = in_flight.popleft()
                yield done.result(), nbytes
            in_flight.append((pool.submit(prepare_batch, spec, batch), _nbytes(batch)))
        while in_flight:
            done, nbytes = in_flight.popleft()
            yield done.result(), nbytes


def ingest_file(
    ctx: IngestContext,
    path: Path,
    kind: Kind | Literal["auto"] = "interactions",
    fmt: Format = "auto",
    default_agent: str | None = None,
    source: str | None = None,
    byte_range: ByteRange | None = None,
) -> FileReport:
    """Ingest one file; returns its report, or raises (the file is then marked failed).

    ``byte_range``: only that range of an uncompressed JSONL file (a parallel task's share,
    :func:`ratchet.ingest.ranges.cut_ranges`). The caller then owns the file's ledger row: it
    calls ``begin_source_file`` before the ranges and ``complete_source_file`` after all of them
    succeeded; each range reads the quarantine rows already committed for the file (a retried
    range does not write them twice) and checks the quarantine share over its own lines.

    Each batch commits on its own once its data-quality suite passes, so memory is bounded by
    the batch size, not the file size; a rerun after a failure or a crash skips what earlier
    batches stored (same content, same keys) and carries on.

    ``kind="auto"`` tells interactions from feedback by the file's content
    (:func:`ratchet.ingest.inputs.sniff_kind`). Whatever the kind asked for, a JSON document
    that is not a record (a manifest) is skipped (status ``not_records``) and an empty file is
    reported as ``empty``: both with a warning and zero counts, neither recorded in the ledger
    nor a failure.
    ``source`` is the file's sha256 when the caller has it already (the flow names task runs
    by it), so the file is not hashed twice.

    The quarantine share (``ingest.max_quarantine_share``) is checked after each batch once
    ``ingest.min_lines_for_quarantine_share`` lines have been read, so one bad line in a short
    file never fails it. When the share stops a file, the batch that crossed it is still
    committed whole, good records and quarantine rows, after its quality suite passes ("the good
    lines are stored"); the batches after it are not read, and the file is marked failed. A
    retry (after raising the share, say) skips what is stored and never writes a quarantine row
    twice: rows an earlier attempt committed, keyed by (line, record kind, reason), are counted
    in the share again but not rewritten.
    """
    try:
        sniffed = sniff_kind(path)
        source = source or file_sha256(path)
        size = path.stat().st_size
    except OSError as exc:  # the message of an OSError holds the path: keep only its reason
        raise IngestError(
            f"{display_name(ctx.redactor, path.name)}: cannot read the file "
            f"({exc.strerror or type(exc).__name__})"
        ) from None
    name = display_name(ctx.redactor, path.name)
    kind_now = sniffed if kind == "auto" or sniffed in ("empty", "not_records") else kind
    if kind_now in ("empty", "not_records"):
        report = FileReport(source_file=source, name=name, kind=str(kind), status=kind_now)
        logger.warning(
            "%s (%s): %s, nothing to ingest", name, source[:12],
            "empty file" if kind_now == "empty" else "a JSON document that is not a record "
            "(a manifest?), skipped",
        )  # fmt: skip
        return report
    file_kind = cast(Kind, kind_now)
    try:  # a vendor export (a source) is mapped to records first; see ratchet.ingest.adapters
        source_name = source_format(path, fmt)
    except AmbiguousFormat as exc:
        raise IngestError(f"{name} ({source[:12]}): {exc}") from None
    report = FileReport(source_file=source, name=name, kind=file_kind)
    if byte_range is not None:
        should_process, attempts = True, 2  # the caller began the file; a range may be a retry
        if source_name:
            raise IngestError(f"{name} ({source[:12]}): a {source_name} export cannot be cut")
    else:
        with ctx.sessions() as s, s.begin():
            row, should_process = repo.begin_source_file(
                s, file_id=source, kind=file_kind, name=name, size_bytes=size,
                flow_run_id=ctx.flow_run_id,
            )  # fmt: skip
            attempts = row.attempts
    if not should_process:
        report.status = "already_ingested"
        logger.info("%s (%s): already ingested, skipped", name, source[:12])
        return report

    cfg = ctx.config.ingest
    spec = PrepareSpec(
        kind=file_kind, fmt="canonical" if source_name else fmt, default_agent=default_agent, source=source, source_name=name,
        config=ctx.config, key=ctx.pseudonym_key, now=ctx.now,
        redaction_version=ctx.redactor.version, redactor_cls=type(ctx.redactor),
    )  # fmt: skip
    before = _quarantined_before(ctx, source) if attempts > 1 else frozenset()
    quality: dict[str, QualityReport] = {}
    logger.info(
        "%s (%s): ingest started, %s%s, %d bytes", name, source[:12], file_kind,
        f" ({source_name})" if source_name else "", size,
    )  # fmt: skip
    try:
        for batch_no, (prepared, nbytes) in enumerate(
            _prepared_batches(
                spec, path, _workers(cfg.workers),
                source_lines(
                    path, source_name, source_name == fmt, cfg.max_record_bytes,
                    getattr(ctx.config, "sources", None),
                )
                if source_name
                else None
                if byte_range is None
                else iter_lines(
                    path, cfg.max_record_bytes, start=byte_range.start, end=byte_range.end,
                    first_line=byte_range.first_line,
                ),
            ),
            start=1,
        ):  # fmt: skip
            pending = _Pending(quarantined_before=before)
            _commit_side(ctx, spec, prepared, report, pending)
            bad = sum(report.quarantined.values())
            valid_lines = report.lines - report.blank
            share = bad / valid_lines if valid_lines else 0.0
            stop = (
                valid_lines >= cfg.min_lines_for_quarantine_share
                and share > cfg.max_quarantine_share
            )
            for table_name, frames in pending.frames.items():
                result = validate_frame(table_name, pa.concat_tables(frames))
                _merge_quality(quality, result)
                _raise_if_failed(result, report)
            written = [(t, part.path, part.rows) for t, part, _, _ in pending.parts]
            # a sample of what was written, sized by the file's budget (bytes as the share;
            # a vendor export's mapped records are not the file's bytes: full sample)
            so_rows = batch_sample_rows(
                ctx.config.quality, None if source_name else nbytes / max(size, 1)
            )
            for so in scan_written(ctx.store, ctx.config, written, so_rows).values():
                merge_results(report.second_opinion, so)
                result = second_opinion_report(so, ctx.config.quality)
                _merge_quality(quality, result)
                _raise_if_failed(result, report)
            _commit_batch(ctx, source, pending, report, spec)
            logger.info(
                "%s: batch %d committed: %d lines read, %d stored, %d quarantined so far", name,
                batch_no, report.lines, sum(report.stored.values()),
                sum(report.quarantined.values()),
            )  # fmt: skip
            if ctx.on_batch is not None:
                ctx.on_batch(report)
            if stop:
                report.status = "quarantine_threshold"
                raise QuarantineThresholdExceeded(
                    f"{report.name} ({source[:12]}): {bad} of {valid_lines} lines read so far "
                    f"quarantined ({share:.1%} > ingest.max_quarantine_share "
                    f"{cfg.max_quarantine_share:.1%}, applied from "
                    f"ingest.min_lines_for_quarantine_share {cfg.min_lines_for_quarantine_share} "
                    f"lines); reasons: {dict(report.quarantined)}. Ingest of the file stopped: "
                    f"the good records and quarantine rows read so far are stored, the rest of "
                    f"the file is not read."
                )
    except OSError as exc:
        error = IngestError(f"{name} ({source[:12]}): cannot read the file ({exc.strerror})")
        with ctx.sessions() as s, s.begin():
            repo.fail_source_file(s, source, error=str(error)[:2000])
        raise error from None
    except Exception as exc:
        with ctx.sessions() as s, s.begin():
            repo.fail_source_file(s, source, error=f"{type(exc).__name__}: {exc}"[:2000])
        raise
    finally:
        report.quality = [q.summary() for q in quality.values()]
    if byte_range is not None:
        return report  # the caller completes the file once every range is in
    with ctx.sessions() as s, s.begin():
        repo.complete_source_file(s, source, lines=report.lines, counts=report.as_dict())
    logger.info(
        "%s: ingested: %d lines, stored %s, quarantined %d", name, report.lines,
        ", ".join(f"{n} {t}" for t, n in sorted(report.stored.items())) or "nothing",
        sum(report.quarantined.values()),
    )  # fmt: skip
    return report


def _quarantined_before(ctx: IngestContext, source: str) -> frozenset[QuarantineKey]:
    """The quarantine rows earlier attempts at this file committed (a retry's duplicates)."""
    with ctx.sessions() as s:
        paths = [p.path for p in repo.source_file_parts(s, source, "quarantine")]
    if not paths:
        return frozenset()
    t = ctx.store.read_tables(paths, QUARANTINE, ["source_line", "record_kind", "reason"])
    return frozenset(zip(*(t.column(c).to_pylist() for c in t.column_names), strict=True))


def _commit_batch(
    ctx: IngestContext, source: str, pending: _Pending, report: FileReport,
    spec: PrepareSpec | None = None,
) -> None:  # fmt: skip
    """One short transaction: a batch's parts and their record keys, all or nothing, under the
    per-agent commit lock; exactly once under concurrent writers (:mod:`ratchet.ingest.commit`)."""
    commit_pending(ctx, source, pending, report, spec)


def _merge_quality(into: dict[str, QualityReport], result: QualityReport) -> None:
    """One report per suite for the whole file, whatever the number of batches."""
    seen = into.get(result.suite)
    if seen is None:
        into[result.suite] = result
        return
    seen.success = seen.success and result.success
    seen.rows += result.rows
    seen.failed = sorted(set(seen.failed) | set(result.failed))


def _raise_if_failed(result: QualityReport, report: FileReport) -> None:
    if not result.success:
        raise DataQualityError(
            f"data-quality suite {result.suite} failed on {report.name} "
            f"({report.source_file[:12]}): {', '.join(result.failed)}; the failing batch was not "
            f"committed",
            result,
        )


# --- one prepared batch --------------------------------------------------------------------
def _commit_side(
    ctx: IngestContext, spec: PrepareSpec, prepared: PreparedBatch, report: FileReport,
    pending: _Pending,
) -> None:  # fmt: skip
    """Ledger decisions for a prepared batch, then its parts written (not yet committed)."""
    report.lines += prepared.lines
    report.blank += prepared.blank
    report.records += sum(prepared.records.values())
    report.dropped_consent += prepared.dropped_consent
    report.assumed_utc += prepared.assumed_utc
    report.pii_by_type.update(prepared.pii_by_type)
    if prepared.withdrawals:  # before this batch's records are checked against tombstones
        report.consent_withdrawn += record_withdrawals(ctx.sessions, prepared.withdrawals)
    quarantine = drop_tombstoned_quarantine(
        ctx.sessions, list(prepared.quarantine), ctx.pseudonym_key
    )
    for table_name in ("interactions", "feedback"):
        table = prepared.tables.get(table_name)
        if table is not None:
            _store_new(ctx, spec, table_name, table, report, pending, quarantine)
    for row in quarantine:
        report.quarantined[row["reason"]] += 1
    quarantine = [
        r
        for r in quarantine
        if (r["source_line"], r["record_kind"], r["reason"]) not in pending.quarantined_before
    ]
    if quarantine:
        q = quarantine_table(quarantine)
        part = ctx.store.write_part(quarantine_dir(spec.source), q, QUARANTINE)
        pending.parts.append(("quarantine", part, None, None))
        pending.frames["quarantine"].append(q.select(_QUALITY_COLUMNS["quarantine"]))


def _store_new(
    ctx: IngestContext,
    spec: PrepareSpec,
    table_name: str,
    table: pa.Table,
    report: FileReport,
    pending: _Pending,
    quarantine: list[dict[str, Any]],
) -> None:
    """Keep the rows that are neither tombstoned nor already stored; write them by partition."""
    record_kind = RECORD_KIND[table_name]
    id_col = ID_COLUMN[table_name]
    agents = table.column("agent_id").to_pylist()
    ids = table.column(id_col).to_pylist()
    interaction_ids = table.column("interaction_id").to_pylist()
    hashes = table.column("content_hash").to_pylist()
    users = table.column("user_id").to_pylist() if table_name == "interactions" else None
    by_agent: dict[str, list[int]] = defaultdict(list)
    for i, agent in enumerate(agents):
        by_agent[agent].append(i)
    keep: list[int] = []
    with ctx.sessions() as s:
        for agent, idx in by_agent.items():
            dead_ids = repo.tombstoned(s, agent, "interaction", {interaction_ids[i] for i in idx})
            dead_users = (
                repo.tombstoned(s, agent, "user", {users[i] for i in idx} - {None})
                if users is not None
                else set()
            )
            unseen = {ids[i] for i in idx if (record_kind, agent, ids[i]) not in pending.seen}
            stored = repo.lookup_keys(s, record_kind, agent, unseen) if unseen else {}
            for i in idx:
                if interaction_ids[i] in dead_ids or (users is not None and users[i] in dead_users):
                    report.skipped_tombstone += 1
                    continue
                k = (record_kind, agent, ids[i])
                previous = pending.seen.get(k) or stored.get(ids[i])
                if previous == hashes[i]:
                    report.skipped_stored[table_name] += 1
                elif previous is not None:
                    row = table.slice(i, 1).to_pylist()[0]  # redacted already
                    why = Reject(
                        "conflicting_duplicate", f"{id_col} already stored with other content"
                    )
                    raw = json.dumps(row, ensure_ascii=False, default=str).encode()
                    quarantine.append(
                        quarantine_row(
                            spec, ctx.redactor, row["source_line"], record_kind, why, raw
                        )
                    )
                else:
                    pending.seen[k] = hashes[i]
                    keep.append(i)
    if not keep:
        return
    table = table.take(keep)
    schema = SCHEMA[table_name]
    days = pc.strftime(table.column("timestamp"), format="%Y-%m-%d").to_pylist()
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (agent, day) in enumerate(zip(table.column("agent_id").to_pylist(), days, strict=True)):
        groups[(agent, day)].append(i)
    directory_of = interactions_dir if table_name == "interactions" else feedback_dir
    for (agent, day), idx in sorted(groups.items()):
        part_table = table.take(idx)
        part = ctx.store.write_part(directory_of(agent, day), part_table, schema)
        pending.parts.append((table_name, part, agent, date.fromisoformat(day)))
        pending.tables[part.path] = part_table
        # feedback keys carry their interaction id: the ledger's feedback index (issue 13)
        key_cols = [id_col, "content_hash"] + (
            ["interaction_id"] if table_name == "feedback" else []
        )
        pending.keys[part.path] = list(
            zip(*(part_table.column(c).to_pylist() for c in key_cols), strict=True)
        )
        report.stored[table_name] += part_table.num_rows
        pending.frames[table_name].append(_quality_frame(table_name, part_table))


def _quality_frame(table_name: str, table: pa.Table) -> pa.Table:
    """The columns the suite checks, and no text: a file's frames are held until its suite runs,
    so they must stay small (ids, timestamps, counts) whatever the size of the records."""
    frame = table.select(_QUALITY_COLUMNS[table_name])
    if table_name == "interactions":
        frame = frame.append_column("response_length", pc.utf8_length(table.column("response")))
    return frame


_QUALITY_COLUMNS = {
    "interactions": ["agent_id", "interaction_id", "timestamp", "pii_residual"],
    "feedback": [
        "agent_id", "feedback_id", "interaction_id", "timestamp", "source", "rating", "thumb",
        "pii_residual",
    ],
    "quarantine": ["source_line", "reason", "redaction_version"],
}  # fmt: skip
