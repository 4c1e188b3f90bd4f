"""The vectorised path (ratchet.ingest.fast) against the per-line path: the same files, clean and
dirty, ingested both ways must give byte-identical parts, the same ledger keys and quarantine
rows; fuzzed lines must give the same prepared batch; and clean lines must really take it."""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import select

from ratchet.config import PipelineConfig
from ratchet.db import open_database
from ratchet.db.models import Part, RecordKey
from ratchet.ingest import fast
from ratchet.ingest.identity import content_hash
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.ingest.prepare import PrepareSpec, prepare_batch
from ratchet.ingest.reader import Line
from ratchet.redaction import Redactor
from ratchet.sample import write_interactions
from ratchet.settings import get_settings
from ratchet.store import Store
from tests.unit.test_ingest_fuzz import INTERACTION_PATHS, _line, _overrides

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": '{"a": 1}'}}
CLEAN: dict[str, Any] = {
    "schema_version": "1.0", "interaction_id": "int-1", "agent_id": "shop", "conversation_id": "c-1",
    "timestamp": "2026-11-02T10:00:00.250Z", "user_id": "cust-1", "model_version": "m",
    "messages": [{"role": "system", "content": "be kind"}, {"role": "user", "content": "hi"},
                 {"role": "assistant", "content": None, "tool_calls": [CALL]},
                 {"role": "tool", "content": "ok", "tool_call_id": "call_1"}],
    "response": "done", "tools_used": ["f"], "sources": [], "latency_ms": 1108.8,
    "prompt_tokens": 3, "completion_tokens": 4, "cost_usd": 3.72e-05, "consent": True,
    "metadata": {"topic": "x", "n": [1, 2.5]},
}  # fmt: skip


def _with(i: int, **changes: Any) -> dict[str, Any]:
    obj = copy.deepcopy(CLEAN)
    obj["interaction_id"] = f"int-{i}"
    obj.update(changes)
    return obj


def _tricky_lines() -> list[bytes]:
    """Clean lines with hard text, and dirty lines of every kind; one JSON line each."""
    objs: list[Any] = [
        _with(1),
        _with(2, response='quotes " and \\ backslash\ttab\nnewline \x01\x1f ctrl \u2028 é 中 😀'),
        _with(
            3,
            messages=[
                {
                    "role": "user",
                    "content": "mail jane.doe@example.com, card 4111 1111 1111 1111",
                    "name": "n\x7f",
                }
            ],
        ),
        _with(4, interaction_id="jane@example.com", conversation_id="bob@example.com"),
        _with(
            5,
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "x@example.com", "type": None, "function": {"name": "g"}}
                    ],
                },
                {"role": "tool", "tool_call_id": "x@example.com", "content": "{}"},
            ],
        ),
        _with(6, latency_ms=1e16, cost_usd=100.0, prompt_tokens=0, completion_tokens=None),
        _with(7, latency_ms=7, cost_usd=0.1, sources=None, tools_used=["a", 'b"c']),
        _with(8, timestamp="2026-11-02T10:00:00", schema_version=None, user_id=None),
        _with(9, timestamp="2026-11-02T12:00:00+05:30", extra_field={"z": 1, "a": "jane@x.io"}),
        _with(10, consent=False),
        _with(11, metadata=None, ab_bucket="b", trace_id=12),
        _with(
            12,
            messages=[
                {"role": "user", "content": [{"type": "text", "text": "hi"}, {"type": "image_url"}]}
            ],
        ),
        _with(13, interaction_id=13),  # integer id: lenient, per-line path
        _with(14, response={"role": "assistant", "content": "x", "tool_calls": [CALL]}),
        _with(
            15,
            messages=[
                {
                    "role": "assistant",
                    "tool_calls": [{"id": "c", "function": {"name": "f", "arguments": {"a": 1}}}],
                }
            ],
        ),
        _with(16, feedback={"thumb": 1, "comment": "great"}),
        _with(17, timestamp="yesterday"),
        _with(18, timestamp="2001-01-01T00:00:00Z"),
        _with(19, schema_version="2.0"),
        _with(20, schema_version=""),
        _with(21, agent_id="bad agent"),
        _with(22, messages=[]),
        _with(23, prompt_tokens=-1),
        _with(24, prompt_tokens=3.0),
        _with(25, metadata=[1, 2]),
        _with(26, interaction_id="   "),
        _with(27, interaction_id="x" * 300),
        _with(28, messages=[{"role": "robot", "content": "x"}]),
        _with(29, request={"model": "m"}),  # an openai-chat look-alike under fmt=auto
        _with(2, response="conflicting duplicate of line 2"),
        _with(1),  # the same record again: skipped as already stored
        [1, 2, 3],
        _with(30, agent_id=None),
        _with(31, latency_ms=None, cost_usd=None, consent=None, metadata=None, model_version=None),
    ]
    lines = [json.dumps(o, ensure_ascii=False).encode() for o in objs]
    lines += [
        b"",
        b"   ",
        b"not json at all",
        b'{"interaction_id": "lone", "response": "\\ud800"}',
        json.dumps(_with(32)).encode().replace(b'"latency_ms": 1108.8', b'"latency_ms": NaN'),
        json.dumps(_with(33)).encode().replace(b'"prompt_tokens": 3', b'"prompt_tokens": 1' + b"0" * 30),
        json.dumps(_with(34)).encode() + b" trailing",
        b"\xff\xfe not utf-8",
        json.dumps(_with(35)).encode().replace(b'"be kind"', b'"raw \x01 control"'),
        json.dumps(_with(36)).encode().replace(b'"response": "done"', b'"response": "a", "response": "b"'),
        json.dumps(_with(37), ensure_ascii=True).encode(),
    ]  # fmt: skip
    return lines


