"""The vectorised path for interaction lines in the common, clean shape (issue 13).

The per-line path (:mod:`ratchet.ingest.records`, :func:`ratchet.ingest.prepare.prepare_batch`)
is the definition of what ingest stores; this module is a faster way to the *same bytes* for the
lines that need none of its leniency. A line takes this path only when a typed decoder
(msgspec, strict: no int-as-string, no parsed tool arguments, no multi-part content, no inline
feedback) accepts it and the scalar rules of ``records`` (reused, not restated: schema version,
agent id, timestamp range, id length, counts) pass; every other line — not UTF-8, not JSON, a
rejection, anything unusual — goes to the per-line path, alone, and its rows are merged back in
file order. So quarantine rows and their reasons always come from the per-line path.

What is vectorised: the table is built column by column (flat Python lists to Arrow, no row
dicts), ids are pseudonymised per leaf, redaction and the residual scan run on Arrow columns as
before, and the content hash's canonical JSON (:func:`ratchet.ingest.identity.content_hash`:
``json.dumps(sort_keys=True, ensure_ascii=False, separators=(",", ":"))`` of the stored row) is
assembled with Arrow string kernels, column by column, then hashed. The equivalence test
(``tests/unit/test_ingest_fastpath.py``) runs both paths on the same files and compares the bytes
of every part, the ledger keys and the quarantine rows.

Measured choice of decoder (``benchmarks/README.md``, "Vectorised path"): msgspec's typed decoder
over pyarrow's JSON reader with an explicit schema, because it validates line by line (one bad
line costs that line, not the block), keeps ``metadata`` and unknown fields as raw JSON (Arrow
has no "any JSON" type), and was the faster of the two on the generator's data.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections import Counter
from typing import Any, Literal

import msgspec
import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ratchet.ingest.identity import IdGuard
from ratchet.ingest.prepare import (
    _SURROGATE_ESCAPE,
    PreparedBatch,
    PrepareSpec,
    prepare_batch,
    redactor_for,
)
from ratchet.ingest.reader import Line
from ratchet.ingest.records import (
    INT64_MAX,
    INTERACTION_FIELDS,
    MAX_RECORD_ID_CHARS,
    Reject,
    TimeRules,
    agent_of,
    check_schema_version,
    parse_timestamp,
)
from ratchet.redaction import pseudonymise_array
from ratchet.schemas import INTERACTIONS, MESSAGE, PROVENANCE_COLUMNS, SCHEMA_VERSION, TOOL_CALL

_ABSENT = msgspec.Raw(b"null")  # the default of a raw field: compared by identity
Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class _Function(msgspec.Struct, gc=False):
    name: str
    arguments: str | None = None


class _ToolCall(msgspec.Struct, gc=False):
    function: _Function
    id: str | None = None
    type: str | None = None


class _Message(msgspec.Struct, gc=False):
    role: Role
    content: str | None = None
    name: str | None = None
    tool_call_id: str | None = None
    tool_calls: list[_ToolCall] | None = None


class _Interaction(msgspec.Struct, gc=False):
    """The clean shape. Unknown top-level fields are read apart (``_TOP``) and kept in
    ``extra``; the strict twin below refuses them, so most lines are decoded once."""

    interaction_id: str
    timestamp: str
    messages: list[_Message]
    response: str
    agent_id: str | None = None
    schema_version: str | None = None
    conversation_id: str | None = None
    user_id: str | None = None
    model_version: str | None = None
    tools_used: list[str] | None = None
    sources: list[str] | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    consent: bool | None = None
    metadata: msgspec.Raw = _ABSENT
    feedback: msgspec.Raw = _ABSENT


class _Exact(_Interaction, forbid_unknown_fields=True):
    """The clean shape with no unknown top-level field (nested objects still ignore theirs)."""


_EXACT = msgspec.json.Decoder(_Exact)
_DECODE = msgspec.json.Decoder(_Interaction)
_TOP = msgspec.json.Decoder(dict[str, msgspec.Raw])
_NULL = b"null"
_FLOAT_COLUMNS = ("latency_ms", "cost_usd")
_INT_COLUMNS = ("prompt_tokens", "completion_tokens")
_STR_COLUMNS = ("schema_version", "agent_id", "interaction_id", "conversation_id", "model_version")


class _Slow(Exception):
    """This line needs the per-line path (which decides whether and why it is refused)."""


def applies(spec: PrepareSpec) -> bool:
    """Whether a file's batches may use this path: canonical interaction files only (feedback
    files, openai-chat logs and source formats keep the per-line path)."""
    return spec.kind == "interactions" and spec.fmt in ("auto", "canonical")


def _json_text(data: bytes) -> str | None:
    """``metadata`` as the per-line path stores it: the object re-dumped with sorted keys."""
    if data == _NULL:
        return None
    value = json.loads(data)
    if not isinstance(value, dict):
        raise _Slow("metadata")
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


class _Columns:
    """Flat Python lists, one per leaf, filled row by row and turned into Arrow at the end."""

    def __init__(self) -> None:
        self.top: dict[str, list[Any]] = {
            c: []
            for c in (
                *_STR_COLUMNS, "user_id", "timestamp", "response", "tools_used", "sources",
                *_FLOAT_COLUMNS, *_INT_COLUMNS, "consent", "metadata", "extra", "source_line",
                "timestamp_assumed_utc",
            )
        }  # fmt: skip
        self.iso: list[str] = []  # canonical timestamps for the hash
        self.versions: set[str] = set()  # schema versions that passed their rule
        self.agents: set[str] = set()  # agent ids that passed theirs
        self.meta: dict[bytes, Any] = {}  # raw metadata -> its stored text (this batch only)
        self.msg_offsets = [0]
        self.msg: dict[str, list[Any]] = {
            k: [] for k in ("role", "content", "name", "tool_call_id", "tc_valid")
        }
        self.tc_offsets = [0]
        self.tc: dict[str, list[Any]] = {k: [] for k in ("id", "type", "name", "arguments")}

    def add(self, number: int, rec: _Interaction, rules: TimeRules, extra: str | None) -> bool:
        """Append one record (after the scalar rules); returns whether it is kept (consent)."""
        version, agent, iid = rec.schema_version, rec.agent_id, rec.interaction_id
        if version is not None and version not in self.versions:  # records' rules, reused
            check_schema_version({"schema_version": version})
            self.versions.add(version)
        if agent is None:
            raise _Slow("agent_id")  # the default agent, or a rejection: the per-line path's call
        if agent not in self.agents:
            agent_of({"agent_id": agent}, None)
            self.agents.add(agent)
        if not iid.strip() or len(iid) > MAX_RECORD_ID_CHARS:
            raise _Slow("interaction_id")
        ts, assumed = parse_timestamp(rec.timestamp, rules)
        if not rec.messages:
            raise _Slow("messages")
        if rec.feedback is not _ABSENT and bytes(rec.feedback) != _NULL:
            raise _Slow("feedback")
        for value in (rec.prompt_tokens, rec.completion_tokens):
            if value is not None and not 0 <= value <= INT64_MAX:
                raise _Slow("tokens")
        for real in (rec.latency_ms, rec.cost_usd):
            if real is not None and not math.isfinite(real):
                raise _Slow("number")
        raw = b"null" if rec.metadata is _ABSENT else bytes(rec.metadata)
        metadata = self.meta.get(raw, _ABSENT)
        if metadata is _ABSENT:  # metadata repeats (topic, locale, channel): dumped once a batch
            metadata = self.meta[raw] = _json_text(raw)
        if rec.consent is False:
            return False
        top = self.top
        top["schema_version"].append(rec.schema_version or SCHEMA_VERSION)
        top["agent_id"].append(agent)
        top["interaction_id"].append(iid)
        top["conversation_id"].append(rec.conversation_id)
        top["model_version"].append(rec.model_version)
        top["user_id"].append(rec.user_id)
        top["timestamp"].append(ts)
        top["response"].append(rec.response)
        top["tools_used"].append(rec.tools_used)
        top["sources"].append(rec.sources)
        top["latency_ms"].append(rec.latency_ms)
        top["cost_usd"].append(rec.cost_usd)
        top["prompt_tokens"].append(rec.prompt_tokens)
        top["completion_tokens"].append(rec.completion_tokens)
        top["consent"].append(rec.consent)
        top["metadata"].append(metadata)
        top["extra"].append(extra)
        top["source_line"].append(number)
        top["timestamp_assumed_utc"].append(assumed)
        self.iso.append(ts.isoformat())
        msg, tc = self.msg, self.tc
        for m in rec.messages:
            msg["role"].append(m.role)
            msg["content"].append(m.content)
            msg["name"].append(m.name)
            msg["tool_call_id"].append(m.tool_call_id)
            calls = m.tool_calls
            msg["tc_valid"].append(calls is not None)
            for c in calls or ():
                tc["id"].append(c.id)
                tc["type"].append(c.type or "function")
                tc["name"].append(c.function.name)
                tc["arguments"].append(c.function.arguments)
            self.tc_offsets.append(len(tc["id"]))
        self.msg_offsets.append(len(msg["role"]))
        return True

    def __len__(self) -> int:
        return len(self.top["source_line"])

    def id_values(self) -> list[str]:
        """Every non-empty id string (what :func:`ratchet.ingest.identity.id_values` visits)."""
        found = [
            *self.top["interaction_id"], *self.top["conversation_id"], *self.msg["tool_call_id"],
            *self.tc["id"], *self.tc["type"],
        ]  # fmt: skip
        return [v for v in found if isinstance(v, str) and v]


def _ids(values: list[Any], pseudonym: dict[str, str]) -> list[Any]:
    if not pseudonym:
        return values
    return [pseudonym.get(v, v) if isinstance(v, str) else v for v in values]


def _table(cols: _Columns, spec: PrepareSpec, guard: IdGuard) -> pa.Table:
    """The columns as an INTERACTIONS table: the same values ``rows_to_table`` would build."""
    p = guard.pseudonym
    tc = cols.tc
    calls = pa.StructArray.from_arrays(
        [
            pa.array(_ids(tc["id"], p), pa.string()),
            pa.array(_ids(tc["type"], p), pa.string()),
            pa.StructArray.from_arrays(
                [pa.array(tc["name"], pa.string()), pa.array(tc["arguments"], pa.string())],
                fields=list(TOOL_CALL.field("function").type),
            ),
        ],
        fields=list(TOOL_CALL),
    )
    msg = cols.msg
    valid = np.array(msg["tc_valid"], dtype=bool)
    tool_calls = pa.ListArray.from_arrays(
        pa.array(cols.tc_offsets, pa.int32()), calls, type=pa.list_(TOOL_CALL),
        mask=pa.array(~valid) if not valid.all() else None,
    )  # fmt: skip
    messages = pa.ListArray.from_arrays(
        pa.array(cols.msg_offsets, pa.int32()),
        pa.StructArray.from_arrays(
            [
                pa.array(msg["role"], pa.string()),
                pa.array(msg["content"], pa.string()),
                pa.array(msg["name"], pa.string()),
                pa.array(_ids(msg["tool_call_id"], p), pa.string()),
                tool_calls,
            ],
            fields=list(MESSAGE),
        ),
        type=INTERACTIONS.field("messages").type,
    )
    top = cols.top
    n = len(cols)
    values: dict[str, Any] = {
        **{c: top[c] for c in _STR_COLUMNS},
        "interaction_id": _ids(top["interaction_id"], p),
        "conversation_id": _ids(top["conversation_id"], p),
        "user_id": top["user_id"],
        "timestamp": top["timestamp"],
        "messages": messages,
        "response": top["response"],
        "response_tool_calls": pa.nulls(n, pa.list_(TOOL_CALL)),
        "tools_used": top["tools_used"],
        "sources": top["sources"],
        **{c: top[c] for c in (*_FLOAT_COLUMNS, *_INT_COLUMNS, "consent", "metadata")},
        "content_hash": [""] * n,
        "source_file": [spec.source] * n,
        "source_line": top["source_line"],
        "timestamp_assumed_utc": top["timestamp_assumed_utc"],
        "redaction_version": [spec.redaction_version] * n,
        "pii_counts": pa.nulls(n, INTERACTIONS.field("pii_counts").type),
        "pii_residual": np.zeros(n, dtype=np.int32),
        "extra": top["extra"],
    }
    arrays = [
        v if isinstance(v, pa.Array) else pa.array(v, f.type)
        for f, v in ((f, values[f.name]) for f in INTERACTIONS)
    ]
    return pa.Table.from_arrays(arrays, schema=INTERACTIONS)


# --- canonical JSON, column by column -------------------------------------------------------
# json.dumps(ensure_ascii=False) escapes these; every other character is written as it is.
_ESCAPES = [("\\", "\\\\"), ('"', '\\"'), ("\n", "\\n"), ("\r", "\\r"), ("\t", "\\t"),
            ("\b", "\\b"), ("\f", "\\f")]  # fmt: skip
_OTHER_CONTROL = "[\\x00-\\x07\\x0b\\x0e-\\x1f]"


def _jstr(arr: pa.Array) -> pa.Array:
    """A string array as JSON string literals (``json.dumps`` of each), nulls as ``null``."""
    out = arr
    for char, escaped in _ESCAPES:
        out = pc.replace_substring(out, char, escaped)
    if len(out) and pc.any(pc.match_substring_regex(out, _OTHER_CONTROL)).as_py():
        for code in [*range(0x00, 0x08), 0x0B, *range(0x0E, 0x20)]:
            out = pc.replace_substring(out, chr(code), f"\\u{code:04x}")
    out = pc.binary_join_element_wise('"', out, '"', "")
    return pc.fill_null(out, "null")


def _jscalar(arr: pa.Array) -> pa.Array:
    """Numbers and booleans as ``json.dumps`` writes them (floats by ``float.__repr__``)."""
    t = arr.type
    if pa.types.is_floating(t):
        return pa.array(["null" if v is None else repr(v) for v in arr.to_pylist()], pa.string())
    if pa.types.is_boolean(t):
        text = pc.if_else(arr, "true", "false")
    else:
        text = pc.cast(arr, pa.string())
    return pc.fill_null(text, "null")


def _jlist(arr: pa.Array, items: pa.Array) -> pa.Array:
    """A list array as JSON arrays, given its values already encoded (``items``)."""
    offsets = arr.offsets
    start = offsets[0].as_py()
    rebased = pc.subtract(offsets, start) if start else offsets
    joined = pc.binary_join(pa.ListArray.from_arrays(rebased, items), ",")
    out = pc.binary_join_element_wise("[", joined, "]", "")
    return pc.if_else(arr.is_valid(), out, "null")


def _jobject(fields: list[tuple[str, pa.Array]]) -> pa.Array:
    """An object per row from encoded field values, keys in sorted order."""
    parts: list[Any] = []
    for i, (key, value) in enumerate(sorted(fields, key=lambda kv: kv[0])):
        parts.append(("{" if i == 0 else ",") + json.dumps(key) + ":")
        parts.append(value)
    parts.append("}")
    return pc.binary_join_element_wise(*parts, "")


def _visible(arr: pa.Array, visible: dict[str, str]) -> pa.Array:
    """Id leaves as the hash sees them: a pseudonym by its id's redacted text."""
    if not visible:
        return arr
    return pa.array([visible.get(v, v) for v in arr.to_pylist()], pa.string())


