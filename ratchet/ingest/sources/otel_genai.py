"""OpenTelemetry GenAI traces as OTLP/JSON (``--format otel-genai``).

Files as the Collector's file exporter writes them: one ``ExportTraceServiceRequest`` per line
(``{"resourceSpans": [{"resource", "scopeSpans": [{"scope", "spans": [...]}]}]}``), or one such
document per file. Field names in lowerCamelCase (OTLP/JSON) or snake_case (protobuf's
``preserving_proto_field_name``), ids in hex (OTLP/JSON) or base64 (protobuf JSON), times as
strings or numbers, span kinds as numbers or names: all are read. Spans are joined across the
whole file (a child may be exported in another request than its parent).

**Which spans.** A *model span* (operation ``chat``, ``text_completion``, ``generate_content``,
or any span holding GenAI messages) is one interaction. An ``invoke_agent`` span lends its
agent and conversation to the spans under it, and is an interaction itself only when it holds
messages and no model span under it does. ``execute_tool`` spans become tool calls. Spans with
no GenAI content (HTTP, database...) are not records: they are counted in the log.

Mapping to the canonical interaction (attributes looked up on the span, then its ancestors for
agent, conversation and user):

=======================  ============================================================================
``interaction_id``       ``gen_ai.response.id``, else the span id (hex)
``timestamp``            ``startTimeUnixNano``;  ``latency_ms`` = end - start
``messages``             ``gen_ai.system_instructions`` (a system message) + ``gen_ai.input.messages``
                         (``parts``: ``text`` → content, ``tool_call`` → tool_calls,
                         ``tool_call_response`` → a ``tool`` message; other parts kept as parts);
                         older: ``gen_ai.prompt.N.{role,content,tool_call_id,tool_calls.M.*}``
                         (OpenLLMetry), or span events ``gen_ai.{system,user,assistant,tool}.message``
                         / ``gen_ai.content.prompt`` (``gen_ai.prompt``)
``response``             ``gen_ai.output.messages[0]``; older ``gen_ai.completion.0.*``, events
                         ``gen_ai.choice`` / ``gen_ai.content.completion``; when it names no tool
                         call, the ``execute_tool`` spans it led to (children, or the siblings
                         before the next model span) give them: ``gen_ai.tool.call.id``,
                         ``gen_ai.tool.name``, ``gen_ai.tool.call.arguments``
``tools_used``           the names of those tool calls
``agent_id``             ``gen_ai.agent.id``, else ``gen_ai.agent.name`` when it is a valid id, else the
                         resource's ``service.name``, else ``--agent``
``conversation_id``      ``gen_ai.conversation.id`` (else ``session.id``)
``user_id``              ``enduser.id`` / ``user.id``
``model_version``        ``gen_ai.response.model``, else ``gen_ai.request.model``
``prompt_tokens`` etc.   ``gen_ai.usage.input_tokens`` / ``output_tokens`` (older ``prompt_tokens`` /
                         ``completion_tokens``)
``feedback``             span events ``gen_ai.evaluation.result`` (on the span, or naming its
                         ``gen_ai.response.id``): ``gen_ai.evaluation.score.value`` an integer 1-5 →
                         ``rating``; ``gen_ai.evaluation.score.label`` pass/correct/relevant/up →
                         thumb +1, fail/incorrect/not_relevant/down → -1; ``explanation`` →
                         comment; ``gen_ai.evaluation.name`` → ``aspects``; the event's time →
                         ``timestamp``; ``ratchet.feedback.correction`` / ``.annotator`` →
                         correction / annotator; source ``system`` unless the event says
                         ``ratchet.feedback.source`` (user, expert)
extra ``otel``           trace and span ids, span name, operation, provider, finish reasons, the
                         request parameters and every other attribute, resource and scope
=======================  ============================================================================

A turn logged with only its new messages gets the earlier turns of its trace (model spans under
one parent, with the tool results between them) and, across traces, of its conversation
(:mod:`ratchet.ingest.sources.conversations`). Refused, naming ``otel-genai`` and the piece: an
object without ``resourceSpans``; a model span without a start time, input messages or output.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from ratchet.ingest.adapters import FileKind, FileObject, Mapped
from ratchet.ingest.sources.conversations import answer_message, join_turn
from ratchet.store import valid_agent_id

NAME = "otel-genai"
logger = logging.getLogger(__name__)
MODEL_OPERATIONS = frozenset({"chat", "text_completion", "generate_content"})
_EVENT_ROLES = {
    "gen_ai.system.message": "system", "gen_ai.user.message": "user",
    "gen_ai.assistant.message": "assistant", "gen_ai.tool.message": "tool",
}  # fmt: skip
_THUMB_LABELS = {
    "pass": 1, "correct": 1, "relevant": 1, "up": 1, "thumbs_up": 1, "good": 1, "positive": 1,
    "fail": -1, "incorrect": -1, "not_relevant": -1, "down": -1, "thumbs_down": -1, "bad": -1,
    "negative": -1,
}  # fmt: skip
_INDEXED = re.compile(r"^gen_ai\.(prompt|completion)\.([0-9]+)\.(.+)$")
_TOOL_INDEXED = re.compile(r"^tool_calls\.([0-9]+)\.(.+)$")
_MAPPED = frozenset(
    {
        "gen_ai.input.messages", "gen_ai.output.messages", "gen_ai.system_instructions",
        "gen_ai.conversation.id", "gen_ai.agent.id", "gen_ai.response.id", "gen_ai.response.model",
        "gen_ai.usage.input_tokens", "gen_ai.usage.output_tokens", "gen_ai.usage.prompt_tokens",
        "gen_ai.usage.completion_tokens", "session.id", "enduser.id", "user.id",
    }
)  # fmt: skip


def _g(d: Any, camel: str, snake: str) -> Any:
    return d.get(camel, d.get(snake)) if isinstance(d, dict) else None


def detect(obj: Any) -> FileKind | None:
    """An OTLP trace export request (OTLP/JSON or protobuf's snake_case JSON)."""
    if isinstance(obj, dict) and isinstance(_g(obj, "resourceSpans", "resource_spans"), list):
        return "interactions"
    return None


# --- OTLP/JSON values ------------------------------------------------------------------------
def _value(v: Any) -> Any:
    """An OTLP ``AnyValue`` as a Python value (int64 arrive as strings in JSON)."""
    if not isinstance(v, dict):
        return v
    for camel, snake in (("stringValue", "string_value"), ("boolValue", "bool_value"),
                         ("doubleValue", "double_value")):  # fmt: skip
        if camel in v or snake in v:
            return _g(v, camel, snake)
    if "intValue" in v or "int_value" in v:
        raw = _g(v, "intValue", "int_value")
        try:
            return int(raw)
        except (TypeError, ValueError):
            return raw
    if "arrayValue" in v or "array_value" in v:
        inner = _g(v, "arrayValue", "array_value") or {}
        return [_value(x) for x in inner.get("values", [])] if isinstance(inner, dict) else []
    if "kvlistValue" in v or "kvlist_value" in v:
        inner = _g(v, "kvlistValue", "kvlist_value") or {}
        return _attrs(inner.get("values", [])) if isinstance(inner, dict) else {}
    if "bytesValue" in v or "bytes_value" in v:
        return _g(v, "bytesValue", "bytes_value")
    return None


def _attrs(items: Any) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for kv in items if isinstance(items, list) else []:
        if isinstance(kv, dict) and isinstance(kv.get("key"), str):
            out[kv["key"]] = _value(kv.get("value"))
    return out


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _json(value: Any) -> Any:
    """An attribute that may hold JSON text (most instrumentations serialise messages)."""
    if isinstance(value, str) and value[:1] in ("[", "{"):
        try:
            return json.loads(value)
        except ValueError:
            return value
    return value


def _hex_id(value: Any) -> str | None:
    """A trace or span id as lowercase hex, whichever JSON mapping wrote it."""
    if not isinstance(value, str) or not value:
        return None
    if re.fullmatch(r"[0-9a-fA-F]{16}|[0-9a-fA-F]{32}", value):
        return value.lower()
    try:
        return base64.b64decode(value, validate=True).hex()
    except (binascii.Error, ValueError):
        return value


def _nanos(value: Any) -> int | None:
    try:
        n = int(value)
    except (TypeError, ValueError):
        return None
    return n if n > 0 else None


@dataclass
class _Span:
    line: int
    raw: dict[str, Any]
    span_id: str | None
    parent_id: str | None
    trace_id: str | None
    name: str
    start: int | None
    end: int | None
    attrs: dict[str, Any]
    events: list[tuple[str, dict[str, Any], int | None]]  # name, attributes, time
    resource: dict[str, Any]
    scope: dict[str, Any]
    children: list[_Span] = field(default_factory=list)
    parent: _Span | None = None
    io: tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None] | None = None  # _io's

    @property
    def operation(self) -> str | None:
        op = self.attrs.get("gen_ai.operation.name")
        return op if isinstance(op, str) else None

    def inherited(self, *keys: str) -> Any:
        span: _Span | None = self
        while span is not None:
            for key in keys:
                if span.attrs.get(key) not in (None, ""):
                    return span.attrs[key]
            span = span.parent
        return None


