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
6. the data-quality suite runs on what was written; only if it passes are the parts, their record
   keys and the source file committed to the ledger, in one transaction.

A crash anywhere before step 6 leaves files nobody reads (readers list parts from the ledger),
and a rerun writes the same bytes under the same names. A crash after it leaves a completed
source file that the rerun skips. The ledger's primary key on (kind, agent, record id) is the
last guard: a second writer cannot commit the same record twice.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy.orm import Session, sessionmaker

from ratchet.config import PipelineConfig
from ratchet.db import repo
from ratchet.ingest.adapters import from_openai_chat, looks_like_openai_chat
from ratchet.ingest.reader import Line, file_sha256, iter_batches
from ratchet.ingest.records import Parsed, Reject, TimeRules, parse_feedback, parse_interaction
from ratchet.quality import QualityReport, validate_frame
from ratchet.redaction import Redactor, pseudonymise_array
from ratchet.schemas import FEEDBACK, INTERACTIONS, QUARANTINE
from ratchet.store import Store, WrittenPart, feedback_dir, interactions_dir, quarantine_dir

Kind = Literal["interactions", "feedback"]
Format = Literal["auto", "canonical", "openai-chat"]
_RECORD_KIND = {"interactions": "interaction", "feedback": "feedback"}


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

    @property
    def time_rules(self) -> TimeRules:
        cfg = self.config.ingest
        earliest = datetime.fromisoformat(cfg.earliest_timestamp).replace(tzinfo=UTC)
        return TimeRules(earliest, self.now + timedelta(days=cfg.future_tolerance_days))


@dataclass
class FileReport:
    """Counts for one file: what came in, what was stored, what was not and why."""

    source_file: str
    name: str
    kind: str
    status: str = "ingested"  # ingested | already_ingested | quarantine_threshold
    lines: int = 0
    blank: int = 0
    records: int = 0  # valid records (interactions, or feedback events incl. inline ones)
    stored: Counter[str] = field(default_factory=Counter)  # per table
    skipped_stored: Counter[str] = field(default_factory=Counter)  # already stored, same content
    quarantined: Counter[str] = field(default_factory=Counter)  # per reason
    dropped_consent: int = 0
    skipped_tombstone: int = 0
    assumed_utc: int = 0
    pii_by_type: Counter[str] = field(default_factory=Counter)
    parts: list[str] = field(default_factory=list)
    quality: list[dict[str, Any]] = field(default_factory=list)

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
            "skipped_tombstone": self.skipped_tombstone,
            "assumed_utc": self.assumed_utc,
            "pii_by_type": dict(self.pii_by_type),
            "parts": list(self.parts),
            "quality": list(self.quality),
        }


@dataclass
class _Pending:
    """What a file wrote but has not committed yet."""

    parts: list[tuple[str, WrittenPart, str | None, date | None]] = field(default_factory=list)
    keys: dict[str, list[tuple[str, str]]] = field(default_factory=dict)  # path -> (id, hash)
    seen: dict[tuple[str, str, str], str] = field(default_factory=dict)  # (kind, agent, id)->hash
    frames: dict[str, list[pa.Table]] = field(default_factory=lambda: defaultdict(list))


def content_hash(row: dict[str, Any], key: bytes) -> str:
    """Keyed hash of a record's canonical content (before redaction, so two records that differ
    only in PII still differ; keyed, so the stored hash reveals nothing about the raw text)."""
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def derive_feedback_id(row: dict[str, Any], key: bytes) -> str:
    """An event given without an id gets one from its content: the same event twice is one."""
    return "fb_" + content_hash({k: row[k] for k in sorted(row) if k != "feedback_id"}, key)[:32]