def _jcalls(arr: pa.Array, visible: dict[str, str]) -> pa.Array:
    """``list<TOOL_CALL>`` as JSON (``{"function":{"arguments","name"},"id","type"}``)."""
    start, end = arr.offsets[0].as_py(), arr.offsets[-1].as_py()
    calls = arr.values.slice(start, end - start)
    fn = calls.field("function")
    items = _jobject(
        [
            ("function", _jobject([("name", _jstr(fn.field("name"))),
                                   ("arguments", _jstr(fn.field("arguments")))])),
            ("id", _jstr(_visible(calls.field("id"), visible))),
            ("type", _jstr(_visible(calls.field("type"), visible))),
        ]
    )  # fmt: skip
    return _jlist(arr, items)


def _jmessages(arr: pa.Array, visible: dict[str, str]) -> pa.Array:
    start, end = arr.offsets[0].as_py(), arr.offsets[-1].as_py()
    msgs = arr.values.slice(start, end - start)
    items = _jobject(
        [
            ("role", _jstr(msgs.field("role"))),
            ("content", _jstr(msgs.field("content"))),
            ("name", _jstr(msgs.field("name"))),
            ("tool_call_id", _jstr(_visible(msgs.field("tool_call_id"), visible))),
            ("tool_calls", _jcalls(msgs.field("tool_calls"), visible)),
        ]
    )
    return _jlist(arr, items)


