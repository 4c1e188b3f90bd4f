"""Ingest core, without Prefect: validation reasons, exactly-once, consent, tombstones, formats."""

from __future__ import annotations

import dataclasses
import gzip
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from ratchet.config import PipelineConfig
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import IngestContext, QuarantineThresholdExceeded, ingest_file
from ratchet.quality import DataQualityError
from ratchet.redaction import Redactor, pseudonymise
from ratchet.schemas import FEEDBACK, INTERACTIONS, QUARANTINE
from ratchet.settings import get_settings
from ratchet.store import Store

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
KEY = b"k" * 32


def interaction(i: int | str, **over: Any) -> dict[str, Any]:
    rec: dict[str, Any] = {
        "interaction_id": f"int-{i}",
        "agent_id": "shop-assistant",
        "timestamp": "2026-11-02T10:00:00Z",
        "messages": [
            {"role": "system", "content": "You are a shop assistant."},
            {
                "role": "user",
                "content": f"Where is order ORD-2026-{100000 + int(str(i).split('-')[-1] or 0)}?",
            },
        ],
        "response": "It ships tomorrow.",
        "user_id": "cust-1",
    }
    rec.update(over)
    return rec


def write_jsonl(path: Path, lines: list[Any]) -> Path:
    with path.open("wb") as f:
        for line in lines:
            if isinstance(line, bytes):
                f.write(line + b"\n")
            elif isinstance(line, str):
                f.write(line.encode() + b"\n")
            else:
                f.write(json.dumps(line).encode() + b"\n")
    return path


@pytest.fixture
def ctx(ratchet_env: Path) -> IngestContext:
    settings = get_settings()
    config = PipelineConfig.model_validate(
        {"ingest": {"batch_size": 100, "max_quarantine_share": 1.0}}
    )
    return IngestContext(
        store=Store(settings.store_root),
        sessions=open_database(settings),
        config=config,
        redactor=Redactor(config.redaction),
        pseudonym_key=KEY,
        now=NOW,
    )


def stored(ctx: IngestContext, table: str) -> pa.Table:
    schema = {"interactions": INTERACTIONS, "feedback": FEEDBACK, "quarantine": QUARANTINE}[table]
    with ctx.sessions() as s:
        paths = [p.path for p in repo.list_parts(s, table)]
    return ctx.store.read_tables(paths, schema)


def test_valid_lines_are_stored_redacted_and_partitioned(ctx, tmp_path) -> None:
    f = write_jsonl(
        tmp_path / "a.jsonl",
        [
            interaction(
                1, messages=[{"role": "user", "content": "mail me at jane.doe@example.com"}]
            ),
            interaction(2, timestamp="2026-11-03T23:30:00-02:00"),  # 2026-11-04 in UTC
            interaction(3, timestamp="2026-11-03T08:00:00"),  # no zone: UTC, counted
        ],
    )
    report = ingest_file(ctx, f)
    assert report.stored["interactions"] == 3
    assert report.assumed_utc == 1
    assert report.pii_by_type.get("EMAIL") == 1
    table = stored(ctx, "interactions")
    assert sorted(table.column("interaction_id").to_pylist()) == ["int-1", "int-2", "int-3"]
    text = json.dumps(table.column("messages").to_pylist())
    assert "jane.doe@example.com" not in text and "[EMAIL]" in text
    assert set(table.column("user_id").to_pylist()) == {pseudonymise("cust-1", KEY)}
    assert all(r == 0 for r in table.column("pii_residual").to_pylist())
    dates = {p.split("date=")[1][:10] for p in report.parts if p.startswith("interactions/")}
    assert dates == {"2026-11-02", "2026-11-03", "2026-11-04"}
    assert all("agent=shop-assistant" in p for p in report.parts if p.startswith("interactions/"))


BAD_LINES: list[tuple[bytes | str | dict[str, Any] | list[Any], str]] = [
    (b"\xff\xfe not utf8 jane@example.com", "not_utf8"),
    ('{"interaction_id": "x", broken', "not_json"),
    ([1, 2, 3], "not_object"),
    ({k: v for k, v in interaction(10).items() if k != "response"}, "missing_field"),
    (interaction(11, messages="hello"), "wrong_type"),
    (interaction(12, timestamp="last tuesday"), "bad_timestamp"),
    (interaction(13, timestamp="1999-01-01T00:00:00Z"), "bad_timestamp"),
    (interaction(14, schema_version="2.0"), "newer_schema"),
    (interaction(15, messages=[{"role": "wizard", "content": "hi"}]), "invalid_value"),
    (interaction(16, agent_id="../etc"), "invalid_value"),
]