def ingest_file(
    ctx: IngestContext,
    path: Path,
    kind: Kind = "interactions",
    fmt: Format = "auto",
    default_agent: str | None = None,
) -> FileReport:
    """Ingest one file; returns its report, or raises IngestError (nothing committed)."""
    source = file_sha256(path)
    name, _ = ctx.redactor.redact_text(path.name)
    report = FileReport(source_file=source, name=name, kind=kind)
    with ctx.sessions() as s, s.begin():
        _, should_process = repo.begin_source_file(
            s, file_id=source, kind=kind, name=name, size_bytes=path.stat().st_size,
            flow_run_id=ctx.flow_run_id,
        )  # fmt: skip
    if not should_process:
        report.status = "already_ingested"
        return report

    pending = _Pending()
    cfg = ctx.config.ingest
    for batch in iter_batches(path, cfg.batch_size, cfg.max_record_bytes):
        _ingest_batch(ctx, batch, kind, fmt, default_agent, source, report, pending)

    bad = sum(report.quarantined.values())
    valid_lines = report.lines - report.blank
    share = bad / valid_lines if valid_lines else 0.0
    over = share > cfg.max_quarantine_share
    if over:
        report.status = "quarantine_threshold"
    else:
        for table_name, frames in pending.frames.items():
            result = validate_frame(table_name, pa.concat_tables(frames))
            report.quality.append(result.summary())
            _raise_if_failed(result, report)
    with ctx.sessions() as s, s.begin():
        for table_name, part, agent, day in pending.parts:
            if over and table_name != "quarantine":
                continue
            record = repo.PartRecord(
                table_name=table_name, path=part.path, rows=part.rows,
                content_hash=part.content_hash, redaction_version=ctx.redactor.version,
                agent_id=agent, partition_date=day, source_file_id=source, bytes=part.bytes,
                schema_fingerprint=part.schema_fingerprint,
            )  # fmt: skip
            repo.record_part(s, record, pending.keys.get(part.path, ()))
            report.parts.append(part.path)
        if over:
            repo.fail_source_file(
                s, source, error=f"quarantined share {share:.1%} > {cfg.max_quarantine_share:.1%}"
            )
        else:
            repo.complete_source_file(s, source, lines=report.lines, counts=report.as_dict())
    if over:
        raise QuarantineThresholdExceeded(
            f"{report.name} ({source[:12]}): {bad} of {valid_lines} lines quarantined "
            f"({share:.1%} > ingest.max_quarantine_share {cfg.max_quarantine_share:.1%}); "
            f"reasons: {dict(report.quarantined)}. Its quarantine rows are stored; its records "
            f"are not."
        )
    return report


def _raise_if_failed(result: QualityReport, report: FileReport) -> None:
    if not result.success:
        from ratchet.quality import DataQualityError

        raise DataQualityError(
            f"data-quality suite {result.suite} failed on {report.name} "
            f"({report.source_file[:12]}): {', '.join(result.failed)}; nothing was committed",
            result,
        )


# --- one batch ------------------------------------------------------------------------------
def _ingest_batch(
    ctx: IngestContext,
    batch: list[Line],
    kind: Kind,
    fmt: Format,
    default_agent: str | None,
    source: str,
    report: FileReport,
    pending: _Pending,
) -> None:
    rules = ctx.time_rules
    rejects: list[tuple[int, str, Reject, bytes]] = []  # line, record kind, why, raw
    records: dict[str, list[tuple[int, Parsed, bytes]]] = {"interactions": [], "feedback": []}
    for line in batch:
        report.lines += 1
        if not line.data.strip():
            report.blank += 1
            continue
        own_kind = _RECORD_KIND[kind]
        try:
            if line.oversize:
                raise Reject("too_large", f"line longer than {ctx.config.ingest.max_record_bytes} bytes")
            try:
                text = line.data.decode("utf-8")
            except UnicodeDecodeError:
                raise Reject("not_utf8", "line is not valid UTF-8") from None
            try:
                obj = json.loads(text)
            except json.JSONDecodeError:
                raise Reject("not_json", "line is not valid JSON") from None
            except RecursionError:
                raise Reject("not_json", "line nests too deeply") from None
            if not isinstance(obj, dict):
                raise Reject("not_object", "line is JSON but not an object")
            if kind == "feedback":
                records["feedback"].append((line.number, parse_feedback(obj, rules, default_agent), line.data))
                continue
            if fmt == "openai-chat" or (fmt == "auto" and looks_like_openai_chat(obj)):
                obj = from_openai_chat(obj)
            parsed = parse_interaction(obj, rules, default_agent)
        except Reject as why:
            rejects.append((line.number, own_kind, why, line.data))
            continue
        records["interactions"].append((line.number, parsed, line.data))
        for event in parsed.feedback:  # inline feedback: its own records, same line number
            try:
                records["feedback"].append((line.number, parse_feedback(event, rules), line.data))
            except Reject as why:
                rejects.append((line.number, "feedback", why, line.data))

    for table_name in ("interactions", "feedback"):
        if records[table_name]:
            _store_records(ctx, table_name, records[table_name], source, report, pending, rejects)
    if rejects:
        _quarantine(ctx, rejects, source, report, pending)


