"""--format auto: each file's format told by the shape of its first objects; an ambiguous file
refused with a message that names the candidates; objects of several shapes in one source file
each mapped by their own format."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.cli import app
from ratchet.config import PipelineConfig
from ratchet.ingest.adapters import AmbiguousFormat, detect_format
from ratchet.ingest.inputs import sniff_kind
from ratchet.ingest.pipeline import IngestContext, IngestError, ingest_file
from ratchet.ingest.sources.detect import head_objects, map_file, source_format
from ratchet.redaction import Redactor
from tests.unit.openai_stored_fixtures import completion, stored_message
from tests.unit.otel_fixtures import Tracer, messages_attr, request_json, text

CANONICAL = {"interaction_id": "i1", "timestamp": "2026-11-20T10:00:00Z",
             "messages": [{"role": "user", "content": "hi"}], "response": "hello"}  # fmt: skip
FEEDBACK = {"interaction_id": "i1", "timestamp": "2026-11-20T10:00:00Z", "thumb": 1}
OPENAI_CHAT = {"request": {"messages": [{"role": "user", "content": "hi"}]},
               "response": {"id": "c1", "choices": []}}  # fmt: skip


def _otlp() -> dict[str, Any]:
    t = Tracer()
    with t.span("chat", "2026-11-20T10:00:00", "2026-11-20T10:00:01", {
        "gen_ai.operation.name": "chat", "gen_ai.input.messages": messages_attr([text("user", "hi")]),
        "gen_ai.output.messages": messages_attr([text("assistant", "hello")]),
    }):  # fmt: skip
        pass
    return request_json(t.finished())


def _stored_page() -> dict[str, Any]:
    return {"object": "list", "data": [completion("cmpl-1", 1763632800, {"content": "hello"},
                                                   {"agent_id": "bot"}, (1, 1))]}  # fmt: skip


def _write(path: Path, objs: list[Any]) -> Path:
    path.write_text("".join(json.dumps(o) + "\n" for o in objs))
    return path


@pytest.mark.parametrize(
    ("objects", "expected"),
    [
        ([CANONICAL], "canonical"),
        ([FEEDBACK], "canonical"),
        ([OPENAI_CHAT, CANONICAL], "openai-chat"),  # the two line formats mix, as they always did
        ([{"unrelated": 1}, _otlp()], "otel-genai"),
        ([_stored_page()], "openai-stored"),
        (
            [{"object": "list", "data": [stored_message("cmpl-1", 0, "user", "hi")]}],
            "openai-stored",
        ),
        ([FEEDBACK, _stored_page()], "openai-stored"),  # canonical feedback rides along
        ([{"unrelated": 1}, "text", 3], None),
    ],
)
def test_detect_format_picks_the_format(objects: list[Any], expected: str | None) -> None:
    assert detect_format(objects) == expected


def test_an_object_of_two_shapes_is_ambiguous() -> None:
    with pytest.raises(
        AmbiguousFormat, match=r"several formats \(canonical, otel-genai\); pass --format"
    ):
        detect_format([{**_otlp(), "messages": [{"role": "user", "content": "hi"}]}])


def test_a_file_mixing_interaction_formats_is_ambiguous() -> None:
    with pytest.raises(
        AmbiguousFormat, match=r"mixes interaction formats \(otel-genai, openai-stored\)"
    ):
        detect_format([_otlp(), _stored_page()])


def test_an_otlp_document_is_read_not_skipped(tmp_path: Path) -> None:
    """A pretty-printed OTLP .json used to be taken for a manifest (not a record) and skipped."""
    path = tmp_path / "traces.json"
    path.write_text(json.dumps(_otlp(), indent=2))
    assert sniff_kind(path) == "interactions"
    assert source_format(path, "auto") == "otel-genai"
    assert head_objects(path)[0]["resourceSpans"]
    manifest = tmp_path / "manifest.json"
    manifest.write_text(json.dumps({"files": ["a.jsonl"]}, indent=2))
    assert sniff_kind(manifest) == "not_records"


def test_forced_and_line_formats(tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [CANONICAL])
    assert source_format(path, "auto") is None  # the ordinary streamed line path
    assert source_format(path, "canonical") is None
    assert source_format(path, "otel-genai") == "otel-genai"
    (refused,) = map_file(path, "otel-genai", forced=True)
    assert refused.reject.detail.startswith("otel-genai: resourceSpans is required")


def test_objects_of_a_source_file_each_go_to_their_own_format(tmp_path: Path) -> None:
    stored = _stored_page()
    messages = {"object": "list", "data": [stored_message("cmpl-1", 0, "user", "hi")]}
    fb = {**FEEDBACK, "interaction_id": "cmpl-1", "agent_id": "bot"}
    out = map_file(
        _write(tmp_path / "s.jsonl", [stored, fb, messages, {"odd": 1}]), "openai-stored", False
    )
    kinds = [
        (m.line, m.kind, m.reject.detail if m.reject else m.record.get("interaction_id"))
        for m in out
    ]
    assert kinds == [
        (1, "interaction", "cmpl-1"), (2, "feedback", "cmpl-1"),
        (4, "interaction", "openai-stored: not a chat.completion object nor a list page (object, data)"),
    ]  # fmt: skip


def test_ingest_refuses_an_ambiguous_file_naming_the_candidates(tmp_path: Path) -> None:
    config = PipelineConfig()
    ctx = IngestContext(
        store=None, sessions=None, config=config, redactor=Redactor(config.redaction),  # type: ignore[arg-type]
        pseudonym_key=b"k" * 32, now=datetime(2026, 11, 30, tzinfo=UTC),
    )  # fmt: skip
    path = _write(tmp_path / "mixed.jsonl", [_otlp(), _stored_page()])
    with pytest.raises(
        IngestError, match=r"mixed\.jsonl .*mixes interaction formats \(otel-genai, openai-stored\)"
    ):
        ingest_file(ctx, path, "auto", "auto")


def test_cli_refuses_an_unknown_format(ratchet_env: Path, tmp_path: Path) -> None:
    path = _write(tmp_path / "c.jsonl", [CANONICAL])
    result = CliRunner().invoke(app, ["ingest", str(path), "--format", "splunk"])
    assert result.exit_code == 2
    assert (
        "--format must be auto or one of canonical, openai-chat, otel-genai, openai-stored"
        in result.output
    )


def test_a_forced_source_refuses_what_it_cannot_map_even_a_canonical_line(
    ratchet_env: Path, tmp_path: Path
) -> None:
    """The refusal holds the line as it came: it is quarantined, never read as a record (the
    vectorised path for canonical lines must not see a source's refusals)."""
    from ratchet.config import load_config
    from ratchet.db import open_database
    from ratchet.redaction import resolve_pseudonym_key
    from ratchet.settings import get_settings
    from ratchet.store import Store

    settings = get_settings()
    config = load_config(settings)
    ctx = IngestContext(
        store=Store(settings.store_root), sessions=open_database(settings), config=config,
        redactor=Redactor(config.redaction), pseudonym_key=resolve_pseudonym_key(settings),
        now=datetime(2026, 11, 30, tzinfo=UTC),
    )  # fmt: skip
    path = _write(tmp_path / "c.jsonl", [{**CANONICAL, "agent_id": "bot"}])
    report = ingest_file(ctx, path, "auto", "otel-genai")
    assert dict(report.stored) in ({}, {"interactions": 0})
    assert dict(report.quarantined) == {"missing_field": 1}