def _ingest(tmp: Path, src: Path, fast_path: bool) -> tuple[dict[str, bytes], list[Any], Any]:
    settings = get_settings(home=tmp)
    config = PipelineConfig.model_validate(
        {"ingest": {"batch_size": 100, "workers": 1, "fast_path": fast_path,
                    "max_quarantine_share": 1.0},
         "quality": {"second_opinion_enabled": False}}  # Presidio is slow and not under test
    )  # fmt: skip
    ctx = IngestContext(
        store=Store(settings.store_root), sessions=open_database(settings), config=config,
        redactor=Redactor(config.redaction), pseudonym_key=b"k" * 32, now=NOW,
    )  # fmt: skip
    report = ingest_file(ctx, src)
    root = Path(settings.store_root)
    files = {str(p.relative_to(root)): p.read_bytes() for p in root.rglob("*.parquet")}
    with ctx.sessions() as s:
        keys = sorted(
            s.execute(select(RecordKey.kind, RecordKey.agent_id, RecordKey.record_id,
                             RecordKey.content_hash)).tuples()
        )  # fmt: skip
        parts = sorted(s.execute(select(Part.path, Part.rows, Part.content_hash)).tuples())
    return files, [*keys, *parts], report


def test_both_paths_write_the_same_bytes_on_clean_and_dirty_files(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    write_interactions(src, 80, seed=3, pii_rate=0.3)  # the generator's (ids, tools, extras)
    with src.open("ab") as f:
        f.write(b"\n".join(_tricky_lines()) + b"\n")
    slow_files, slow_ledger, slow_report = _ingest(tmp_path / "slow", src, fast_path=False)
    fast_files, fast_ledger, fast_report = _ingest(tmp_path / "fast", src, fast_path=True)
    assert sorted(fast_files) == sorted(slow_files)
    assert any(p.startswith("quarantine/") for p in slow_files)
    assert sum(p.startswith("interactions/") for p in slow_files) > 3
    for path, data in slow_files.items():
        assert fast_files[path] == data, path
    assert fast_ledger == slow_ledger
    assert fast_report.as_dict() == slow_report.as_dict()
    assert slow_report.quarantined["conflicting_duplicate"] == 1
    assert slow_report.skipped_stored["interactions"] == 1


def _spec(fmt: str = "auto") -> PrepareSpec:
    config = PipelineConfig.model_validate({"ingest": {"batch_size": 100}})
    return PrepareSpec(
        kind="interactions", fmt=fmt, default_agent=None, source="f" * 64,  # type: ignore[arg-type]
        source_name="t.jsonl", config=config, key=b"k" * 32, now=NOW,
        redaction_version="t",
    )  # fmt: skip


def _same(lines: list[Line], spec: PrepareSpec | None = None) -> None:
    spec = spec or _spec()
    slow = prepare_batch(spec, lines, fast=False)
    quick = prepare_batch(spec, lines, fast=True)
    assert quick.tables.keys() == slow.tables.keys()
    for name, table in slow.tables.items():
        assert quick.tables[name].equals(table), name
    assert quick.quarantine == slow.quarantine
    for attr in ("lines", "blank", "records", "dropped_consent", "assumed_utc", "pii_by_type"):
        assert getattr(quick, attr) == getattr(slow, attr), attr


def test_clean_lines_take_the_vectorised_path(tmp_path: Path) -> None:
    """Without this, an equivalence test passes vacuously if every line falls back."""
    src = tmp_path / "in.jsonl"
    write_interactions(src, 200, seed=5, pii_rate=0.3)
    lines = [Line(n, d, False) for n, d in enumerate(src.read_bytes().splitlines(), 1)]
    taken, slow = fast.split_batch(_spec(), lines)
    assert not slow and len(taken) == 200
    tricky = [Line(n, d, False) for n, d in enumerate(_tricky_lines(), 1)]
    taken, slow = fast.split_batch(_spec(), tricky)
    assert {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11} <= set(taken)
    assert {12, 13, 14, 15, 16, 17, 29} <= {line.number for line in slow}
    _same(lines[:60] + [Line(n + 60, line.data, False) for n, line in enumerate(tricky, 1)])


def test_fmt_openai_chat_and_feedback_files_keep_the_per_line_path() -> None:
    assert fast.applies(_spec("auto")) and fast.applies(_spec("canonical"))
    assert not fast.applies(_spec("openai-chat"))


@pytest.mark.parametrize(
    "value",
    [
        "plain",
        'q"b\\s/',
        "\x00\x07\x08\x0b\x0c\x0e\x1f\x7f",
        "\u2028\u2029 é 中 😀",
        "",
        "a\r\nb\t",
    ],
)
def test_canonical_json_matches_json_dumps(value: str) -> None:
    """The column-wise JSON is the per-row ``json.dumps`` byte for byte, escapes included."""
    obj = _with(1, response=value, model_version=value, tools_used=[value, value])
    obj["messages"][1]["content"] = value
    lines = [Line(1, json.dumps(obj).encode(), False)]
    out = prepare_batch(_spec(), lines, fast=True)
    row = out.tables["interactions"].to_pylist()[0]
    assert row["content_hash"] == content_hash(row, "interactions")


@settings(max_examples=15, deadline=None, database=None)
@given(st.lists(_overrides(INTERACTION_PATHS), min_size=1, max_size=4))
def test_fuzzed_lines_prepare_the_same_on_both_paths(batch: list[Any]) -> None:
    base = {k: v for k, v in CLEAN.items()}
    data = [_line(base, [o for o in overrides if o[0][0] != "feedback"])[0] for overrides in batch]
    _same([Line(n, d, False) for n, d in enumerate(data, 1)])


def test_an_empty_or_all_blank_batch() -> None:
    _same([Line(1, b"", False), Line(2, b"  ", False)])
    _same([])