def _store_records(
    ctx: IngestContext,
    table_name: str,
    items: list[tuple[int, Parsed, bytes]],
    source: str,
    report: FileReport,
    pending: _Pending,
    rejects: list[tuple[int, str, Reject, bytes]],
) -> None:
    record_kind = _RECORD_KIND[table_name]
    id_col = "interaction_id" if table_name == "interactions" else "feedback_id"
    key = ctx.pseudonym_key

    # consent, identity, content hash
    kept: list[tuple[int, Parsed, str]] = []
    for number, parsed, raw in items:
        row = parsed.row
        if table_name == "interactions" and row["consent"] is False:
            report.dropped_consent += 1
            continue
        if table_name == "feedback" and row["feedback_id"] is None:
            row["feedback_id"] = derive_feedback_id(row, key)
        kept.append((number, parsed, content_hash(row, key)))
        del raw
    report.records += len(items)
    if not kept:
        return

    # tombstones (by pseudonymised user and by interaction id) and the identity check
    by_agent: dict[str, list[int]] = defaultdict(list)
    for i, (_, parsed, _) in enumerate(kept):
        by_agent[parsed.row["agent_id"]].append(i)
    user_col = "user_id" if table_name == "interactions" else "annotator"
    pseudo = pseudonymise_array(pa.array([p.row[user_col] for _, p, _ in kept], pa.string()), key)
    accept: list[int] = []
    with ctx.sessions() as s:
        for agent, idx in by_agent.items():
            users = {pseudo[i].as_py() for i in idx} - {None}
            dead_users = repo.tombstoned(s, agent, "user", sorted(users)) if users else set()
            ids = sorted({kept[i][1].row["interaction_id"] for i in idx})
            dead_ids = repo.tombstoned(s, agent, "interaction", ids)
            record_ids = [kept[i][1].row[id_col] for i in idx]
            unseen = [r for r in record_ids if (record_kind, agent, r) not in pending.seen]
            stored = repo.lookup_keys(s, record_kind, agent, sorted(set(unseen))) if unseen else {}
            for i in idx:
                number, parsed, digest = kept[i]
                row = parsed.row
                if row["interaction_id"] in dead_ids or (
                    table_name == "interactions" and pseudo[i].as_py() in dead_users
                ):
                    report.skipped_tombstone += 1
                    continue
                k = (record_kind, agent, row[id_col])
                previous = pending.seen.get(k) or stored.get(row[id_col])
                if previous == digest:
                    report.skipped_stored[table_name] += 1
                    continue
                if previous is not None:
                    rejects.append(
                        (number, record_kind,
                         Reject("conflicting_duplicate", f"{id_col} already stored with other content"),
                         _raw_for(parsed)),
                    )  # fmt: skip
                    continue
                pending.seen[k] = digest
                accept.append(i)
    if not accept:
        return

    # build, redact, scan, write per (agent, date)
    now = ctx.now
    rows = []
    for i in accept:
        number, parsed, digest = kept[i]
        row = dict(parsed.row)
        row[user_col] = pseudo[i].as_py()
        row.update(
            content_hash=digest, source_file=source, source_line=number, ingested_at=now,
            timestamp_assumed_utc=parsed.assumed_utc, redaction_version=ctx.redactor.version,
            pii_residual=0,
        )  # fmt: skip
        rows.append(row)
        report.assumed_utc += parsed.assumed_utc
    schema = INTERACTIONS if table_name == "interactions" else FEEDBACK
    table = pa.Table.from_pylist(rows, schema=schema)
    redacted = ctx.redactor.redact_table(table)
    report.pii_by_type.update(redacted.totals)
    table = redacted.table.set_column(
        schema.get_field_index("pii_counts"), "pii_counts", redacted.pii_counts
    )
    table = table.set_column(
        schema.get_field_index("pii_residual"), "pii_residual", ctx.redactor.scan_table(table)
    )
    days = pc.strftime(table.column("timestamp"), format="%Y-%m-%d")
    agents = table.column("agent_id")
    groups: dict[tuple[str, str], list[int]] = defaultdict(list)
    for i, (a, d) in enumerate(zip(agents.to_pylist(), days.to_pylist(), strict=True)):
        groups[(a, d)].append(i)
    for (agent, day), idx in sorted(groups.items()):
        part_table = table.take(idx)
        directory = (interactions_dir if table_name == "interactions" else feedback_dir)(agent, day)
        part = ctx.store.write_part(directory, part_table, schema)
        pending.parts.append((table_name, part, agent, date.fromisoformat(day)))
        ids = part_table.column(id_col).to_pylist()
        hashes = part_table.column("content_hash").to_pylist()
        pending.keys[part.path] = list(zip(ids, hashes, strict=True))
        report.stored[table_name] += part_table.num_rows
        pending.frames[table_name].append(_quality_columns(table_name, part_table))