def canonical_json(table: pa.Table, iso: list[str], visible: dict[str, str]) -> pa.Array:
    """What :func:`~ratchet.ingest.identity.content_hash` dumps for each row of an INTERACTIONS
    table, built column by column. ``iso`` holds each row's timestamp as ``isoformat()`` in UTC
    (the hash's form of a datetime)."""
    t = table.combine_chunks()
    fields: list[tuple[str, pa.Array]] = []
    for f in INTERACTIONS:
        if f.name in PROVENANCE_COLUMNS:
            continue
        col = t.column(f.name).chunk(0) if t.column(f.name).num_chunks else pa.array([], f.type)
        if f.name == "user_id":  # a person: in the hash only as present or not
            enc = pc.if_else(col.is_valid(), "true", "false")
        elif f.name == "timestamp":
            enc = _jstr(pa.array(iso, pa.string()))
        elif f.name == "messages":
            enc = _jmessages(col, visible)
        elif f.name == "response_tool_calls":
            enc = _jcalls(col, visible)
        elif pa.types.is_list(f.type):
            enc = _jlist(col, _jstr(col.values.slice(col.offsets[0].as_py())))
        elif pa.types.is_string(f.type):
            ids = f.name in ("interaction_id", "conversation_id")
            enc = _jstr(_visible(col, visible) if ids else col)
        else:
            enc = _jscalar(col)
        fields.append((f.name, enc))
    return _jobject(fields)


