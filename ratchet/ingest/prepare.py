"""The CPU half of ingest, one batch at a time, with no I/O: parse, validate, redact, scan.

It needs nothing but the batch's lines and a :class:`PrepareSpec`, so it runs in worker
processes (``ProcessPoolExecutor``) as well as in process; everything it returns is already
redacted, so raw text never crosses a process boundary back to the writer. Decisions that need
the ledger (already stored? conflicting? tombstoned?) are left to the caller.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import pyarrow as pa

from ratchet.config import PipelineConfig, RedactionConfig
from ratchet.ingest.adapters import from_openai_chat, looks_like_openai_chat
from ratchet.ingest.reader import Line
from ratchet.ingest.records import Parsed, Reject, TimeRules, parse_feedback, parse_interaction
from ratchet.redaction import Redactor, pseudonymise_array
from ratchet.schemas import FEEDBACK, INTERACTIONS, QUARANTINE
from ratchet.store import valid_agent_id

Kind = Literal["interactions", "feedback"]
Format = Literal["auto", "canonical", "openai-chat"]
RECORD_KIND = {"interactions": "interaction", "feedback": "feedback"}
ID_COLUMN = {"interactions": "interaction_id", "feedback": "feedback_id"}
PSEUDONYM_COLUMN = {"interactions": "user_id", "feedback": "annotator"}
SCHEMA = {"interactions": INTERACTIONS, "feedback": FEEDBACK}


@dataclass(frozen=True)
class PrepareSpec:
    """Everything a worker needs for one file's batches (small and picklable)."""

    kind: Kind
    fmt: Format
    default_agent: str | None
    source: str  # sha256 of the source file
    source_name: str  # already redacted
    config: PipelineConfig
    key: bytes  # the pseudonymisation key (also keys the content hashes)
    now: datetime
    redaction_version: str
    redactor_cls: type[Redactor] = Redactor  # the caller's (a module-level class: it pickles)

    @property
    def time_rules(self) -> TimeRules:
        cfg = self.config.ingest
        earliest = datetime.fromisoformat(cfg.earliest_timestamp).replace(tzinfo=UTC)
        return TimeRules(earliest, self.now + timedelta(days=cfg.future_tolerance_days))


@dataclass
class PreparedBatch:
    """A batch after the CPU work: redacted tables, redacted quarantine rows, counts."""

    lines: int = 0
    blank: int = 0
    records: Counter[str] = field(default_factory=Counter)  # valid records per table
    dropped_consent: int = 0
    assumed_utc: int = 0
    pii_by_type: Counter[str] = field(default_factory=Counter)
    tables: dict[str, pa.Table] = field(default_factory=dict)  # redacted, full schema
    quarantine: list[dict[str, Any]] = field(default_factory=list)  # redacted rows


@lru_cache(maxsize=4)
def _redactor(cls: type[Redactor], config_json: str) -> Redactor:
    """One redactor per rule set per process (compiling the detectors is not free)."""
    return cls(RedactionConfig.model_validate_json(config_json))


def redactor_for(spec: PrepareSpec) -> Redactor:
    return _redactor(spec.redactor_cls, spec.config.redaction.model_dump_json())


def content_hash(row: dict[str, Any], key: bytes) -> str:
    """Keyed hash of a record's canonical content (before redaction, so two records that differ
    only in PII still differ; keyed, so the stored hash reveals nothing about the raw text)."""
    canonical = json.dumps(row, sort_keys=True, ensure_ascii=False, default=str)
    return hmac.new(key, canonical.encode(), hashlib.sha256).hexdigest()


def derive_feedback_id(row: dict[str, Any], key: bytes) -> str:
    """An event given without an id gets one from its content: the same event twice is one."""
    return "fb_" + content_hash({k: row[k] for k in sorted(row) if k != "feedback_id"}, key)[:32]


def _parse_line(
    spec: PrepareSpec, line: Line, rules: TimeRules
) -> tuple[Parsed | None, list[Parsed], list[tuple[str, Reject]]]:
    """One line to (interaction or None, feedback events, rejections by record kind)."""
    own = RECORD_KIND[spec.kind]
    try:
        if line.oversize:
            raise Reject("too_large", f"line longer than {spec.config.ingest.max_record_bytes} bytes")
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
        if spec.kind == "feedback":
            return None, [parse_feedback(obj, rules, spec.default_agent)], []
        if spec.fmt == "openai-chat" or (spec.fmt == "auto" and looks_like_openai_chat(obj)):
            obj = from_openai_chat(obj)
        parsed = parse_interaction(obj, rules, spec.default_agent)
    except Reject as why:
        return None, [], [(own, why)]
    events, rejects = [], []
    for event in parsed.feedback:  # inline feedback: records of their own, same line
        try:
            events.append(parse_feedback(event, rules))
        except Reject as why:
            rejects.append(("feedback", why))
    return parsed, events, rejects