@pytest.mark.parametrize(("line", "reason"), BAD_LINES, ids=[r for _, r in BAD_LINES])
def test_each_bad_line_is_quarantined_with_its_reason(ctx, tmp_path, line, reason) -> None:
    f = write_jsonl(tmp_path / "bad.jsonl", [interaction(1), line])
    report = ingest_file(ctx, f)
    assert report.stored["interactions"] == 1
    assert dict(report.quarantined) == {reason: 1}
    q = stored(ctx, "quarantine")
    assert q.column("reason").to_pylist() == [reason]
    assert q.column("source_line").to_pylist() == [2]
    assert q.column("source_file").to_pylist() == [report.source_file]


def test_oversize_line_is_quarantined_without_reading_it_whole(ctx, tmp_path) -> None:
    ctx = IngestContext(
        **{
            **ctx.__dict__,
            "config": ctx.config.model_copy(
                update={"ingest": ctx.config.ingest.model_copy(update={"max_record_bytes": 2048})}
            ),
        }
    )
    big = interaction(2, response="x" * 5000 + " call +44 20 7946 0958")
    f = write_jsonl(tmp_path / "big.jsonl", [interaction(1), big, interaction(3)])
    report = ingest_file(ctx, f)
    assert dict(report.quarantined) == {"too_large": 1}
    assert report.stored["interactions"] == 2


def test_quarantine_keeps_no_pii_and_reasons_hold_no_values(ctx, tmp_path) -> None:
    secret_mail, card = "victim@example.org", "4111 1111 1111 1111"
    f = write_jsonl(
        tmp_path / "q.jsonl",
        [
            interaction(1, timestamp=f"when {secret_mail} paid"),
            interaction(2, messages=f"card {card}"),
            f'{{"note": "{secret_mail} {card}", broken',
        ],
    )
    report = ingest_file(ctx, f)
    assert sum(report.quarantined.values()) == 3
    q = stored(ctx, "quarantine")
    dumped = json.dumps(q.to_pylist(), default=str)
    assert secret_mail not in dumped and card not in dumped and "4111111111111111" not in dumped
    assert "[EMAIL]" in dumped
    assert secret_mail not in json.dumps(report.as_dict())


def test_same_file_twice_is_skipped_whole(ctx, tmp_path) -> None:
    f = write_jsonl(tmp_path / "a.jsonl", [interaction(i) for i in range(5)])
    first = ingest_file(ctx, f)
    second = ingest_file(ctx, f)
    assert first.stored["interactions"] == 5
    assert second.status == "already_ingested" and not second.stored
    assert stored(ctx, "interactions").num_rows == 5


def test_overlapping_files_store_each_interaction_once(ctx, tmp_path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [interaction(i) for i in range(0, 6)])
    b = write_jsonl(tmp_path / "b.jsonl", [interaction(i) for i in range(3, 9)])
    ingest_file(ctx, a)
    rb = ingest_file(ctx, b)
    assert rb.stored["interactions"] == 3 and rb.skipped_stored["interactions"] == 3
    ids = stored(ctx, "interactions").column("interaction_id").to_pylist()
    assert sorted(ids) == sorted(f"int-{i}" for i in range(9))


def test_conflicting_duplicate_is_quarantined_and_stored_one_stays(ctx, tmp_path) -> None:
    a = write_jsonl(tmp_path / "a.jsonl", [interaction(1), interaction(1)])  # exact dup in file
    b = write_jsonl(tmp_path / "b.jsonl", [interaction(1, response="A different answer.")])
    ra = ingest_file(ctx, a)
    rb = ingest_file(ctx, b)
    assert ra.stored["interactions"] == 1 and ra.skipped_stored["interactions"] == 1
    assert dict(rb.quarantined) == {"conflicting_duplicate": 1}
    table = stored(ctx, "interactions")
    assert table.column("response").to_pylist() == ["It ships tomorrow."]


def test_consent_false_is_dropped_and_counted(ctx, tmp_path) -> None:
    f = write_jsonl(
        tmp_path / "c.jsonl", [interaction(1, consent=False), interaction(2, consent=True)]
    )
    report = ingest_file(ctx, f)
    assert report.dropped_consent == 1 and report.stored["interactions"] == 1
    assert stored(ctx, "interactions").column("interaction_id").to_pylist() == ["int-2"]


