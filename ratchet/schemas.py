"""One explicit pyarrow schema per stored table.

The schema is the contract that Parquet I/O, the data-quality suites and the database share: every
write goes through :func:`ratchet.store.Store.write_table` with one of these, so a column can
never appear, vanish or change type by accident. Table names are the snake_case nouns used for
files, suites and ORM tables alike.

Versioning: ``SCHEMA_VERSION`` is ``MAJOR.MINOR``. A record that declares a newer *major* than
the code knows is quarantined at ingest (it may mean something this code would misread); a newer
minor is accepted and its unknown fields land in ``extra``.

1.1 dropped the clock columns ``ingested_at`` and ``quarantined_at``: a row's bytes must depend
on its input only, so a rerun writes the same part under the same name. The time of arrival is
the ledger's (``parts.created_at``, ``record_keys.first_seen_at``). Parts written under 1.0 still
read: the store drops a column named in ``RETIRED_COLUMNS`` when it reads one.
"""

from __future__ import annotations

import pyarrow as pa

SCHEMA_VERSION = "1.1"
SCHEMA_MAJOR = 1

UTC_TS = pa.timestamp("us", tz="UTC")

# --- Chat messages (OpenAI roles, tool calls included) -------------------------------------------
TOOL_CALL = pa.struct(
    [
        pa.field("id", pa.string()),
        pa.field("type", pa.string()),
        pa.field(
            "function",
            pa.struct([pa.field("name", pa.string()), pa.field("arguments", pa.string())]),
        ),
    ]
)
MESSAGE = pa.struct(
    [
        pa.field("role", pa.string(), nullable=False),
        # Text content. Multi-part content is flattened to its text parts at ingest; non-text
        # parts are recorded in the record's ``extra``.
        pa.field("content", pa.string()),
        pa.field("name", pa.string()),
        pa.field("tool_call_id", pa.string()),
        pa.field("tool_calls", pa.list_(TOOL_CALL)),
    ]
)
MESSAGES = pa.list_(MESSAGE)
VALID_ROLES = frozenset({"system", "developer", "user", "assistant", "tool", "function"})

# Per-record PII counts by type, e.g. {"EMAIL": 2, "PHONE": 1}.
PII_COUNTS = pa.map_(pa.string(), pa.int32())

# Columns that older parts may hold and no schema has any more: dropped when read (see above).
RETIRED_COLUMNS = frozenset({"ingested_at", "quarantined_at"})

# Columns every redacted, stored record carries (provenance and the privacy audit trail).
_PROVENANCE = [
    pa.field("content_hash", pa.string(), nullable=False),  # identity of the content, hex sha256
    pa.field("source_file", pa.string(), nullable=False),  # sha256 of the source file
    pa.field("source_line", pa.int64(), nullable=False),  # 1-based line in the source file
    pa.field("timestamp_assumed_utc", pa.bool_(), nullable=False),  # input had no zone
    pa.field("redaction_version", pa.string(), nullable=False),
    pa.field("pii_counts", PII_COUNTS),
    pa.field("pii_residual", pa.int32(), nullable=False),  # residual-scan hits after redaction
    pa.field("extra", pa.string()),  # unknown input fields as a JSON object, redacted
]
# Not content: left out of the content hash (ratchet.ingest.identity). ``extra`` is content.
PROVENANCE_COLUMNS = frozenset(f.name for f in _PROVENANCE) - {"extra"}

