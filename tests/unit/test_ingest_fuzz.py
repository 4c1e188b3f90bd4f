"""Property test of the line parser and batch preparation: whatever JSON value lands in whatever
field, every line ends stored, quarantined (with a known reason) or dropped for consent; nothing
raises, and the counts add up."""

from __future__ import annotations

import copy
import json
from collections import Counter
from datetime import UTC, datetime
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ratchet.config import PipelineConfig
from ratchet.ingest.prepare import PrepareSpec, prepare_batch, quarantine_table
from ratchet.ingest.reader import Line
from ratchet.schemas import QUARANTINE_REASONS

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)
CONFIG = PipelineConfig.model_validate({"ingest": {"batch_size": 100, "max_quarantine_share": 1.0}})
BIG_INT = "\x00BIG"  # replaced in the line's text by a 5,000-digit integer (json.dumps cannot)

CALL = {"id": "call_1", "type": "function", "function": {"name": "f", "arguments": "{}"}}
BASE_INTERACTION: dict[str, Any] = {
    "schema_version": "1.0", "interaction_id": "int-1", "agent_id": "shop", "conversation_id": "c-1",
    "timestamp": "2026-11-02T10:00:00Z", "user_id": "cust-1", "model_version": "m",
    "messages": [{"role": "user", "content": "hi", "name": "n"},
                 {"role": "assistant", "content": None, "tool_calls": [CALL]},
                 {"role": "tool", "content": "ok", "tool_call_id": "call_1"}],
    "response": {"role": "assistant", "content": "done", "tool_calls": [CALL]},
    "tools_used": ["f"], "sources": ["s"], "latency_ms": 1.5, "prompt_tokens": 3,
    "completion_tokens": 4, "cost_usd": 0.1, "consent": True, "metadata": {"topic": "x"},
    "feedback": {"thumb": 1, "rating": 5, "comment": "good"},
}  # fmt: skip
BASE_FEEDBACK: dict[str, Any] = {
    "schema_version": "1.0", "feedback_id": "fb-1", "interaction_id": "int-1", "agent_id": "shop",
    "timestamp": "2026-11-02T10:05:00Z", "source": "user", "annotator": "a", "rating": 4,
    "thumb": -1, "correction": "c", "comment": "x", "aspects": {"tone": 1},
}  # fmt: skip
# Where a value may land: top-level fields, nested message / tool-call / inline-feedback leaves.
INTERACTION_PATHS = [
    *[(k,) for k in BASE_INTERACTION], ("unknown_field",),
    ("messages", 0), ("messages", 0, "role"), ("messages", 0, "content"), ("messages", 0, "name"),
    ("messages", 1, "tool_calls"), ("messages", 1, "tool_calls", 0),
    ("messages", 1, "tool_calls", 0, "id"), ("messages", 1, "tool_calls", 0, "type"),
    ("messages", 1, "tool_calls", 0, "function"), ("messages", 1, "tool_calls", 0, "function", "name"),
    ("messages", 1, "tool_calls", 0, "function", "arguments"), ("messages", 2, "tool_call_id"),
    ("response", "content"), ("response", "tool_calls", 0, "type"), ("response", "tool_calls", 0, "id"),
    *[("feedback", k) for k in BASE_FEEDBACK],
]  # fmt: skip
FEEDBACK_PATHS = [*[(k,) for k in BASE_FEEDBACK], ("unknown_field",)]
BASE_OPENAI: dict[str, Any] = {
    "request": {"model": "m", "messages": [{"role": "user", "content": "hi"}], "user": "u-1",
                "metadata": {"agent_id": "shop", "topic": "x"}, "temperature": 0.2},
    "response": {"id": "chatcmpl-1", "created": 1761984000, "model": "m-2025",
                 "choices": [{"index": 0, "finish_reason": "tool_calls",
                              "message": {"role": "assistant", "content": None, "tool_calls": [CALL]}}],
                 "usage": {"prompt_tokens": 3, "completion_tokens": 4}},
    "latency_ms": 5, "feedback": {"thumb": -1},
}  # fmt: skip
OPENAI_PATHS = [
    ("request",), ("response",), ("latency_ms",), ("feedback",), ("agent_id",), ("timestamp",),
    *[("request", k) for k in ("model", "messages", "user", "metadata", "temperature")],
    ("request", "metadata", "agent_id"), ("request", "messages", 0), ("request", "messages", 0, "content"),
    *[("response", k) for k in ("id", "created", "model", "choices", "usage")],
    ("response", "choices", 0), ("response", "choices", 0, "message"),
    ("response", "choices", 0, "message", "content"), ("response", "choices", 0, "message", "tool_calls"),
    ("response", "choices", 0, "message", "tool_calls", 0, "type"), ("response", "usage", "prompt_tokens"),
]  # fmt: skip

