"""The table schemas: the contract that I/O, quality suites and the database share."""

from __future__ import annotations

import pyarrow as pa
import pytest

from ratchet import schemas
from ratchet.schemas import TABLES, fingerprint, schema_for, text_columns


@pytest.mark.parametrize("name", sorted(TABLES))
def test_every_table_names_itself_and_its_version(name: str) -> None:
    meta = TABLES[name].metadata
    assert meta[b"table"].decode() == name
    assert meta[b"schema_version"].decode() == schemas.SCHEMA_VERSION


@pytest.mark.parametrize("name", ["interactions", "feedback"])
def test_canonical_records_keep_identity_provenance_and_unknown_fields(name: str) -> None:
    s = TABLES[name]
    for col in (
        "schema_version",
        "agent_id",
        "interaction_id",
        "content_hash",
        "source_file",
        "source_line",
        "redaction_version",
        "pii_counts",
        "pii_residual",
        "extra",
    ):
        assert col in s.names, col
    assert s.field("timestamp").type == pa.timestamp("us", tz="UTC")
    assert not s.field("timestamp").nullable and not s.field("agent_id").nullable


def test_text_columns_reach_nested_message_and_tool_call_text() -> None:
    cols = text_columns(schemas.INTERACTIONS)
    for path in (
        "messages.content",
        "messages.tool_calls.function.arguments",
        "response",
        "response_tool_calls.function.arguments",
        "metadata",
        "extra",
        "sources",
    ):
        assert path in cols
    assert "latency_ms" not in cols and "timestamp" not in cols


def test_fingerprint_is_stable_and_sees_type_changes() -> None:
    assert fingerprint(schemas.FEEDBACK) == fingerprint(schemas.FEEDBACK)
    changed = schemas.FEEDBACK.set(
        schemas.FEEDBACK.get_field_index("rating"), pa.field("rating", pa.int32())
    )
    assert fingerprint(changed) != fingerprint(schemas.FEEDBACK)
    assert fingerprint(schemas.FEEDBACK.with_metadata({})) == fingerprint(schemas.FEEDBACK)


def test_unknown_table_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match="unknown table 'interaction'"):
        schema_for("interaction")


def test_quarantine_reasons_are_the_documented_set() -> None:
    assert set(schemas.QUARANTINE_REASONS) >= {
        "not_utf8",
        "not_json",
        "not_object",
        "missing_field",
        "wrong_type",
        "bad_timestamp",
        "too_large",
        "newer_schema",
        "conflicting_duplicate",
    }