INTERACTIONS = pa.schema(
    [
        pa.field("schema_version", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("conversation_id", pa.string()),
        pa.field("user_id", pa.string()),  # pseudonymised (keyed HMAC), never the raw id
        pa.field("timestamp", UTC_TS, nullable=False),
        pa.field("messages", MESSAGES, nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("response_tool_calls", pa.list_(TOOL_CALL)),
        pa.field("model_version", pa.string()),
        pa.field("tools_used", pa.list_(pa.string())),
        pa.field("sources", pa.list_(pa.string())),
        pa.field("latency_ms", pa.float64()),
        pa.field("prompt_tokens", pa.int64()),
        pa.field("completion_tokens", pa.int64()),
        pa.field("cost_usd", pa.float64()),
        pa.field("consent", pa.bool_()),
        pa.field("metadata", pa.string()),  # JSON object, redacted
        *_PROVENANCE,
    ],
    metadata={"table": "interactions", "schema_version": SCHEMA_VERSION},
)

FEEDBACK_SOURCES = ("user", "expert", "system")

FEEDBACK = pa.schema(
    [
        pa.field("schema_version", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("feedback_id", pa.string(), nullable=False),  # given, or sha256 of the content
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("timestamp", UTC_TS, nullable=False),  # when the feedback was given
        pa.field("source", pa.string(), nullable=False),  # user | expert | system
        pa.field("annotator", pa.string()),  # pseudonymised like user_id
        pa.field("rating", pa.int8()),  # 1..5
        pa.field("thumb", pa.int8()),  # +1 / -1
        pa.field("correction", pa.string()),  # the right answer, redacted
        pa.field("comment", pa.string()),  # redacted
        pa.field("aspects", pa.string()),  # JSON object, redacted
        *_PROVENANCE,
    ],
    metadata={"table": "feedback", "schema_version": SCHEMA_VERSION},
)

QUARANTINE_REASONS = (
    "not_utf8",
    "not_json",
    "not_object",
    "missing_field",
    "wrong_type",
    "bad_timestamp",
    "too_large",
    "newer_schema",
    "conflicting_duplicate",
    "invalid_value",
)

QUARANTINE = pa.schema(
    [
        pa.field("source_file", pa.string(), nullable=False),  # sha256 of the source file
        pa.field("source_name", pa.string()),  # the file's name as given (redacted)
        pa.field("source_line", pa.int64(), nullable=False),
        pa.field("record_kind", pa.string(), nullable=False),  # interaction | feedback
        pa.field("reason", pa.string(), nullable=False),  # one of QUARANTINE_REASONS
        # Which field and rule failed; never the offending value.
        pa.field("detail", pa.string()),
        pa.field("agent_id", pa.string()),
        pa.field("raw_redacted", pa.string()),  # the line, redacted, truncated
        pa.field("redaction_version", pa.string(), nullable=False),
    ],
    metadata={"table": "quarantine", "schema_version": SCHEMA_VERSION},
)

# --- Curated tables (datasets/<agent>/<kind>/<version>/data.parquet) -----------------------------
EVAL_CASES = pa.schema(
    [
        pa.field("case_id", pa.string(), nullable=False),  # sha256(agent_id, input), stable
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field("kind", pa.string(), nullable=False),  # golden | regression
        pa.field("split", pa.string(), nullable=False),  # holdout | train
        pa.field("fix_check", pa.bool_(), nullable=False),  # train-split regression case
        pa.field("input", MESSAGES, nullable=False),
        pa.field("expected", pa.string(), nullable=False),
        pa.field("expected_tool_calls", pa.list_(TOOL_CALL)),
        pa.field("production_answer", pa.string()),
        pa.field("status", pa.string(), nullable=False),  # active | retired
        pa.field("retired_reason", pa.string()),
        pa.field("feedback_ids", pa.list_(pa.string())),
        pa.field("topic", pa.string()),
        pa.field("first_seen", UTC_TS),
        pa.field("pii_residual", pa.int32(), nullable=False),
    ],
    metadata={"table": "eval_cases", "schema_version": SCHEMA_VERSION},
)

SFT_EXAMPLES = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("origin", pa.string(), nullable=False),  # golden | correction
        pa.field("split", pa.string(), nullable=False),  # train | validation
        pa.field("messages", MESSAGES, nullable=False),  # ends with the assistant answer
        pa.field("topic", pa.string()),
        pa.field("pii_residual", pa.int32(), nullable=False),
    ],
    metadata={"table": "sft_examples", "schema_version": SCHEMA_VERSION},
)

PREFERENCE_PAIRS = pa.schema(
    [
        pa.field("pair_id", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),  # train | validation
        pa.field("input", MESSAGES, nullable=False),
        pa.field("chosen", pa.string(), nullable=False),
        pa.field("rejected", pa.string(), nullable=False),
        pa.field("topic", pa.string()),
        pa.field("pii_residual", pa.int32(), nullable=False),
    ],
    metadata={"table": "preference_pairs", "schema_version": SCHEMA_VERSION},
)

BINARY_FEEDBACK = pa.schema(
    [
        pa.field("example_id", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("split", pa.string(), nullable=False),
        pa.field("prompt", MESSAGES, nullable=False),
        pa.field("completion", pa.string(), nullable=False),
        pa.field("label", pa.bool_(), nullable=False),  # desirable (thumb up) or not
        pa.field("pii_residual", pa.int32(), nullable=False),
    ],
    metadata={"table": "binary_feedback", "schema_version": SCHEMA_VERSION},
)

REVIEW_QUEUE = pa.schema(
    [
        pa.field("review_id", pa.string(), nullable=False),
        pa.field("agent_id", pa.string(), nullable=False),
        pa.field("interaction_id", pa.string(), nullable=False),
        pa.field(
            "reason", pa.string(), nullable=False
        ),  # thumbs_down_no_correction | conflict | ...
        pa.field("input", MESSAGES, nullable=False),
        pa.field("response", pa.string(), nullable=False),
        pa.field("feedback_ids", pa.list_(pa.string())),
        pa.field("pii_residual", pa.int32(), nullable=False),
    ],
    metadata={"table": "review_queue", "schema_version": SCHEMA_VERSION},
)

EVAL_RESULTS = pa.schema(
    [
        pa.field("eval_run_id", pa.string(), nullable=False),
        pa.field("case_id", pa.string(), nullable=False),
        pa.field("model_version_id", pa.string(), nullable=False),
        pa.field("answer", pa.string()),  # redacted before it is stored
        pa.field("scores", pa.map_(pa.string(), pa.float64())),  # scorer name -> score
        pa.field("passed", pa.bool_()),  # the primary metric at or above its pass threshold
        pa.field("latency_ms", pa.float64()),
        pa.field("cost_usd", pa.float64()),  # what the answer cost when it was first paid
        # --- evaluation (issue 11): the case's slices, where the answer came from, what scored it
        pa.field("suite", pa.string()),  # the eval_cases dataset version the case came from
        pa.field("kind", pa.string()),  # golden | regression
        pa.field("split", pa.string()),  # holdout | train
        pa.field("fix_check", pa.bool_()),  # train-split regression case: never generalisation
        pa.field("topic", pa.string()),
        pa.field("input_hash", pa.string()),  # sha256 of the canonical input messages
        pa.field("tool_calls", pa.string()),  # the answer's tool calls as canonical JSON
        pa.field("source", pa.string()),  # answered | cached | replayed | error
        pa.field("error", pa.string()),  # value-free reason when the answer failed
        pa.field("scorer_versions", pa.map_(pa.string(), pa.string())),  # name -> version
    ],
    metadata={"table": "eval_results", "schema_version": SCHEMA_VERSION},
)

#: Answers cached on (model version, input hash), so a rerun pays nothing twice
#: (``evals/cache/<model_version_id>/part-<content-hash>.parquet``).
EVAL_ANSWER_CACHE = pa.schema(
    [
        pa.field("model_version_id", pa.string(), nullable=False),
        pa.field("input_hash", pa.string(), nullable=False),
        pa.field("answer", pa.string(), nullable=False),  # redacted
        pa.field("tool_calls", pa.string()),
        pa.field("latency_ms", pa.float64()),
        pa.field("cost_usd", pa.float64()),
    ],
    metadata={"table": "eval_answer_cache", "schema_version": SCHEMA_VERSION},
)

TABLES: dict[str, pa.Schema] = {
    "interactions": INTERACTIONS,
    "feedback": FEEDBACK,
    "quarantine": QUARANTINE,
    "eval_cases": EVAL_CASES,
    "sft_examples": SFT_EXAMPLES,
    "preference_pairs": PREFERENCE_PAIRS,
    "binary_feedback": BINARY_FEEDBACK,
    "review_queue": REVIEW_QUEUE,
    "eval_results": EVAL_RESULTS,
    "eval_answer_cache": EVAL_ANSWER_CACHE,
}

CURATED_KINDS = (
    "eval_cases",
    "sft_examples",
    "preference_pairs",
    "binary_feedback",
    "review_queue",
)


def schema_for(table: str) -> pa.Schema:
    """The schema of a named table; a clear error (not a KeyError) for an unknown name."""
    try:
        return TABLES[table]
    except KeyError:
        raise ValueError(f"unknown table {table!r}; known: {sorted(TABLES)}") from None


def fingerprint(schema: pa.Schema) -> str:
    """A short, stable id of a schema's fields and types (metadata excluded)."""
    import hashlib

    text = ";".join(f"{f.name}:{f.type}:{f.nullable}" for f in schema)
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def text_columns(schema: pa.Schema) -> list[str]:
    """Dotted paths of every string leaf, lists included (``messages.content``).

    The redactor and the residual scan walk these, so a new text column is covered the day it is
    added to a schema.
    """

    out: list[str] = []

    def walk(prefix: str, t: pa.DataType) -> None:
        if pa.types.is_string(t) or pa.types.is_large_string(t):
            out.append(prefix)
        elif pa.types.is_list(t) or pa.types.is_large_list(t):
            walk(prefix, t.value_type)
        elif pa.types.is_struct(t):
            for i in range(t.num_fields):
                f = t.field(i)
                walk(f"{prefix}.{f.name}", f.type)

    for f in schema:
        walk(f.name, f.type)
    return out
