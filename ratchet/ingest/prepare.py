"""The CPU half of ingest, one batch at a time, with no I/O: parse, validate, redact, scan.

It needs nothing but the batch's lines and a :class:`PrepareSpec`, so it runs in worker
processes (``ProcessPoolExecutor``) as well as in process; everything it returns is already
redacted, so raw text never crosses a process boundary back to the writer. Decisions that need
the ledger (already stored? conflicting? tombstoned?) are left to the caller.
"""

from __future__ import annotations

import json
import re
from collections import Counter
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any, Literal

import numpy as np
import pyarrow as pa

from ratchet.config import PipelineConfig, RedactionConfig
from ratchet.ingest.adapters import from_openai_chat, looks_like_openai_chat
from ratchet.ingest.identity import IdGuard, content_hash, derive_feedback_id, id_values
from ratchet.ingest.reader import Line
from ratchet.ingest.records import (
    CONSENT_WITHDRAWN,
    Parsed,
    Reject,
    TimeRules,
    is_consent_withdrawal,
    parse_consent_withdrawal,
    parse_feedback,
    parse_interaction,
)
from ratchet.redaction import Redactor, pseudonymise, pseudonymise_array
from ratchet.schemas import FEEDBACK, INTERACTIONS, QUARANTINE
from ratchet.store import valid_agent_id

Kind = Literal["interactions", "feedback"]
Format = Literal[
    "auto", "canonical", "openai-chat", "otel-genai", "openai-stored", "langfuse", "langsmith"
]  # the names ratchet.ingest.adapters.FORMATS may hold
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
    key: bytes  # the pseudonymisation key (user ids, annotators, ids that hold PII)
    now: datetime  # the run's clock: only the accepted timestamp range, never a stored value
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
    # consent withdrawals: (agent or None for every agent, the user's pseudonym), never raw
    withdrawals: list[tuple[str | None, str]] = field(default_factory=list)


@lru_cache(maxsize=4)
def _redactor(cls: type[Redactor], config_json: str) -> Redactor:
    """One redactor per rule set per process (compiling the detectors is not free)."""
    return cls(RedactionConfig.model_validate_json(config_json))


def redactor_for(spec: PrepareSpec) -> Redactor:
    # A class is hashable; mypy reads Redactor.__hash__ as the instance method.
    return _redactor(spec.redactor_cls, spec.config.redaction.model_dump_json())  # type: ignore[arg-type]


# A lone UTF-16 surrogate can only come from a \\uD800-\\uDFFF escape (the line is valid UTF-8):
# this finds the lines worth walking; the walk decides.
_SURROGATE_ESCAPE = re.compile(rb"\\[uU][dD][89a-fA-F]")
# What a value the parser did not foresee may raise: the line is quarantined, the file goes on.
_VALUE_ERRORS = (ValueError, TypeError, OverflowError, RecursionError, UnicodeError, AttributeError)


def _has_lone_surrogate(obj: Any) -> bool:
    """Whether any string (key or value) holds a code point UTF-8 cannot encode."""
    stack = [obj]
    while stack:
        value = stack.pop()
        if isinstance(value, str):
            try:
                value.encode("utf-8")
            except UnicodeEncodeError:
                return True
        elif isinstance(value, dict):
            stack.extend(value.keys())
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return False


def _unforeseen(exc: Exception) -> Reject:
    """A value no rule foresaw: named by the error's type, never by the value."""
    return Reject("invalid_value", f"a value could not be read ({type(exc).__name__})")