def _spans(objects: list[FileObject]) -> tuple[list[_Span], list[Mapped]]:
    spans: list[_Span] = []
    refused: list[Mapped] = []
    for o in objects:
        resource_spans = _g(o.obj, "resourceSpans", "resource_spans")
        if not isinstance(resource_spans, list):
            refused.append(Mapped.refused(
                o.line, "interaction", "missing_field",
                f"{NAME}: resourceSpans is required (an OTLP ExportTraceServiceRequest)",
                json.dumps(o.obj, default=str).encode()[:65536],
            ))  # fmt: skip
            continue
        for rs in resource_spans:
            if not isinstance(rs, dict):
                continue
            res = rs.get("resource")
            resource = _attrs(res.get("attributes")) if isinstance(res, dict) else {}
            scope_spans = _g(rs, "scopeSpans", "scope_spans") or rs.get(
                "instrumentationLibrarySpans"
            )
            for ss in scope_spans if isinstance(scope_spans, list) else []:
                if not isinstance(ss, dict):
                    continue
                scope_obj = ss.get("scope")
                scope: dict[str, Any] = scope_obj if isinstance(scope_obj, dict) else {}
                for sp in _list(ss.get("spans")):
                    if not isinstance(sp, dict):
                        continue
                    events = [
                        (str(e.get("name")), _attrs(e.get("attributes")),
                         _nanos(_g(e, "timeUnixNano", "time_unix_nano")))
                        for e in _list(sp.get("events")) if isinstance(e, dict)
                    ]  # fmt: skip
                    spans.append(_Span(
                        line=o.line, raw=sp, span_id=_hex_id(_g(sp, "spanId", "span_id")),
                        parent_id=_hex_id(_g(sp, "parentSpanId", "parent_span_id")),
                        trace_id=_hex_id(_g(sp, "traceId", "trace_id")), name=str(sp.get("name", "")),
                        start=_nanos(_g(sp, "startTimeUnixNano", "start_time_unix_nano")),
                        end=_nanos(_g(sp, "endTimeUnixNano", "end_time_unix_nano")),
                        attrs=_attrs(sp.get("attributes")), events=events, resource=resource,
                        scope={k: v for k, v in scope.items() if k in ("name", "version")},
                    ))  # fmt: skip
    by_id = {(s.trace_id, s.span_id): s for s in spans if s.span_id}
    for s in spans:
        parent = by_id.get((s.trace_id, s.parent_id)) if s.parent_id else None
        if parent is not None and parent is not s:
            s.parent = parent
            parent.children.append(s)
    return spans, refused