def content_hashes(table: pa.Table, iso: list[str], visible: dict[str, str]) -> pa.Array:
    """SHA-256 hex of each row's canonical JSON (equal to ``content_hash`` of the row)."""
    text = pc.cast(canonical_json(table, iso, visible), pa.binary())
    sha = hashlib.sha256
    return pa.array([sha(b).hexdigest() for b in text.to_pylist()], pa.string())


# --- the batch --------------------------------------------------------------------------------
def _decode(line: Line, spec: PrepareSpec) -> tuple[_Interaction, str | None]:
    """The typed record and its ``extra`` JSON, or :class:`_Slow`."""
    if line.oversize or getattr(line, "record", None) is not None:
        raise _Slow("line")
    if getattr(line, "refused", None) is not None or _SURROGATE_ESCAPE.search(line.data):
        raise _Slow("line")
    try:
        return _EXACT.decode(line.data), None
    except (msgspec.DecodeError, UnicodeDecodeError):
        pass
    try:  # unknown fields (kept in extra), or a line for the per-line path
        top = _TOP.decode(line.data)
        unknown = top.keys() - INTERACTION_FIELDS
        if not unknown:
            raise _Slow("decode")
        rec = _DECODE.decode(line.data)
    except (msgspec.DecodeError, UnicodeDecodeError):
        raise _Slow("decode") from None
    if spec.fmt == "auto" and "request" in unknown:
        raise _Slow("openai-chat")  # the per-line path decides whether it is a chat log
    extra = {k: json.loads(bytes(top[k])) for k in sorted(unknown)}
    return rec, json.dumps(extra, ensure_ascii=False, sort_keys=True, default=str)