def _parse_line(
    spec: PrepareSpec, line: Line, rules: TimeRules
) -> tuple[Parsed | None, list[Parsed], list[tuple[str, Reject]]]:
    """One line to (interaction or None, feedback events, rejections by record kind).

    Never raises for any input: each rule's rejection names its field, and a value no rule
    foresaw still becomes a rejection (``invalid_value``) rather than failing the file.
    """
    record = getattr(line, "record", None)  # a source's mapped record says its kind
    own = record or RECORD_KIND[spec.kind]
    try:
        refused = getattr(line, "refused", None)
        if refused is not None:  # a record the source could not map, with its reason
            raise Reject(*refused)
        if line.oversize:
            raise Reject(
                "too_large", f"line longer than {spec.config.ingest.max_record_bytes} bytes"
            )
        try:
            text = line.data.decode("utf-8")
        except UnicodeDecodeError:
            raise Reject("not_utf8", "line is not valid UTF-8") from None
        try:
            obj = json.loads(text)
        except json.JSONDecodeError:
            raise Reject("not_json", "line is not valid JSON") from None
        except ValueError:  # an integer past Python's int max str digits
            raise Reject("not_json", "line holds a number with too many digits") from None
        except RecursionError:
            raise Reject("not_json", "line nests too deeply") from None
        if not isinstance(obj, dict):
            raise Reject("not_object", "line is JSON but not an object")
        if _SURROGATE_ESCAPE.search(line.data) and _has_lone_surrogate(obj):
            raise Reject("not_utf8", "a string escapes a lone UTF-16 surrogate (not valid Unicode)")
        if own == "feedback":
            if is_consent_withdrawal(obj):  # split off by prepare_batch, never stored as feedback
                return None, [parse_consent_withdrawal(obj, spec.default_agent)], []
            return None, [parse_feedback(obj, rules, spec.default_agent)], []
        if spec.fmt == "openai-chat" or (spec.fmt == "auto" and looks_like_openai_chat(obj)):
            obj = from_openai_chat(obj)
        parsed = parse_interaction(obj, rules, spec.default_agent)
    except Reject as why:
        return None, [], [(own, why)]
    except _VALUE_ERRORS as exc:
        return None, [], [(own, _unforeseen(exc))]
    events, rejects = [], []
    for event in parsed.feedback:  # inline feedback: records of their own, same line
        try:
            events.append(parse_feedback(event, rules))
        except Reject as why:
            rejects.append(("feedback", why))
        except _VALUE_ERRORS as exc:
            rejects.append(("feedback", _unforeseen(exc)))
    return parsed, events, rejects


def prepare_batch(spec: PrepareSpec, lines: list[Line], fast: bool | None = None) -> PreparedBatch:
    """Parse, validate, redact and scan one batch; returns only redacted data and counts.

    Every non-blank line ends as stored rows or quarantine rows (or a consent drop), whatever
    it holds; nothing in the output depends on the clock, so the same batch gives the same
    bytes on a rerun. ``fast`` (default: ``ingest.fast_path``) lets the clean interaction lines
    take the vectorised path (:mod:`ratchet.ingest.fast`): the same result, sooner.
    """
    if spec.config.ingest.fast_path if fast is None else fast:
        from ratchet.ingest import fast as vectorised  # it builds on this module

        if vectorised.applies(spec):
            return vectorised.prepare_fast(spec, lines)
    out = PreparedBatch()
    rules = spec.time_rules
    items: dict[str, list[tuple[int, Parsed]]] = {"interactions": [], "feedback": []}
    rejects: list[tuple[int, str, Reject]] = []
    raw: dict[int, bytes] = {}
    # a source's file line may give several records: a line's own refusals show its own data
    raw_of_reject: dict[int, bytes] = {}
    for line in lines:
        out.lines += 1
        if not line.data.strip():
            out.blank += 1
            continue
        raw[line.number] = line.data
        parsed, events, bad = _parse_line(spec, line, rules)
        if events and events[0].row.get("event") == CONSENT_WITHDRAWN:
            row = events.pop(0).row
            out.withdrawals.append((row["agent_id"], pseudonymise(row["user_id"], spec.key)))
        if parsed is not None and parsed.row["consent"] is False and events:
            out.dropped_consent += len(events)  # no consent: its inline feedback goes too
            events = []
        if parsed is not None:
            items["interactions"].append((line.number, parsed))
        items["feedback"].extend((line.number, e) for e in events)
        for kind, why in bad:
            raw_of_reject[len(rejects)] = line.data
            rejects.append((line.number, kind, why))
    redactor = redactor_for(spec)
    for table_name, entries in items.items():
        if entries:
            out.records[table_name] += len(entries)
            table = _build_table(spec, table_name, entries, out, redactor, rejects)
            if table is not None:
                out.tables[table_name] = table
    order = sorted(range(len(rejects)), key=lambda i: rejects[i][0])  # file order (stable)
    out.quarantine = [
        quarantine_row(spec, redactor, n, kind, why, raw_of_reject.get(i, raw[n]))
        for i in order
        for n, kind, why in (rejects[i],)
    ]
    return out