# --- messages --------------------------------------------------------------------------------
def _tool_call(call_id: Any, name: Any, arguments: Any) -> dict[str, Any]:
    args = (
        arguments
        if isinstance(arguments, str) or arguments is None
        else json.dumps(arguments, ensure_ascii=False)
    )
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def _from_parts(message: dict[str, Any]) -> list[dict[str, Any]]:
    """One semconv message (role + parts) as chat messages (tool responses each their own)."""
    role = message.get("role")
    parts = message.get("parts")
    if not isinstance(parts, list):  # some write OpenAI-shaped messages under the new names
        return [message]
    texts: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    out: list[dict[str, Any]] = []
    for part in parts:
        kind = part.get("type") if isinstance(part, dict) else None
        if kind == "text":
            texts.append({"type": "text", "text": part.get("content")})
        elif kind == "tool_call":
            calls.append(_tool_call(part.get("id"), part.get("name"), part.get("arguments")))
        elif kind == "tool_call_response":
            response = part.get("response", part.get("result"))
            result = (
                response if isinstance(response, str) else json.dumps(response, ensure_ascii=False)
            )
            out.append({"role": "tool", "tool_call_id": part.get("id"), "content": result})
        else:
            texts.append(part if isinstance(part, dict) else {"type": "unknown"})
    if texts or calls or not out:
        content: Any = None
        if texts and all(t.get("type") == "text" for t in texts):
            content = "\n".join(str(t.get("text") or "") for t in texts)
        elif texts:
            content = texts
        msg: dict[str, Any] = {"role": role, "content": content}
        if calls:
            msg["tool_calls"] = calls
        if message.get("name") is not None:
            msg["name"] = message["name"]
        if message.get("finish_reason") is not None:
            msg["finish_reason"] = message["finish_reason"]
        out.insert(0, msg)
    return out