def prepare_batch(spec: PrepareSpec, lines: list[Line]) -> PreparedBatch:
    """Parse, validate, redact and scan one batch; returns only redacted data and counts."""
    out = PreparedBatch()
    rules = spec.time_rules
    items: dict[str, list[tuple[int, Parsed]]] = {"interactions": [], "feedback": []}
    rejects: list[tuple[int, str, Reject, bytes]] = []
    for line in lines:
        out.lines += 1
        if not line.data.strip():
            out.blank += 1
            continue
        parsed, events, bad = _parse_line(spec, line, rules)
        if parsed is not None and parsed.row["consent"] is False and events:
            out.dropped_consent += len(events)  # no consent: its inline feedback goes too
            events = []
        if parsed is not None:
            items["interactions"].append((line.number, parsed))
        items["feedback"].extend((line.number, e) for e in events)
        rejects.extend((line.number, kind, why, line.data) for kind, why in bad)
    redactor = redactor_for(spec)
    for table_name, entries in items.items():
        if entries:
            out.records[table_name] += len(entries)
            table = _build_table(spec, table_name, entries, out, redactor)
            if table is not None:
                out.tables[table_name] = table
    out.quarantine = [
        quarantine_row(spec, redactor, number, kind, why, raw) for number, kind, why, raw in rejects
    ]
    return out


def _build_table(
    spec: PrepareSpec,
    table_name: str,
    entries: list[tuple[int, Parsed]],
    out: PreparedBatch,
    redactor: Redactor,
) -> pa.Table | None:
    rows = []
    for number, parsed in entries:
        row = parsed.row
        if table_name == "interactions" and row["consent"] is False:
            out.dropped_consent += 1
            continue
        if table_name == "feedback" and row["feedback_id"] is None:
            row["feedback_id"] = derive_feedback_id(row, spec.key)
        row = dict(row)
        row.update(
            content_hash=content_hash(row, spec.key), source_file=spec.source,
            source_line=number, ingested_at=spec.now, timestamp_assumed_utc=parsed.assumed_utc,
            redaction_version=spec.redaction_version, pii_residual=0,
        )  # fmt: skip
        out.assumed_utc += parsed.assumed_utc
        rows.append(row)
    if not rows:
        return None
    schema = SCHEMA[table_name]
    table = pa.Table.from_pylist(rows, schema=schema)
    col = PSEUDONYM_COLUMN[table_name]
    table = table.set_column(
        schema.get_field_index(col), col, pseudonymise_array(table.column(col), spec.key)
    )
    redacted = redactor.redact_table(table)
    out.pii_by_type.update(redacted.totals)
    table = redacted.table.set_column(
        schema.get_field_index("pii_counts"), "pii_counts", redacted.pii_counts
    )
    return table.set_column(
        schema.get_field_index("pii_residual"), "pii_residual", redactor.scan_table(table)
    )


def quarantine_row(
    spec: PrepareSpec, redactor: Redactor, number: int, record_kind: str, why: Reject, raw: bytes
) -> dict[str, Any]:
    """A quarantine row: the line redacted and truncated, the reason without the value."""
    limit = spec.config.ingest.quarantine_line_chars
    text = raw[: limit * 4].decode("utf-8", errors="replace")[:limit]
    redacted, _ = redactor.redact_text(text)
    return {
        "source_file": spec.source,
        "source_name": spec.source_name,
        "source_line": number,
        "record_kind": record_kind,
        "reason": why.reason,
        "detail": why.detail,
        "agent_id": _agent_hint(raw),
        "raw_redacted": redacted,
        "redaction_version": spec.redaction_version,
        "quarantined_at": spec.now,
    }


def _agent_hint(raw: bytes) -> str | None:
    """The agent id of a rejected line when it is readable and safe, to filter quarantine by."""
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError):
        return None
    agent = obj.get("agent_id") if isinstance(obj, dict) else None
    return agent if isinstance(agent, str) and valid_agent_id(agent) else None


def quarantine_table(rows: list[dict[str, Any]]) -> pa.Table:
    return pa.Table.from_pylist(rows, schema=QUARANTINE)