scalars = st.one_of(
    st.none(), st.booleans(), st.just(BIG_INT),
    st.integers(min_value=-(2**80), max_value=2**80), st.floats(allow_nan=True, allow_infinity=True),
    st.text(st.characters(codec=None, categories=None), max_size=12),  # lone surrogates included
    st.sampled_from(["", "user", "function", "2026-11-02T10:00:00", "jane@example.com", "1.0", "9.0"]),
)  # fmt: skip
json_values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=3),
        st.dictionaries(st.text(max_size=6), inner, max_size=3),
    ),
    max_leaves=8,
)


def _put(obj: Any, path: tuple[Any, ...], value: Any) -> None:
    *head, last = path
    for step in head:
        try:
            obj = obj[step]
        except (KeyError, IndexError, TypeError):
            return  # an earlier override replaced the container: nothing left to reach
    if (isinstance(obj, dict) and isinstance(last, str)) or (
        isinstance(obj, list) and isinstance(last, int) and last < len(obj)
    ):
        obj[last] = value


def _line(
    base: dict[str, Any], overrides: list[tuple[tuple[Any, ...], Any]]
) -> tuple[bytes, dict[str, Any]]:
    obj = copy.deepcopy(base)
    for path, value in overrides:
        _put(obj, path, value)
    text = json.dumps(obj, ensure_ascii=True, allow_nan=True).replace(
        json.dumps(BIG_INT), "9" * 5000
    )
    return text.encode(), obj


def _spec(kind: str) -> PrepareSpec:
    return PrepareSpec(
        kind=kind, fmt="auto", default_agent=None, source="f" * 64, source_name="fuzz.jsonl",
        config=CONFIG, key=b"k" * 32, now=NOW, redaction_version="fuzz",
    )  # fmt: skip


def _overrides(
    paths: list[tuple[Any, ...]],
) -> st.SearchStrategy[list[tuple[tuple[Any, ...], Any]]]:
    return st.lists(st.tuples(st.sampled_from(paths), json_values), min_size=1, max_size=4)


def _check(kind: str, objs: list[dict[str, Any]], data: list[bytes]) -> None:
    lines = [Line(n, d, False) for n, d in enumerate(data, 1)]
    out = prepare_batch(_spec(kind), lines)  # must not raise
    assert out.lines == len(lines) and out.blank == 0
    quarantine_table(out.quarantine)  # quarantine rows always fit their table
    assert {q["reason"] for q in out.quarantine} <= set(QUARANTINE_REASONS)
    assert not any("could not be read" in (q["detail"] or "") for q in out.quarantine), [
        q["detail"] for q in out.quarantine
    ]  # every value the fuzzer finds has a rule of its own, not the last-resort net
    own = "interaction" if kind == "interactions" else "feedback"
    stored = Counter(
        r
        for r in (out.tables[kind].column("source_line").to_pylist() if kind in out.tables else [])
    )
    feedback = Counter(
        out.tables["feedback"].column("source_line").to_pylist() if "feedback" in out.tables else []
    )
    rejected = Counter((q["source_line"], q["record_kind"]) for q in out.quarantine)
    consent_drops = 0
    for n, obj in enumerate(objs, 1):
        mine = stored[n] + rejected[(n, own)]
        if kind == "feedback":
            assert mine == 1, (n, obj)
            continue
        if mine == 0:  # neither stored nor quarantined: only a consent drop may do that
            assert obj.get("consent") is False, (n, obj)
            consent_drops += 1
            assert feedback[n] == rejected[(n, "feedback")] == 0
            continue
        assert mine == 1, (n, obj)
        inline = obj.get("feedback")
        events = 0 if inline is None else len(inline) if isinstance(inline, list) else 1
        if stored[n]:  # every inline event of a stored interaction: stored or quarantined
            assert feedback[n] + rejected[(n, "feedback")] == events, (n, obj)
        else:  # a quarantined line is quarantined whole
            assert feedback[n] == rejected[(n, "feedback")] == 0
    assert sum(stored.values()) + sum(
        v for (_, k), v in rejected.items() if k == own
    ) + consent_drops == len(objs)


FUZZ = settings(
    max_examples=30, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow]
)


@FUZZ
@given(st.lists(_overrides(INTERACTION_PATHS), min_size=1, max_size=4))
def test_any_value_in_any_interaction_field_is_stored_or_quarantined(batch: list[Any]) -> None:
    pairs = [_line(BASE_INTERACTION, o) for o in batch]
    _check("interactions", [o for _, o in pairs], [d for d, _ in pairs])


@FUZZ
@given(st.lists(_overrides(FEEDBACK_PATHS), min_size=1, max_size=4))
def test_any_value_in_any_feedback_field_is_stored_or_quarantined(batch: list[Any]) -> None:
    pairs = [_line(BASE_FEEDBACK, o) for o in batch]
    _check("feedback", [o for _, o in pairs], [d for d, _ in pairs])


@FUZZ
@given(st.lists(_overrides(OPENAI_PATHS), min_size=1, max_size=4))
def test_any_value_in_an_openai_chat_log_line_is_stored_or_quarantined(batch: list[Any]) -> None:
    pairs = [_line(BASE_OPENAI, o) for o in batch]
    _check("interactions", [o for _, o in pairs], [d for d, _ in pairs])