def _split(spec: PrepareSpec, lines: list[Line]) -> tuple[_Columns, list[Line], int, int, int]:
    """(the clean records' columns, the lines for the per-line path, records, consent drops,
    blank lines)."""
    rules = spec.time_rules
    cols = _Columns()
    slow: list[Line] = []
    records = consent = blank = 0
    for line in lines:
        if not line.data.strip():
            blank += 1
            continue
        try:
            rec, extra = _decode(line, spec)
            kept = cols.add(line.number, rec, rules, extra)
        except (_Slow, Reject, ValueError, TypeError, OverflowError, RecursionError):
            slow.append(line)
            _rollback(cols)
            continue
        records += 1
        consent += not kept
    return cols, slow, records, consent, blank


def split_batch(spec: PrepareSpec, lines: list[Line]) -> tuple[list[int], list[Line]]:
    """Which lines this path takes (their numbers, consent drops included) and which it leaves
    to the per-line path."""
    slow = _split(spec, lines)[1]
    left = {id(line) for line in slow}
    taken = [ln.number for ln in lines if ln.data.strip() and id(ln) not in left]
    return taken, slow


def prepare_fast(spec: PrepareSpec, lines: list[Line]) -> PreparedBatch:
    """:func:`~ratchet.ingest.prepare.prepare_batch` for an interactions batch: clean lines
    through the vectorised path, the rest through the per-line path; the same result."""
    cols, slow, records, consent, blank = _split(spec, lines)
    out = prepare_batch(spec, slow, fast=False) if slow else PreparedBatch()
    out.lines += len(lines) - len(slow)  # the per-line path counted its own
    out.blank += blank
    out.records["interactions"] += records
    out.dropped_consent += consent
    if not len(cols):
        return out
    redactor = redactor_for(spec)
    guard = IdGuard(redactor, spec.key)
    guard.check(cols.id_values())
    table = _table(cols, spec, guard)
    out.assumed_utc += sum(cols.top["timestamp_assumed_utc"])
    schema = INTERACTIONS
    table = table.set_column(
        schema.get_field_index("user_id"), "user_id",
        pseudonymise_array(table.column("user_id"), spec.key),
    )  # fmt: skip
    redacted = redactor.redact_table(table)
    totals = Counter(out.pii_by_type)
    totals.update(redacted.totals)
    out.pii_by_type = Counter(dict(sorted(totals.items())))
    table = redacted.table.set_column(
        schema.get_field_index("pii_counts"), "pii_counts", redacted.pii_counts
    )
    table = table.set_column(
        schema.get_field_index("content_hash"), "content_hash",
        content_hashes(table, cols.iso, guard.visible),
    )  # fmt: skip
    table = table.set_column(
        schema.get_field_index("pii_residual"), "pii_residual", redactor.scan_table(table)
    )
    before = out.tables.get("interactions")
    if before is not None:  # rows of both paths, back in file order
        table = pa.concat_tables([before, table])
        table = table.take(pc.sort_indices(table.column("source_line")))
    out.tables["interactions"] = table.combine_chunks()
    return out


def _rollback(cols: _Columns) -> None:
    """Undo a partly appended record (a rule failed after the first append)."""
    n = len(cols.msg_offsets) - 1  # records whose messages are complete
    for values in cols.top.values():
        del values[n:]
    del cols.iso[n:]
    m = cols.msg_offsets[-1]
    for values in cols.msg.values():
        del values[m:]
    del cols.tc_offsets[m + 1 :]
    k = cols.tc_offsets[-1]
    for values in cols.tc.values():
        del values[k:]


__all__ = ["applies", "canonical_json", "content_hashes", "prepare_fast"]
