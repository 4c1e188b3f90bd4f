"""Record-level ingest hardening (issue 8): inline feedback, values that must not fail a file,
identifiers that hold PII, key-independent content hashes and byte-identical reruns."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from ratchet.config import PipelineConfig
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.ingest.prepare import (
    PreparedBatch,
    PrepareSpec,
    prepare_batch,
    quarantine_table,
)
from ratchet.ingest.reader import Line
from ratchet.redaction import Redactor
from ratchet.schemas import FEEDBACK, INTERACTIONS, QUARANTINE, SCHEMA_VERSION
from ratchet.settings import get_settings
from ratchet.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
KEY = b"k" * 32
OTHER_KEY = b"z" * 32
CONFIG = PipelineConfig.model_validate({"ingest": {"batch_size": 100, "max_quarantine_share": 1.0}})
REDACTOR = Redactor(CONFIG.redaction)


def interaction(i: int | str, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "interaction_id": f"int-{i}",
        "agent_id": "shop-assistant",
        "timestamp": "2026-11-02T10:00:00Z",
        "messages": [
            {"role": "system", "content": "You are a shop assistant."},
            {"role": "user", "content": "Where is my order?"},
        ],
        "response": "It ships tomorrow.",
        "user_id": "cust-1",
    }
    rec.update(over)
    return rec


def spec(kind: str = "interactions", *, key: bytes = KEY, now: datetime = NOW) -> PrepareSpec:
    return PrepareSpec(
        kind=kind, fmt="auto", default_agent=None, source="f" * 64, source_name="t.jsonl",
        config=CONFIG, key=key, now=now, redaction_version=REDACTOR.version,
    )  # fmt: skip


def lines(*items: Any) -> list[Line]:
    out = []
    for n, item in enumerate(items, 1):
        data = (
            item
            if isinstance(item, bytes)
            else (item if isinstance(item, str) else json.dumps(item)).encode()
        )
        out.append(Line(n, data, False))
    return out


def rows(batch: PreparedBatch, table: str) -> list[dict[str, Any]]:
    t = batch.tables.get(table)
    return [] if t is None else t.to_pylist()


# --- 1. inline feedback --------------------------------------------------------------------------
def test_inline_feedback_without_timestamp_takes_the_interactions() -> None:
    line = interaction(1, feedback={"thumb": 1, "rating": 5})
    out = prepare_batch(spec(), lines(line))
    assert out.quarantine == []
    [i] = rows(out, "interactions")
    [fb] = rows(out, "feedback")
    assert fb["timestamp"] == i["timestamp"]
    assert (fb["interaction_id"], fb["agent_id"], fb["thumb"], fb["rating"]) == (
        "int-1",
        "shop-assistant",
        1,
        5,
    )


def test_a_broken_inline_event_is_quarantined_alone_and_the_interaction_stored() -> None:
    line = interaction(
        1, feedback=[{"thumb": 7}, 5, {"rating": 4, "timestamp": "2026-11-02T10:01:00Z"}]
    )
    out = prepare_batch(spec(), lines(line, interaction(2, feedback="great")))
    assert [r["interaction_id"] for r in rows(out, "interactions")] == ["int-1", "int-2"]
    assert [r["rating"] for r in rows(out, "feedback")] == [4]
    assert sorted((q["source_line"], q["record_kind"], q["reason"]) for q in out.quarantine) == [
        (1, "feedback", "invalid_value"), (1, "feedback", "wrong_type"), (2, "feedback", "wrong_type"),
    ]  # fmt: skip


# --- 2. no value fails a file --------------------------------------------------------------------
BIG = "1" * 5000
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
BAD_LINES = [
    (interaction(1, prompt_tokens=2**63), "invalid_value"),
    (interaction(1, completion_tokens=2**70), "invalid_value"),
    (json.dumps(interaction(1)).replace('"cust-1"', BIG), "not_json"),  # past int max str digits
    (
        json.dumps(interaction(1, latency_ms=0)).replace(
            '"latency_ms": 0', '"latency_ms": 1' + "0" * 400
        ),
        "invalid_value",
    ),
    (
        json.dumps(interaction(1, cost_usd=0)).replace('"cost_usd": 0', '"cost_usd": 1e999'),
        "invalid_value",
    ),
    (
        json.dumps(interaction(1, timestamp=0)).replace(
            '"timestamp": 0', '"timestamp": 1' + "0" * 400
        ),
        "bad_timestamp",
    ),
    (
        json.dumps(interaction(1, timestamp=0)).replace('"timestamp": 0', '"timestamp": NaN'),
        "bad_timestamp",
    ),
    (
        interaction(
            1, response={"role": "assistant", "content": None, "tool_calls": [{**CALL, "type": 5}]}
        ),
        "wrong_type",
    ),
    (
        interaction(
            1,
            response={
                "role": "assistant",
                "content": None,
                "tool_calls": [{**CALL, "type": {"a": [1]}}],
            },
        ),
        "wrong_type",
    ),
    (interaction(1, messages=[{"role": "user", "content": "x", "name": {"a": 1}}]), "wrong_type"),
    # an object that is not an assistant message would be stored as an empty answer
    (interaction(1, response={"text": "Your order has shipped."}), "wrong_type"),
    (interaction(1, response={"role": "user", "content": "hi"}), "wrong_type"),
    (
        interaction(1, messages=[{"role": "user", "content": "x", "tool_call_id": [1]}]),
        "wrong_type",
    ),
    (interaction(1, response="ok \ud800 there"), "not_utf8"),
    (interaction(1, metadata={"\udfff": 1}), "not_utf8"),
    ("[" * 100_000 + "]" * 100_000, "not_json"),
    ('{"a": ' * 5_000 + "1" + "}" * 5_000, "not_json"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES)
def test_no_value_fails_the_batch(line: Any, reason: str) -> None:
    out = prepare_batch(spec(), lines(interaction(0), line))
    assert [r["interaction_id"] for r in rows(out, "interactions")] == ["int-0"]
    assert [(q["source_line"], q["record_kind"], q["reason"]) for q in out.quarantine] == [
        (2, "interaction", reason)
    ]
    quarantine_table(out.quarantine)  # the quarantine rows themselves are valid


@pytest.mark.parametrize(
    ("event", "reason"),
    [({"rating": float("nan")}, "invalid_value"), ({"rating": 1e308 * 10}, "invalid_value"),
     ({"rating": 2**80}, "invalid_value"), ({"thumb": [1]}, "invalid_value"), ({"thumb": {"x": 1}}, "invalid_value"),
     ({"thumb": 1, "timestamp": 10**300}, "bad_timestamp"), ({"thumb": 1, "feedback_id": 1.5}, "wrong_type")],
)  # fmt: skip
def test_no_feedback_value_fails_the_batch(event: dict[str, Any], reason: str) -> None:
    line = json.dumps(interaction(1, feedback=event)).replace("Infinity", "1e999")
    out = prepare_batch(spec(), lines(line))
    assert len(rows(out, "interactions")) == 1
    assert [(q["record_kind"], q["reason"]) for q in out.quarantine] == [("feedback", reason)]


def test_a_row_the_table_build_refuses_is_quarantined_alone() -> None:
    from ratchet.ingest.prepare import rows_to_table

    good = {"interaction_id": "a", "prompt_tokens": 1}
    bad = {"interaction_id": "b", "prompt_tokens": 2**64}
    schema = pa.schema(
        [pa.field("interaction_id", pa.string()), pa.field("prompt_tokens", pa.int64())]
    )
    table, refused = rows_to_table([good, bad, good], schema)
    assert table.column("interaction_id").to_pylist() == ["a", "a"]
    assert [(i, r.reason) for i, r in refused] == [(1, "invalid_value")]
    assert "prompt_tokens" in refused[0][1].detail and str(2**64) not in refused[0][1].detail


# --- 3. identifiers that hold PII ----------------------------------------------------------------
def _all_strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, dict):
        return [s for v in value.values() for s in _all_strings(v)]
    if isinstance(value, list):
        return [s for v in value for s in _all_strings(v)]
    return []


def test_identifiers_holding_pii_are_pseudonymised_the_same_everywhere() -> None:
    call = {"id": "call-jane.doe@example.com", "type": "ping jane.doe@example.com",
            "function": {"name": "lookup", "arguments": "{}"}}  # fmt: skip
    line = interaction(
        "x", interaction_id="jane.doe@example.com", conversation_id="conv jane.doe@example.com",
        messages=[{"role": "user", "content": "hi"},
                  {"role": "assistant", "content": None, "tool_calls": [call]},
                  {"role": "tool", "content": "ok", "tool_call_id": "call-jane.doe@example.com"}],
        response={"role": "assistant", "content": "done", "tool_calls": [call]},
        feedback={"thumb": 1, "feedback_id": "fb jane.doe@example.com"},
    )  # fmt: skip
    out = prepare_batch(spec(), lines(line, interaction("ok-1", conversation_id="c-7")))
    [i, clean] = rows(out, "interactions")
    [fb] = rows(out, "feedback")
    assert not [s for s in _all_strings(i) + _all_strings(fb) if "jane" in s]
    assert fb["interaction_id"] == i["interaction_id"] != "jane.doe@example.com"
    assert i["messages"][1]["tool_calls"][0]["id"] == i["messages"][2]["tool_call_id"]
    assert i["messages"][1]["tool_calls"][0]["id"] == i["response_tool_calls"][0]["id"]
    assert i["response_tool_calls"][0]["type"] != call["type"]
    assert fb["feedback_id"] != "fb jane.doe@example.com"
    # ids without PII are kept as given; the same id pseudonymises the same under the same key
    assert (clean["interaction_id"], clean["conversation_id"]) == ("int-ok-1", "c-7")
    again = prepare_batch(spec(), lines(line))
    assert rows(again, "interactions")[0]["interaction_id"] == i["interaction_id"]
    other = prepare_batch(spec(key=OTHER_KEY), lines(line))
    assert rows(other, "interactions")[0]["interaction_id"] != i["interaction_id"]


def test_record_ids_longer_than_the_ledger_key_are_refused_line_by_line() -> None:
    from ratchet.db.models import MAX_ID_LENGTH
    from ratchet.ingest.records import MAX_RECORD_ID_CHARS

    assert MAX_RECORD_ID_CHARS == MAX_ID_LENGTH  # record_keys.record_id
    long_id = "x" * (MAX_ID_LENGTH + 1)
    line = interaction(
        1, feedback=[{"thumb": 1, "feedback_id": long_id}, {"thumb": -1, "feedback_id": "ok"}]
    )
    out = prepare_batch(spec(), lines(interaction(0, interaction_id=long_id), line))
    assert [r["interaction_id"] for r in rows(out, "interactions")] == ["int-1"]
    assert [r["feedback_id"] for r in rows(out, "feedback")] == ["ok"]
    assert [(q["source_line"], q["record_kind"], q["reason"]) for q in out.quarantine] == [
        (1, "interaction", "invalid_value"), (2, "feedback", "invalid_value"),
    ]  # fmt: skip


@pytest.mark.parametrize("version", ["1.0 jane@example.com", "1.x", "", " 1.0", "1.0.0"])
def test_schema_version_is_checked_whole_not_only_its_major(version: str) -> None:
    """schema_version is stored as given and never redacted: anything but MAJOR[.MINOR] in it
    could carry text (PII) into the store."""
    out = prepare_batch(
        spec(), lines(interaction(1, schema_version=version), interaction(2, schema_version=1.2))
    )
    assert [r["schema_version"] for r in rows(out, "interactions")] == ["1.2"]
    assert [(q["source_line"], q["reason"]) for q in out.quarantine] == [(1, "invalid_value")]


# --- pipeline: join across tables, key rotation ----------------------------------------------------
def write_jsonl(path: Path, items: list[Any]) -> Path:
    path.write_text("".join(json.dumps(x) + "\n" for x in items))
    return path


@pytest.fixture
def ctx(ratchet_env: Path) -> IngestContext:
    settings = get_settings()
    return IngestContext(
        store=Store(settings.store_root), sessions=open_database(settings), config=CONFIG,
        redactor=Redactor(CONFIG.redaction), pseudonym_key=KEY, now=NOW,
    )  # fmt: skip


def stored(ctx: IngestContext, table: str) -> pa.Table:
    schema = {"interactions": INTERACTIONS, "feedback": FEEDBACK, "quarantine": QUARANTINE}[table]
    with ctx.sessions() as s:
        paths = [p.path for p in repo.list_parts(s, table)]
    return ctx.store.read_tables(paths, schema)


def test_feedback_on_an_interaction_id_holding_an_email_still_joins(ctx, tmp_path) -> None:
    ingest_file(
        ctx, write_jsonl(tmp_path / "i.jsonl", [interaction(1, interaction_id="bob@example.com")])
    )
    event = {"interaction_id": "bob@example.com", "agent_id": "shop-assistant",
             "timestamp": "2026-11-03T09:00:00Z", "rating": 2}  # fmt: skip
    report = ingest_file(ctx, write_jsonl(tmp_path / "f.jsonl", [event]), kind="feedback")
    assert report.stored["feedback"] == 1
    [i] = stored(ctx, "interactions").to_pylist()
    [fb] = stored(ctx, "feedback").to_pylist()
    assert fb["interaction_id"] == i["interaction_id"] and "bob" not in i["interaction_id"]


def test_another_key_recognises_overlapping_records_as_the_same(ctx, tmp_path) -> None:
    events = [{"interaction_id": "int-1", "agent_id": "shop-assistant", "annotator": "ann@example.com",
               "timestamp": "2026-11-03T09:00:00Z", "thumb": -1, "comment": "call +44 20 7946 0958"}]  # fmt: skip
    first = [
        interaction(i, user_id="alice@example.com", response=f"Mail bob{i}@example.com")
        for i in range(3)
    ]
    ingest_file(ctx, write_jsonl(tmp_path / "a.jsonl", first))
    ingest_file(ctx, write_jsonl(tmp_path / "fa.jsonl", events), kind="feedback")
    rotated = IngestContext(**{**ctx.__dict__, "pseudonym_key": OTHER_KEY})
    report = ingest_file(rotated, write_jsonl(tmp_path / "b.jsonl", [*first, interaction(9)]))
    assert dict(report.quarantined) == {}
    assert (report.skipped_stored["interactions"], report.stored["interactions"]) == (3, 1)
    report = ingest_file(
        rotated, write_jsonl(tmp_path / "fb.jsonl", [*events, *events]), kind="feedback"
    )
    assert (dict(report.quarantined), report.skipped_stored["feedback"]) == ({}, 2)


def test_content_hash_and_derived_ids_do_not_depend_on_the_key() -> None:
    line = interaction(
        1, user_id="u@example.com", feedback={"thumb": -1, "annotator": "a@example.com"}
    )
    a = prepare_batch(spec(), lines(line))
    b = prepare_batch(spec(key=OTHER_KEY), lines(line))
    for table in ("interactions", "feedback"):
        assert a.tables[table].column("content_hash") == b.tables[table].column("content_hash")
    assert a.tables["feedback"].column("feedback_id") == b.tables["feedback"].column("feedback_id")
    assert a.tables["interactions"].column("user_id") != b.tables["interactions"].column("user_id")
    # different visible content, different hash
    c = prepare_batch(spec(), lines(interaction(1, user_id="u@example.com", response="Other.")))
    assert c.tables["interactions"].column("content_hash") != a.tables["interactions"].column(
        "content_hash"
    )


def test_the_hash_of_a_clean_row_is_the_hash_of_its_stored_form() -> None:
    """Rows the redactor did not change are hashed from their parsed dicts: that must be the
    same hash as reading the stored row back (or a row with and without PII would disagree)."""
    from ratchet.ingest.identity import content_hash

    call = {"id": "c1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
    line = interaction(
        1, conversation_id="c", model_version="m", tools_used=["f"], sources=["s", {"u": 1}],
        latency_ms=12, prompt_tokens=3, completion_tokens=4, cost_usd=0.25, consent=True,
        metadata={"topic": "x"}, extra_field=[1, 2], timestamp="2026-11-02T10:00:00.123456+02:00",
        messages=[{"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image"}]},
                  {"role": "assistant", "content": None, "tool_calls": [call]},
                  {"role": "tool", "content": "ok", "tool_call_id": "c1", "name": "f"}],
        response={"role": "assistant", "content": "done", "tool_calls": [call]},
        feedback={"thumb": "up", "rating": 4.0, "annotator": "ann", "aspects": {"t": 1}, "comment": "c"},
    )  # fmt: skip
    out = prepare_batch(spec(), lines(line))
    assert out.pii_by_type == {}
    for table in ("interactions", "feedback"):
        [row] = out.tables[table].to_pylist()
        assert content_hash(row, table) == row["content_hash"]


# --- 5. byte-identical reruns -----------------------------------------------------------------------
def test_the_same_batch_at_another_time_gives_the_same_bytes_and_names(tmp_path) -> None:
    batch = lines(
        interaction(1, feedback={"thumb": 1}), "not json", interaction(2, user_id="x@example.com")
    )
    first = prepare_batch(spec(), batch)
    later = prepare_batch(spec(now=NOW + timedelta(hours=5)), batch)
    assert first.quarantine == later.quarantine
    for name, schema in (
        ("interactions", INTERACTIONS),
        ("feedback", FEEDBACK),
        ("quarantine", QUARANTINE),
    ):
        tables = [
            quarantine_table(b.quarantine) if name == "quarantine" else b.tables[name]
            for b in (first, later)
        ]
        parts = [
            Store(str(tmp_path / f"s{n}")).write_part("d", t, schema) for n, t in enumerate(tables)
        ]
        assert parts[0].path == parts[1].path
        assert (tmp_path / "s0" / parts[0].path).read_bytes() == (
            tmp_path / "s1" / parts[1].path
        ).read_bytes()


def test_clock_columns_are_gone_and_old_parts_still_read(tmp_path) -> None:
    for schema in (INTERACTIONS, FEEDBACK, QUARANTINE):
        assert not {"ingested_at", "quarantined_at"} & set(schema.names)
    assert SCHEMA_VERSION == "1.1"
    out = prepare_batch(spec(), lines(interaction(1), "oops"))
    old = out.tables["interactions"].append_column(
        "ingested_at", pa.array([NOW], pa.timestamp("us", tz="UTC"))
    )
    q_old = quarantine_table(out.quarantine).append_column(
        "quarantined_at", pa.array([NOW], pa.timestamp("us", tz="UTC"))
    )
    store = Store(str(tmp_path))
    (tmp_path / "old").mkdir()
    pq.write_table(old, tmp_path / "old" / "i.parquet")
    pq.write_table(q_old, tmp_path / "old" / "q.parquet")
    assert (
        store.read_table("old/i.parquet", INTERACTIONS).to_pylist()
        == out.tables["interactions"].to_pylist()
    )
    assert store.read_table("old/q.parquet", QUARANTINE).num_rows == 1