def rows_to_table(
    rows: list[dict[str, Any]], schema: pa.Schema
) -> tuple[pa.Table, list[tuple[int, Reject]]]:
    """The rows as a table, and the rows pyarrow refused (index, reason): one bad row costs
    that row, not the batch. The reason names the column and its type, never the value."""
    try:
        return pa.Table.from_pylist(rows, schema=schema), []
    except (pa.ArrowException, *_VALUE_ERRORS):
        pass
    good, refused = [], []
    for i, row in enumerate(rows):
        try:
            pa.Table.from_pylist([row], schema=schema)
            good.append(row)
        except (pa.ArrowException, *_VALUE_ERRORS):
            refused.append((i, Reject("invalid_value", _refused_column(row, schema))))
    return pa.Table.from_pylist(good, schema=schema), refused


def _refused_column(row: dict[str, Any], schema: pa.Schema) -> str:
    for f in schema:
        try:
            pa.array([row.get(f.name)], f.type)
        except (pa.ArrowException, *_VALUE_ERRORS):
            return f"{f.name} does not fit its column ({f.type})"
    return "the record does not fit the table schema"


def _build_table(
    spec: PrepareSpec,
    table_name: str,
    entries: list[tuple[int, Parsed]],
    out: PreparedBatch,
    redactor: Redactor,
    rejects: list[tuple[int, str, Reject]],
) -> pa.Table | None:
    """Valid records to a redacted table: ids checked, people pseudonymised, text redacted,
    content hashes (and derived feedback ids) over the stored form, residual scan last."""
    kept = []
    for number, parsed in entries:
        if table_name == "interactions" and parsed.row["consent"] is False:
            out.dropped_consent += 1
        else:
            kept.append((number, parsed))
    guard = IdGuard(redactor, spec.key)
    guard.check(v for _, parsed in kept for v in id_values(parsed.row, table_name))
    rows = []
    for number, parsed in kept:
        row = {
            **guard.apply(parsed.row, table_name), "content_hash": "", "source_file": spec.source,
            "source_line": number, "timestamp_assumed_utc": parsed.assumed_utc,
            "redaction_version": spec.redaction_version, "pii_residual": 0,
        }  # fmt: skip
        if table_name == "feedback":
            row["feedback_id"] = row["feedback_id"] or ""  # derived from the stored form below
        rows.append(row)
    schema = SCHEMA[table_name]
    table, refused = rows_to_table(rows, schema)
    for i, why in refused:
        rejects.append((rows[i]["source_line"], RECORD_KIND[table_name], why))
    out.records[table_name] -= len(refused)
    if refused:
        skip = {i for i, _ in refused}
        rows = [r for i, r in enumerate(rows) if i not in skip]
    if not rows:
        return None
    out.assumed_utc += sum(r["timestamp_assumed_utc"] for r in rows)
    col = PSEUDONYM_COLUMN[table_name]
    table = table.set_column(
        schema.get_field_index(col), col, pseudonymise_array(table.column(col), spec.key)
    )
    redacted = redactor.redact_table(table)
    out.pii_by_type.update(redacted.totals)
    table = redacted.table.set_column(
        schema.get_field_index("pii_counts"), "pii_counts", redacted.pii_counts
    )
    table = _with_hashes(table, table_name, rows, redacted.pii_counts, guard.visible)
    return table.set_column(
        schema.get_field_index("pii_residual"), "pii_residual", redactor.scan_table(table)
    )


def _with_hashes(
    table: pa.Table, table_name: str, rows: list[dict[str, Any]], pii_counts: pa.MapArray,
    visible: dict[str, str],
) -> pa.Table:  # fmt: skip
    """Content hashes (and derived feedback ids) over the stored form of each row. A row the
    redactor did not change is its parsed dict (pseudonymised fields only enter the hash as
    present/absent), so only rows with hits are read back from the table."""
    offsets = pii_counts.offsets.to_numpy()
    hit = [int(i) for i in np.flatnonzero(offsets[1:] - offsets[:-1])]
    stored = dict(zip(hit, table.take(hit).to_pylist(), strict=True)) if hit else {}
    ids = table.column("feedback_id").to_pylist() if table_name == "feedback" else None
    hashes = []
    for i, row in enumerate(rows):
        content = stored.get(i, row)
        if ids is not None:
            if not ids[i]:
                ids[i] = derive_feedback_id(content, visible)
            content = {**content, "feedback_id": ids[i]}
        hashes.append(content_hash(content, table_name, visible))
    schema = table.schema
    table = table.set_column(
        schema.get_field_index("content_hash"), "content_hash", pa.array(hashes, pa.string())
    )
    if ids is not None:
        table = table.set_column(
            schema.get_field_index("feedback_id"), "feedback_id", pa.array(ids, pa.string())
        )
    return table


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