def _semconv_messages(value: Any) -> list[dict[str, Any]] | None:
    value = _json(value)
    if not isinstance(value, list):
        return None
    out: list[dict[str, Any]] = []
    for m in value:
        out.extend(_from_parts(m) if isinstance(m, dict) else [{"role": None, "content": m}])
    return out


def _indexed(attrs: dict[str, Any], which: str) -> list[dict[str, Any]] | None:
    """OpenLLMetry's ``gen_ai.prompt.N.*`` / ``gen_ai.completion.N.*`` attributes."""
    found: dict[int, dict[str, Any]] = {}
    for key, value in attrs.items():
        m = _INDEXED.match(key)
        if m and m[1] == which:
            found.setdefault(int(m[2]), {})[m[3]] = value
    if not found:
        return None
    out = []
    for _, fields in sorted(found.items()):
        calls: dict[int, dict[str, Any]] = {}
        for key, value in fields.items():
            t = _TOOL_INDEXED.match(key)
            if t:
                calls.setdefault(int(t[1]), {})[t[2]] = value
        msg: dict[str, Any] = {"role": fields.get("role"), "content": fields.get("content")}
        if fields.get("finish_reason") is not None:
            msg["finish_reason"] = fields["finish_reason"]
        if fields.get("tool_call_id") is not None:
            msg["tool_call_id"] = fields["tool_call_id"]
        if calls:
            msg["tool_calls"] = [
                _tool_call(c.get("id"), c.get("name"), c.get("arguments"))
                for _, c in sorted(calls.items())
            ]
        out.append(msg)
    return out