def test_tombstoned_users_and_interactions_are_skipped(ctx, tmp_path) -> None:
    with ctx.sessions() as s, s.begin():
        repo.add_tombstone(s, kind="user", value=pseudonymise("forget-me", KEY))
        repo.add_tombstone(s, kind="interaction", value="int-3", agent_id="shop-assistant")
    f = write_jsonl(
        tmp_path / "t.jsonl",
        [interaction(1), interaction(2, user_id="forget-me"), interaction(3)],
    )
    fb = write_jsonl(
        tmp_path / "fb.jsonl",
        [
            {
                "interaction_id": "int-3",
                "agent_id": "shop-assistant",
                "timestamp": "2026-11-05T00:00:00Z",
                "thumb": 1,
            }
        ],
    )
    report = ingest_file(ctx, f)
    fb_report = ingest_file(ctx, fb, kind="feedback")
    assert report.skipped_tombstone == 2 and report.stored["interactions"] == 1
    assert fb_report.skipped_tombstone == 1 and not fb_report.stored


def test_feedback_events_late_changed_and_inline(ctx, tmp_path) -> None:
    inline = interaction(
        1, feedback={"thumb": 1, "timestamp": "2026-11-02T10:05:00Z", "source": "user"}
    )
    f = write_jsonl(tmp_path / "i.jsonl", [inline, interaction(2)])
    events = [
        {
            "interaction_id": "int-2",
            "agent_id": "shop-assistant",
            "timestamp": "2026-11-02T11:00:00Z",
            "source": "user",
            "annotator": "cust-1",
            "thumb": 1,
        },
        # a changed vote from the same person, and a late expert correction three weeks later
        {
            "interaction_id": "int-2",
            "agent_id": "shop-assistant",
            "timestamp": "2026-11-03T09:00:00Z",
            "source": "user",
            "annotator": "cust-1",
            "thumb": -1,
        },
        {
            "feedback_id": "exp-1",
            "interaction_id": "int-2",
            "agent_id": "shop-assistant",
            "timestamp": "2026-11-19T09:00:00Z",
            "source": "expert",
            "rating": 1,
            "correction": "It shipped yesterday; track it with 1Z999AA10123456784.",
        },
        {
            "interaction_id": "int-2",
            "agent_id": "shop-assistant",
            "timestamp": "2026-11-03T09:00:00Z",
            "rating": 9,
        },
        {
            "interaction_id": "int-2",
            "agent_id": "shop-assistant",
            "timestamp": "2026-11-03T09:00:00Z",
        },
    ]
    fb = write_jsonl(tmp_path / "fb.jsonl", events)
    ingest_file(ctx, f)
    report = ingest_file(ctx, fb, kind="feedback")
    assert report.stored["feedback"] == 3
    assert dict(report.quarantined) == {"invalid_value": 1, "missing_field": 1}
    table = stored(ctx, "feedback")
    assert table.num_rows == 4  # inline + two votes + the expert's
    by_id = {r["feedback_id"]: r for r in table.to_pylist()}
    assert by_id["exp-1"]["correction"].endswith("1Z999AA10123456784.")  # tracking nr is not PII
    assert {r["thumb"] for r in table.to_pylist() if r["interaction_id"] == "int-2"} == {
        1,
        -1,
        None,
    }
    # the same events again (derived ids included) add nothing
    again = write_jsonl(tmp_path / "fb2.jsonl", events[:3])
    assert ingest_file(ctx, again, kind="feedback").skipped_stored["feedback"] == 3
    assert stored(ctx, "feedback").num_rows == 4


