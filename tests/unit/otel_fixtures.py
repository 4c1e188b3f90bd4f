"""OTLP/JSON trace files written with OpenTelemetry's own SDK and encoder (no network).

Spans are made by the SDK's tracer into its in-memory exporter, encoded into an
``ExportTraceServiceRequest`` by ``opentelemetry-exporter-otlp-proto-common`` and written with
protobuf's ``json_format``: the file a Collector's file exporter would hold (one request per
line), or one pretty-printed document.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from google.protobuf.json_format import MessageToDict
from opentelemetry import trace
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter


def ns(ts: str) -> int:
    """Epoch nanoseconds of an ISO time (UTC)."""
    return int(datetime.fromisoformat(ts).replace(tzinfo=UTC).timestamp() * 1_000_000_000)


class Tracer:
    """A tracer whose finished spans stay in memory, in the order they ended."""

    def __init__(self, service: str = "shop-assistant") -> None:
        self.exporter = InMemorySpanExporter()
        provider = TracerProvider(resource=Resource.create({"service.name": service}))
        provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = provider.get_tracer("ratchet-tests.genai", "1.0")

    @contextmanager
    def span(
        self, name: str, start: str, end: str, attributes: dict[str, Any] | None = None,
        parent: trace.Span | None = None,
    ) -> Iterator[trace.Span]:  # fmt: skip
        context = trace.set_span_in_context(parent) if parent is not None else None
        span = self.tracer.start_span(
            name, context=context, kind=trace.SpanKind.CLIENT, start_time=ns(start),
            attributes={k: v for k, v in (attributes or {}).items() if v is not None},
        )  # fmt: skip
        try:
            yield span
        finally:
            span.end(end_time=ns(end))

    def finished(self) -> list[ReadableSpan]:
        return list(self.exporter.get_finished_spans())


def request_json(spans: list[ReadableSpan], snake_case: bool = False) -> dict[str, Any]:
    """The spans as one ExportTraceServiceRequest in protobuf's JSON mapping."""
    return MessageToDict(encode_spans(spans), preserving_proto_field_name=snake_case)


def write_lines(path: Path, requests: list[list[ReadableSpan]]) -> Path:
    """One request per line, as the Collector's file exporter writes them."""
    path.write_text("".join(json.dumps(request_json(r)) + "\n" for r in requests))
    return path


def messages_attr(messages: list[dict[str, Any]]) -> str:
    """``gen_ai.input.messages`` / ``gen_ai.output.messages`` as instrumentations record them:
    JSON text (OTel attributes cannot hold nested objects)."""
    return json.dumps(messages)


def text(role: str, content: str, **extra: Any) -> dict[str, Any]:
    return {"role": role, "parts": [{"type": "text", "content": content}], **extra}
