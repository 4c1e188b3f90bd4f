"""otel-genai: OTLP/JSON written by OpenTelemetry's SDK and encoder, mapped to canonical records.

Current GenAI semantic conventions (messages with parts, system instructions, tool-call parts,
execute_tool spans, evaluation events), the older forms (OpenLLMetry's indexed attributes,
per-message span events), both JSON mappings and both file layouts, refusals with their reasons
(redacted in quarantine), and arbitrary attribute values never raising.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from ratchet.config import PipelineConfig
from ratchet.ingest.adapters import FileObject
from ratchet.ingest.prepare import PrepareSpec, prepare_batch
from ratchet.ingest.sources import otel_genai
from ratchet.ingest.sources.detect import map_file, source_lines
from tests.unit.otel_fixtures import Tracer, messages_attr, ns, request_json, text, write_lines

Q = "Where is my order ORD-2026-118842?"


def _records(path: Path) -> list[Any]:
    return map_file(path, "otel-genai", forced=True)


def _chat(t: Tracer, start: str, end: str, attrs: dict[str, Any], parent: Any = None) -> Any:
    with t.span("chat m", start, end, {"gen_ai.operation.name": "chat", **attrs}, parent) as s:
        return s


def test_current_semconv_tool_spans_become_tool_calls_and_history(tmp_path: Path) -> None:
    t = Tracer(service="shop-assistant")
    with t.span("invoke_agent", "2026-11-20T10:00:00", "2026-11-20T10:00:05", {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.name": "Shop assistant",
    }) as agent:  # fmt: skip
        # the model's output names no tool call: the execute_tool span that followed says it
        _chat(t, "2026-11-20T10:00:00", "2026-11-20T10:00:01", {
            "gen_ai.input.messages": messages_attr([text("user", Q)]),
            "gen_ai.output.messages": messages_attr([{"role": "assistant", "parts": []}]),
        }, agent)  # fmt: skip
        with t.span("execute_tool", "2026-11-20T10:00:01", "2026-11-20T10:00:02", {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
            "gen_ai.tool.call.id": "call_9", "gen_ai.tool.call.arguments": '{"id": 1}',
            "gen_ai.tool.call.result": "shipped",
        }, agent):  # fmt: skip
            pass
        # the next call logged only what was new to it: it gets the step's exchange
        _chat(t, "2026-11-20T10:00:02", "2026-11-20T10:00:04", {
            "gen_ai.input.messages": messages_attr([{"role": "tool", "parts": [
                {"type": "tool_call_response", "id": "call_9", "response": "shipped"}]}]),
            "gen_ai.output.messages": messages_attr([text("assistant", "It has shipped.")]),
        }, agent)  # fmt: skip
    spans = t.finished()
    path = write_lines(tmp_path / "t.jsonl", [[spans[0]], [spans[1], spans[2], spans[3]]])
    first, second = [m.record for m in _records(path)]
    call = {"id": "call_9", "type": "function",
            "function": {"name": "lookup_order", "arguments": '{"id": 1}'}}  # fmt: skip
    assert first["response"] == {"role": "assistant", "content": None, "tool_calls": [call]}
    assert first["tools_used"] == ["lookup_order"]
    assert first["agent_id"] == "shop-assistant"  # the name has a space: service.name instead
    assert first["latency_ms"] == 1000.0 and first["timestamp"].startswith("2026-11-20T10:00:00")
    assert second["messages"] == [
        {"role": "user", "content": Q},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "call_9", "content": "shipped"},
    ]
    assert second["otel"]["span_id"] == spans[2].context.span_id.to_bytes(8, "big").hex()
    assert second["interaction_id"] == second["otel"]["span_id"]  # no gen_ai.response.id


def test_openllmetry_indexed_attributes(tmp_path: Path) -> None:
    t = Tracer()
    with t.span("openai.chat", "2026-11-20T11:00:00", "2026-11-20T11:00:02", {
        "llm.request.type": "chat", "gen_ai.system": "openai",
        "gen_ai.request.model": "gpt-4o", "gen_ai.response.model": "gpt-4o-2024-08-06",
        "gen_ai.usage.prompt_tokens": 30, "gen_ai.usage.completion_tokens": 9,
        "gen_ai.prompt.0.role": "system", "gen_ai.prompt.0.content": "Be brief.",
        "gen_ai.prompt.1.role": "user", "gen_ai.prompt.1.content": Q,
        "gen_ai.completion.0.role": "assistant", "gen_ai.completion.0.finish_reason": "tool_calls",
        "gen_ai.completion.0.tool_calls.0.id": "call_1",
        "gen_ai.completion.0.tool_calls.0.name": "lookup_order",
        "gen_ai.completion.0.tool_calls.0.arguments": '{"order_id": "ORD-1"}',
    }):  # fmt: skip
        pass
    (m,) = _records(write_lines(tmp_path / "t.jsonl", [t.finished()]))
    r = m.record
    assert r["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": Q},
    ]
    assert r["response"]["tool_calls"][0]["function"] == {
        "name": "lookup_order",
        "arguments": '{"order_id": "ORD-1"}',
    }
    assert (r["prompt_tokens"], r["completion_tokens"], r["model_version"]) == (
        30,
        9,
        "gpt-4o-2024-08-06",
    )
    assert r["otel"]["finish_reasons"] == ["tool_calls"]
    assert r["otel"]["attributes"]["gen_ai.system"] == "openai"  # unknown: kept in extra
    assert not any(k.startswith("gen_ai.prompt.") for k in r["otel"]["attributes"])


def test_per_message_events_and_snake_case_document(tmp_path: Path) -> None:
    t = Tracer()
    with t.span("chat", "2026-11-20T12:00:00", "2026-11-20T12:00:01", {
        "gen_ai.operation.name": "chat", "gen_ai.conversation.id": "c-1",
    }) as s:  # fmt: skip
        s.add_event("gen_ai.system.message", {"content": "Be brief."})
        s.add_event("gen_ai.user.message", {"content": Q})
        s.add_event("gen_ai.choice", {"index": 0, "finish_reason": "stop",
                                      "message": json.dumps({"content": "Tomorrow."})})  # fmt: skip
    doc = request_json(t.finished(), snake_case=True)  # protobuf's own field names
    path = tmp_path / "trace.json"
    path.write_text(json.dumps(doc, indent=2))  # one pretty-printed document
    (m,) = _records(path)
    assert m.record["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": Q},
    ]
    assert m.record["response"] == {"role": "assistant", "content": "Tomorrow."}
    assert m.record["conversation_id"] == "c-1"


def test_evaluation_events_become_feedback(tmp_path: Path) -> None:
    t = Tracer()
    with t.span("chat", "2026-11-20T12:00:00", "2026-11-20T12:00:01", {
        "gen_ai.operation.name": "chat", "gen_ai.response.id": "resp-1",
        "gen_ai.input.messages": messages_attr([text("user", Q)]),
        "gen_ai.output.messages": messages_attr([text("assistant", "Tomorrow.")]),
    }) as s:  # fmt: skip
        s.add_event("gen_ai.evaluation.result", {
            "gen_ai.evaluation.name": "relevance", "gen_ai.evaluation.score.value": 4.0,
            "gen_ai.evaluation.explanation": "on topic",
        }, timestamp=ns("2026-11-20T12:30:00"))  # fmt: skip
    # an evaluator that ran elsewhere names the response it judged
    with t.span("evaluate", "2026-11-20T13:00:00", "2026-11-20T13:00:01", {}) as e:
        e.add_event("gen_ai.evaluation.result", {
            "gen_ai.evaluation.name": "correctness", "gen_ai.evaluation.score.label": "incorrect",
            "gen_ai.response.id": "resp-1",
        }, timestamp=ns("2026-11-20T13:00:00"))  # fmt: skip
    (m,) = _records(write_lines(tmp_path / "t.jsonl", [t.finished()]))
    assert m.record["feedback"] == [
        {"source": "system", "timestamp": "2026-11-20T12:30:00+00:00", "rating": 4,
         "comment": "on topic", "aspects": {"relevance": 4.0}},
        {"source": "system", "timestamp": "2026-11-20T13:00:00+00:00", "thumb": -1,
         "aspects": {"correctness": "incorrect"}},
    ]  # fmt: skip


def _spec() -> PrepareSpec:
    return PrepareSpec(
        kind="interactions", fmt="canonical", default_agent="bot", source="f" * 64,
        source_name="t.jsonl", config=PipelineConfig(), key=b"k" * 32,
        now=datetime(2026, 11, 30, tzinfo=UTC), redaction_version="test",
    )  # fmt: skip


def test_refusals_name_the_adapter_and_piece_and_are_redacted(tmp_path: Path) -> None:
    t = Tracer()
    _chat(t, "2026-11-20T12:00:00", "2026-11-20T12:00:01", {
        "gen_ai.input.messages": messages_attr([text("user", "mail me at jane.doe@example.com")]),
    })  # fmt: skip
    # a good span on the same line (one request): the quarantine row shows the refused one
    _chat(t, "2026-11-20T12:01:00", "2026-11-20T12:01:01", {
        "gen_ai.input.messages": messages_attr([text("user", "hello")]),
        "gen_ai.output.messages": messages_attr([text("assistant", "hi")]),
    })  # fmt: skip
    path = write_lines(tmp_path / "t.jsonl", [t.finished()])
    path.write_text(path.read_text() + '{"not": "a trace"}\nnot json\n')
    batch = prepare_batch(_spec(), list(source_lines(path, "otel-genai", True, 1 << 20)))
    got = [(q["source_line"], q["reason"], q["detail"]) for q in batch.quarantine]
    assert got == [
        (1, "missing_field", "otel-genai: span has no output (gen_ai.output.messages, "
         "gen_ai.completion.N.* or gen_ai.choice events)"),
        (2, "missing_field", "otel-genai: resourceSpans is required (an OTLP "
         "ExportTraceServiceRequest)"),
        (3, "not_json", "line is not valid JSON"),
    ]  # fmt: skip
    assert "mail me at" in batch.quarantine[0]["raw_redacted"]
    assert "jane.doe@example.com" not in batch.quarantine[0]["raw_redacted"]
    assert batch.tables["interactions"].num_rows == 1


def test_spans_without_genai_content_are_not_interactions(tmp_path: Path) -> None:
    t = Tracer()
    with t.span(
        "GET /orders", "2026-11-20T12:00:00", "2026-11-20T12:00:01", {"http.method": "GET"}
    ):
        pass
    assert _records(write_lines(tmp_path / "t.jsonl", [t.finished()])) == []


_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=8),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=8,
)
_keys = st.sampled_from([
    "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
    "gen_ai.operation.name", "gen_ai.prompt.0.content", "gen_ai.completion.0.role",
    "gen_ai.completion.0.tool_calls.0.name", "gen_ai.response.id", "gen_ai.agent.id",
    "gen_ai.tool.call.id", "startTimeUnixNano",
])  # fmt: skip


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    attrs=st.dictionaries(_keys, _values, max_size=6),
    span_fields=st.dictionaries(st.sampled_from(["spanId", "parentSpanId", "startTimeUnixNano",
                                                 "endTimeUnixNano", "events", "name"]), _values),
)  # fmt: skip
def test_arbitrary_values_map_or_refuse_never_raise(attrs: dict, span_fields: dict) -> None:
    def any_value(v: Any) -> dict[str, Any]:
        return {"stringValue": json.dumps(v)} if not isinstance(v, str) else {"stringValue": v}

    span = {
        "traceId": "0af7651916cd43dd8448eb211c80319c",
        "spanId": "b7ad6b7169203331",
        "startTimeUnixNano": "1795168800000000000",
        "endTimeUnixNano": "1795168801000000000",
        "attributes": [{"key": k, "value": any_value(v)} for k, v in attrs.items()],
        **span_fields,
    }
    obj = {"resourceSpans": [{"scopeSpans": [{"spans": [span]}]}]}
    for m in otel_genai.map_objects([FileObject(1, obj)]):
        assert (m.record is None) != (m.reject is None)
        if m.reject is not None:
            assert m.reject.detail.startswith("otel-genai: ")