def _raw_for(parsed: Parsed) -> bytes:
    """The record as JSON (not its raw line, which may hold other records' inline feedback)."""
    return json.dumps(parsed.row, ensure_ascii=False, default=str).encode()


_QUALITY_COLUMNS = {
    "interactions": ["agent_id", "interaction_id", "timestamp", "response", "pii_residual"],
    "feedback": [
        "agent_id", "feedback_id", "interaction_id", "timestamp", "source", "rating", "thumb",
        "pii_residual",
    ],
    "quarantine": ["source_line", "reason", "redaction_version"],
}  # fmt: skip


def _quality_columns(table_name: str, table: pa.Table) -> pa.Table:
    """Only the columns the suite checks travel to it: cheap, and no text beyond what it needs."""
    return table.select(_QUALITY_COLUMNS[table_name])


def _quarantine(
    ctx: IngestContext,
    rejects: list[tuple[int, str, Reject, bytes]],
    source: str,
    report: FileReport,
    pending: _Pending,
) -> None:
    limit = ctx.config.ingest.quarantine_line_chars
    rows = []
    for number, record_kind, why, raw in rejects:
        text = raw[: limit * 4].decode("utf-8", errors="replace")[:limit]
        redacted, _ = ctx.redactor.redact_text(text)
        agent = _agent_hint(raw)
        rows.append(
            {
                "source_file": source,
                "source_name": report.name,
                "source_line": number,
                "record_kind": record_kind,
                "reason": why.reason,
                "detail": why.detail,
                "agent_id": agent,
                "raw_redacted": redacted,
                "redaction_version": ctx.redactor.version,
                "quarantined_at": ctx.now,
            }
        )
        report.quarantined[why.reason] += 1
    table = pa.Table.from_pylist(rows, schema=QUARANTINE)
    part = ctx.store.write_part(quarantine_dir(source), table, QUARANTINE)
    pending.parts.append(("quarantine", part, None, None))
    pending.frames["quarantine"].append(_quality_columns("quarantine", table))


def _agent_hint(raw: bytes) -> str | None:
    """The agent id of a rejected line when it is readable and safe, for filtering quarantine."""
    from ratchet.store import valid_agent_id

    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    agent = obj.get("agent_id") if isinstance(obj, dict) else None
    return agent if isinstance(agent, str) and valid_agent_id(agent) else None