def _event_messages(span: _Span) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """Per-message span events (semconv 1.27-1.36) and the older content events."""
    inputs: list[dict[str, Any]] = []
    outputs: list[dict[str, Any]] = []
    for name, a, _ in span.events:
        if name in _EVENT_ROLES:
            msg: dict[str, Any] = {
                "role": a.get("role") or _EVENT_ROLES[name],
                "content": _json(a.get("content")),
            }
            calls = _json(a.get("tool_calls"))
            if isinstance(calls, list) and calls:
                msg["tool_calls"] = calls
            if a.get("id") is not None and msg["role"] == "tool":
                msg["tool_call_id"] = a["id"]
            inputs.append(msg)
        elif name == "gen_ai.choice":
            message = _json(a.get("message"))
            message = dict(message) if isinstance(message, dict) else {"content": a.get("content")}
            message.setdefault("role", "assistant")
            outputs.append(message)
        elif name == "gen_ai.content.prompt":
            prompt = _json(a.get("gen_ai.prompt"))
            inputs.extend(m for m in _list(prompt) if isinstance(m, dict))
        elif name == "gen_ai.content.completion":
            completion = _json(a.get("gen_ai.completion"))
            for c in completion if isinstance(completion, list) else []:
                if isinstance(c, dict):
                    message = c.get("message")
                    outputs.append(message if isinstance(message, dict) else c)
    return inputs or None, outputs or None


def _io(span: _Span) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    """The span's input and output messages, whichever form holds them (read once)."""
    if span.io is None:
        span.io = _read_io(span)
    return span.io


def _read_io(span: _Span) -> tuple[list[dict[str, Any]] | None, list[dict[str, Any]] | None]:
    a = span.attrs
    inputs = _semconv_messages(a.get("gen_ai.input.messages"))
    outputs = _semconv_messages(a.get("gen_ai.output.messages"))
    if inputs is None:
        inputs = _indexed(a, "prompt")
    if outputs is None:
        outputs = _indexed(a, "completion")
    if inputs is None or outputs is None:
        ev_in, ev_out = _event_messages(span)
        inputs = inputs if inputs is not None else ev_in
        outputs = outputs if outputs is not None else ev_out
    system = _json(a.get("gen_ai.system_instructions"))
    if isinstance(system, list | str) and system:
        text = (
            system
            if isinstance(system, str)
            else "\n".join(str(p.get("content") if isinstance(p, dict) else p) for p in system)
        )
        if inputs is not None and not any(m.get("role") == "system" for m in inputs):
            inputs = [{"role": "system", "content": text}, *inputs]
    return inputs, outputs


def _has_content(span: _Span) -> bool:
    inputs, outputs = _io(span)
    return inputs is not None or outputs is not None


# --- interactions ----------------------------------------------------------------------------
def _iso(nanos: int) -> str:
    return datetime.fromtimestamp(nanos / 1e9, tz=UTC).isoformat()


def _model_spans(spans: list[_Span]) -> list[_Span]:
    """Spans that are interactions (see the module docstring)."""
    model = [
        s for s in spans
        if s.operation in MODEL_OPERATIONS
        or (s.operation not in ("invoke_agent", "create_agent", "execute_tool") and _has_content(s))
    ]  # fmt: skip
    chosen = {id(s) for s in model}

    def under_model(span: _Span) -> bool:
        stack = list(span.children)
        while stack:
            child = stack.pop()
            if id(child) in chosen and _has_content(child):
                return True
            stack.extend(child.children)
        return False

    agents = [
        s for s in spans if s.operation == "invoke_agent" and _has_content(s) and not under_model(s)
    ]
    return sorted(model + agents, key=lambda s: (s.start or 0, s.line))


def _tools_after(span: _Span, siblings: list[_Span], model_ids: set[int]) -> list[_Span]:
    """The execute_tool spans this model call led to: its children, or the siblings that start
    after it ends and before the next model span of the same parent starts."""
    tools = [c for c in span.children if c.operation == "execute_tool"]
    if tools:
        return sorted(tools, key=lambda s: s.start or 0)
    end = span.end or span.start or 0
    following = sorted(
        (s for s in siblings if s is not span and (s.start or 0) >= end), key=lambda s: s.start or 0
    )
    out = []
    for s in following:
        if id(s) in model_ids:
            break
        if s.operation == "execute_tool":
            out.append(s)
    return out