def test_openai_chat_logs_keep_tool_calls(ctx, tmp_path) -> None:
    call = {
        "id": "call_1",
        "type": "function",
        "function": {
            "name": "lookup_order",
            "arguments": '{"order_id": "ORD-2026-118842", "email": "a.b@example.com"}',
        },
    }
    line = {
        "request": {
            "model": "gpt-4.1-mini",
            "messages": [{"role": "user", "content": "Where is ORD-2026-118842?"}],
            "temperature": 0.2,
            "user": "cust-9",
            "metadata": {"agent_id": "returns-bot", "topic": "orders"},
        },
        "response": {
            "id": "chatcmpl-abc",
            "object": "chat.completion",
            "created": 1762077600,
            "model": "gpt-4.1-mini-2025-04-14",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": None, "tool_calls": [call]},
                    "finish_reason": "tool_calls",
                }
            ],
            "usage": {"prompt_tokens": 80, "completion_tokens": 12, "total_tokens": 92},
        },
        "latency_ms": 640,
    }
    f = write_jsonl(tmp_path / "oa.jsonl", [line])
    report = ingest_file(ctx, f)
    assert report.stored["interactions"] == 1
    row = stored(ctx, "interactions").to_pylist()[0]
    assert row["agent_id"] == "returns-bot" and row["interaction_id"] == "chatcmpl-abc"
    assert row["prompt_tokens"] == 80 and row["model_version"] == "gpt-4.1-mini-2025-04-14"
    args = json.loads(row["response_tool_calls"][0]["function"]["arguments"])
    assert args == {"order_id": "ORD-2026-118842", "email": "[EMAIL]"}
    assert json.loads(row["metadata"]) == {"topic": "orders"}
    assert json.loads(row["extra"])["openai"]["request"] == {"temperature": 0.2}


def test_unknown_fields_are_kept_in_extra_redacted(ctx, tmp_path) -> None:
    f = write_jsonl(
        tmp_path / "x.jsonl", [interaction(1, ab_bucket="B", contact="ops@example.net")]
    )
    ingest_file(ctx, f)
    extra = json.loads(stored(ctx, "interactions").column("extra").to_pylist()[0])
    assert extra == {"ab_bucket": "B", "contact": "[EMAIL]"}


def test_gzip_input(ctx, tmp_path) -> None:
    raw = "\n".join(json.dumps(interaction(i)) for i in range(4)).encode()
    f = tmp_path / "a.jsonl.gz"
    f.write_bytes(gzip.compress(raw))
    assert ingest_file(ctx, f).stored["interactions"] == 4


def test_quarantine_threshold_fails_and_commits_only_quarantine(ctx, tmp_path) -> None:
    strict = ctx.config.model_copy(
        update={
            "ingest": ctx.config.ingest.model_copy(
                update={"max_quarantine_share": 0.3, "min_lines_for_quarantine_share": 0}
            )
        }
    )
    ctx = IngestContext(**{**ctx.__dict__, "config": strict})
    f = write_jsonl(tmp_path / "bad.jsonl", [interaction(1), "nope", "nope either", interaction(2)])
    with pytest.raises(QuarantineThresholdExceeded, match="max_quarantine_share") as err:
        ingest_file(ctx, f)
    assert "nope" not in str(err.value)
    assert stored(ctx, "interactions").num_rows == 2  # the good lines of a file that stops stay
    assert stored(ctx, "quarantine").num_rows == 2
    with ctx.sessions() as s:
        assert repo.get_source_file(s, _hash(f)).status == "failed"


def _hash(path: Path) -> str:
    from ratchet.ingest.reader import file_sha256

    return file_sha256(path)


def test_residual_pii_fails_the_quality_suite_and_commits_nothing(ctx, tmp_path) -> None:
    class LeakyRedactor(Redactor):
        def redact_table(self, table):  # a broken redactor: passes text through
            result = super().redact_table(table)
            return dataclasses.replace(result, table=table)

    ctx = IngestContext(**{**ctx.__dict__, "redactor": LeakyRedactor(ctx.config.redaction)})
    f = write_jsonl(
        tmp_path / "leak.jsonl", [interaction(1, response="Call me on jane@example.com")]
    )
    with pytest.raises(DataQualityError, match="pii_residual") as err:
        ingest_file(ctx, f)
    assert "jane@example.com" not in str(err.value)
    assert stored(ctx, "interactions").num_rows == 0


@pytest.mark.parametrize(
    ("thumb", "stored"),
    [
        (1, 1),
        (-1, -1),
        ("up", 1),
        ("down", -1),
        (True, 1),
        (False, -1),
        (0, None),
        (2, None),
        ("meh", None),
    ],
)
def test_thumb_values(ctx, tmp_path, thumb, stored) -> None:
    event = {
        "interaction_id": "int-1",
        "agent_id": "shop-assistant",
        "timestamp": "2026-11-03T09:00:00Z",
        "thumb": thumb,
    }
    report = ingest_file(ctx, write_jsonl(tmp_path / "fb.jsonl", [event]), kind="feedback")
    if stored is None:
        assert dict(report.quarantined) == {"invalid_value": 1}
    else:
        assert stored_thumbs(ctx) == [stored]


def stored_thumbs(ctx: IngestContext) -> list[int]:
    return stored(ctx, "feedback").column("thumb").to_pylist()