def _tool_spans_as_calls(tools: list[_Span]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    calls, results = [], []
    for t in tools:
        call_id = t.attrs.get("gen_ai.tool.call.id") or t.span_id
        calls.append(
            _tool_call(
                call_id,
                t.attrs.get("gen_ai.tool.name"),
                _json(t.attrs.get("gen_ai.tool.call.arguments")),
            )
        )
        result = t.attrs.get("gen_ai.tool.call.result")
        if result is not None:
            content = result if isinstance(result, str) else json.dumps(result, ensure_ascii=False)
            results.append({"role": "tool", "tool_call_id": call_id, "content": content})
    return calls, results


def _response(outputs: list[dict[str, Any]]) -> dict[str, Any]:
    first = outputs[0]
    response: dict[str, Any] = {"role": "assistant", "content": first.get("content")}
    calls = [c for m in outputs for c in _list(m.get("tool_calls"))]
    if calls:
        response["tool_calls"] = calls
    return response


def _agent(span: _Span) -> str | None:
    agent = span.inherited("gen_ai.agent.id")
    if isinstance(agent, str | int) and str(agent):
        return str(agent)
    name = span.inherited("gen_ai.agent.name")
    if isinstance(name, str) and valid_agent_id(name):
        return name
    service = span.resource.get("service.name")
    return service if isinstance(service, str) and valid_agent_id(service) else None


def _feedback(events: list[tuple[dict[str, Any], int | None]]) -> list[dict[str, Any]]:
    out = []
    for a, when in events:
        event: dict[str, Any] = {"source": a.get("ratchet.feedback.source") or "system"}
        if when is not None:
            event["timestamp"] = _iso(when)
        score = a.get("gen_ai.evaluation.score.value")
        if (
            isinstance(score, int | float)
            and not isinstance(score, bool)
            and float(score).is_integer()
            and 1 <= score <= 5
        ):
            event["rating"] = int(score)
        label = a.get("gen_ai.evaluation.score.label")
        if isinstance(label, str) and label.strip().lower() in _THUMB_LABELS:
            event["thumb"] = _THUMB_LABELS[label.strip().lower()]
        if a.get("gen_ai.evaluation.explanation") is not None:
            event["comment"] = a["gen_ai.evaluation.explanation"]
        name = a.get("gen_ai.evaluation.name")
        if name is not None:
            event["aspects"] = {str(name): score if score is not None else label}
        if a.get("ratchet.feedback.correction") is not None:
            event["correction"] = a["ratchet.feedback.correction"]
        if a.get("ratchet.feedback.annotator") is not None:
            event["annotator"] = a["ratchet.feedback.annotator"]
        rest = {
            k: v for k, v in a.items()
            if not k.startswith(("gen_ai.evaluation.", "ratchet.feedback.")) and k != "gen_ai.response.id"
        }  # fmt: skip
        if rest:
            event["otel"] = rest
        out.append(event)
    return out


def _interaction(span: _Span, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]],
                 tools: list[_Span]) -> dict[str, Any]:  # fmt: skip
    a = span.attrs
    response = _response(outputs)
    calls, _ = _tool_spans_as_calls(tools)
    if calls and not response.get("tool_calls"):
        response["tool_calls"] = calls
    names = [c["function"]["name"] for c in response.get("tool_calls") or [] if isinstance(c, dict)
             and isinstance(c.get("function"), dict) and c["function"].get("name")]  # fmt: skip
    start, end = span.start or 0, span.end
    record: dict[str, Any] = {
        "interaction_id": a.get("gen_ai.response.id") or span.span_id,
        "timestamp": _iso(start),
        "messages": inputs,
        "response": response,
        "model_version": a.get("gen_ai.response.model") or a.get("gen_ai.request.model"),
        "conversation_id": span.inherited("gen_ai.conversation.id", "session.id"),
        "user_id": span.inherited("enduser.id", "user.id"),
        "latency_ms": (end - start) / 1e6 if end and end >= start else None,
        "prompt_tokens": a.get("gen_ai.usage.input_tokens", a.get("gen_ai.usage.prompt_tokens")),
        "completion_tokens": a.get(
            "gen_ai.usage.output_tokens", a.get("gen_ai.usage.completion_tokens")
        ),
        "tools_used": names or None,
    }
    agent = _agent(span)
    if agent is not None:
        record["agent_id"] = agent
    extra: dict[str, Any] = {
        "trace_id": span.trace_id,
        "span_id": span.span_id,
        "span_name": span.name,
    }
    finish = [m.get("finish_reason") for m in outputs if m.get("finish_reason")]
    if finish:
        extra["finish_reasons"] = finish
    attributes = {
        k: v for k, v in a.items()
        if k not in _MAPPED and not _INDEXED.match(k) and k not in ("gen_ai.request.model",)
    }  # fmt: skip
    if attributes:
        extra["attributes"] = attributes
    if span.resource:
        extra["resource"] = span.resource
    if span.scope:
        extra["scope"] = span.scope
    record["otel"] = extra  # unknown to the canonical form: kept in `extra`
    return record


def _refuse(span: _Span, detail: str) -> Mapped:
    raw = json.dumps(span.raw, ensure_ascii=False, default=str).encode()[:65536]
    return Mapped.refused(span.line, "interaction", "missing_field", f"{NAME}: {detail}", raw)


def map_objects(objects: list[FileObject], config: Any = None) -> Iterator[Mapped]:
    """The file's GenAI spans to interactions with their feedback (module docstring)."""
    spans, refused = _spans(objects)
    yield from refused
    models = _model_spans(spans)
    model_ids = {id(s) for s in models}
    roots: dict[str | None, list[_Span]] = {}
    for s in spans:
        if s.parent is None:
            roots.setdefault(s.trace_id, []).append(s)
    evaluations: dict[str, list[tuple[dict[str, Any], int | None]]] = {}
    for s in spans:  # evaluation events that name a response rather than ride on its span
        for name, a, when in s.events:
            rid = a.get("gen_ai.response.id")
            if name == "gen_ai.evaluation.result" and rid and id(s) not in model_ids:
                evaluations.setdefault(str(rid), []).append((a, when))
    previous: dict[Any, list[dict[str, Any]]] = {}  # per parent: the exchange so far
    skipped = (
        len(spans)
        - len(models)
        - sum(1 for s in spans if s.operation in ("execute_tool", "invoke_agent"))
    )
    for span in models:
        inputs, outputs = _io(span)
        if span.start is None:
            yield _refuse(span, "span has no startTimeUnixNano (the interaction's timestamp)")
            continue
        if not inputs:
            yield _refuse(
                span,
                "span has no input messages (gen_ai.input.messages, gen_ai.prompt.N.* or message events)",
            )
            continue
        if not outputs:
            yield _refuse(
                span,
                "span has no output (gen_ai.output.messages, gen_ai.completion.N.* or gen_ai.choice events)",
            )
            continue
        siblings = span.parent.children if span.parent else roots.get(span.trace_id, [])
        tools = _tools_after(span, siblings, model_ids)
        record = _interaction(span, inputs, outputs, tools)
        key = (span.trace_id, id(span.parent) if span.parent else None)
        if key in previous:  # a later model call of the same agent step: give it the exchange
            record["messages"] = join_turn(previous[key], inputs)
        _, results = _tool_spans_as_calls(tools)
        answer = answer_message(record["response"])
        previous[key] = record["messages"] + ([answer] if answer else []) + results
        own = [(a, when) for name, a, when in span.events if name == "gen_ai.evaluation.result"]
        own += evaluations.get(str(record["interaction_id"]), [])
        if own:
            record["feedback"] = _feedback(own)
        yield Mapped.interaction(span.line, record)
    if skipped > 0:
        logger.info("%s: %d span(s) without GenAI content are not interactions", NAME, skipped)
