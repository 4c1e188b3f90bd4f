"""Done-when of issue 16 for otel-genai and openai-stored: a realistic export, with its feedback,
ingested (format detected) and curated gives the same curated datasets as a canonical file
with the same content.

Core only (no Prefect): the ingest core as the ingest task calls it, then ``curate_agent`` as
the curate task does, each side in its own RATCHET_HOME.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from ratchet.config import load_config
from ratchet.curation.registry import CurationContext, curate_agent
from ratchet.curation.select import Window
from ratchet.db import open_database
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor, resolve_pseudonym_key
from ratchet.schemas import schema_for
from ratchet.settings import get_settings
from ratchet.store import Store
from tests.unit.openai_stored_fixtures import completion, stored_message
from tests.unit.otel_fixtures import Tracer, messages_attr, ns, text, write_lines

AGENT = "shop-assistant"
SYSTEM = "You are the shop's support assistant."
SYSTEM_S = "You are the shop's billing assistant."
SQ1 = "Has my refund for invoice INV-2026-0042 been paid out yet?"
SQ2 = "Could it go to a different bank account?"
SA2 = "Your refund of 42 EUR was paid on 18 November."
SA3 = "Refunds always go back to the original payment method."
SFIX = "Yes: send the new account through the secure form and we will reissue the refund."
Q1 = "Where is my order ORD-2026-118842?"
Q2 = "Can you send it to my office instead?"
ARGS = {"order_id": "ORD-2026-118842"}
RESULT = '{"status": "shipped", "eta": "2026-11-22"}'
A2 = "Your order ORD-2026-118842 has shipped and arrives on 22 November."
A3 = "I can't change the address of a shipped order."
FIX = "Yes: I have asked the carrier to redirect it to your office."


def _iso(ts: str) -> str:
    return datetime.fromisoformat(ts).replace(tzinfo=UTC).isoformat()


def _call(call_id: str = "call_1") -> dict[str, Any]:
    return {
        "id": call_id, "type": "function",
        "function": {"name": "lookup_order", "arguments": json.dumps(ARGS)},
    }  # fmt: skip


# --- otel-genai --------------------------------------------------------------------------------
def _otel_file(path: Path) -> Path:
    """Two turns of one conversation: an agent step (model call, tool, model call) and a turn
    logged with only its new message; evaluation events carry the user's feedback."""
    t = Tracer(service="storefront-api")
    agent_attrs = {
        "gen_ai.operation.name": "invoke_agent", "gen_ai.agent.id": AGENT,
        "gen_ai.agent.name": "Shop assistant", "gen_ai.conversation.id": "conv-7f3a",
        "enduser.id": "cust-812",
    }  # fmt: skip
    with t.span(
        "invoke_agent shop", "2026-11-20T10:00:00", "2026-11-20T10:00:03", agent_attrs
    ) as a:
        with t.span("chat gpt-4.1-mini", "2026-11-20T10:00:00.100", "2026-11-20T10:00:00.900", {
            "gen_ai.operation.name": "chat", "gen_ai.provider.name": "openai",
            "gen_ai.request.model": "gpt-4.1-mini", "gen_ai.request.temperature": 0.2,
            "gen_ai.response.model": "gpt-4.1-mini-2025-04-14", "gen_ai.response.id": "chatcmpl-1",
            "gen_ai.usage.input_tokens": 84, "gen_ai.usage.output_tokens": 17,
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": SYSTEM}]),
            "gen_ai.input.messages": messages_attr([text("user", Q1)]),
            "gen_ai.output.messages": messages_attr([{"role": "assistant", "parts": [
                {"type": "tool_call", "id": "call_1", "name": "lookup_order", "arguments": ARGS}
            ], "finish_reason": "tool_call"}]),
        }, parent=a):  # fmt: skip
            pass
        with t.span("execute_tool lookup_order", "2026-11-20T10:00:01", "2026-11-20T10:00:01.200", {
            "gen_ai.operation.name": "execute_tool", "gen_ai.tool.name": "lookup_order",
            "gen_ai.tool.call.id": "call_1", "gen_ai.tool.call.arguments": json.dumps(ARGS),
            "gen_ai.tool.call.result": RESULT,
        }, parent=a):  # fmt: skip
            pass
        with t.span("chat gpt-4.1-mini", "2026-11-20T10:00:01.300", "2026-11-20T10:00:02.800", {
            "gen_ai.operation.name": "chat", "gen_ai.request.model": "gpt-4.1-mini",
            "gen_ai.response.model": "gpt-4.1-mini-2025-04-14", "gen_ai.response.id": "chatcmpl-2",
            "gen_ai.usage.input_tokens": 130, "gen_ai.usage.output_tokens": 25,
            "gen_ai.system_instructions": json.dumps([{"type": "text", "content": SYSTEM}]),
            "gen_ai.input.messages": messages_attr([
                text("user", Q1),
                {"role": "assistant", "parts": [
                    {"type": "tool_call", "id": "call_1", "name": "lookup_order", "arguments": ARGS}
                ]},
                {"role": "tool", "parts": [
                    {"type": "tool_call_response", "id": "call_1", "response": RESULT}
                ]},
            ]),
            "gen_ai.output.messages": messages_attr([text("assistant", A2, finish_reason="stop")]),
        }, parent=a) as c2:  # fmt: skip
            c2.add_event("gen_ai.evaluation.result", {
                "gen_ai.evaluation.name": "user_feedback", "gen_ai.evaluation.score.value": 5,
                "gen_ai.evaluation.score.label": "pass", "ratchet.feedback.source": "user",
            }, timestamp=ns("2026-11-20T10:01:00"))  # fmt: skip
    with t.span("chat gpt-4.1-mini", "2026-11-20T10:05:00", "2026-11-20T10:05:01.500", {
        "gen_ai.operation.name": "chat", "gen_ai.agent.id": AGENT,
        "gen_ai.conversation.id": "conv-7f3a", "enduser.id": "cust-812",
        "gen_ai.request.model": "gpt-4.1-mini", "gen_ai.response.id": "chatcmpl-3",
        "gen_ai.input.messages": messages_attr([text("user", Q2)]),  # the new message only
        "gen_ai.output.messages": messages_attr([text("assistant", A3, finish_reason="stop")]),
    }) as c3:  # fmt: skip
        c3.add_event("gen_ai.evaluation.result", {
            "gen_ai.evaluation.name": "user_feedback", "gen_ai.evaluation.score.label": "fail",
            "ratchet.feedback.source": "user", "ratchet.feedback.correction": FIX,
        }, timestamp=ns("2026-11-20T10:06:00"))  # fmt: skip
    c1, tool, c2s, agent, c3s = t.finished()
    # the exporter's batches: a child and its parent may land in different requests
    return write_lines(path, [[c1, tool], [c2s, agent], [c3s]])


def _otel_twin() -> list[dict[str, Any]]:
    base = {"agent_id": AGENT, "conversation_id": "conv-7f3a", "user_id": "cust-812"}
    tool_turn = {"role": "assistant", "content": None, "tool_calls": [_call()]}
    tool_result = {"role": "tool", "tool_call_id": "call_1", "content": RESULT}
    turn1 = [{"role": "system", "content": SYSTEM}, {"role": "user", "content": Q1}]
    turn2 = [*turn1, tool_turn, tool_result]
    return [
        {**base, "interaction_id": "chatcmpl-1", "timestamp": _iso("2026-11-20T10:00:00.100"),
         "messages": turn1, "response": tool_turn, "model_version": "gpt-4.1-mini-2025-04-14",
         "latency_ms": 800.0, "prompt_tokens": 84, "completion_tokens": 17,
         "tools_used": ["lookup_order"]},
        {**base, "interaction_id": "chatcmpl-2", "timestamp": _iso("2026-11-20T10:00:01.300"),
         "messages": turn2, "response": {"role": "assistant", "content": A2},
         "model_version": "gpt-4.1-mini-2025-04-14", "latency_ms": 1500.0,
         "prompt_tokens": 130, "completion_tokens": 25,
         "feedback": [{"source": "user", "timestamp": _iso("2026-11-20T10:01:00"), "rating": 5,
                       "thumb": 1, "aspects": {"user_feedback": 5}}]},
        {**base, "interaction_id": "chatcmpl-3", "timestamp": _iso("2026-11-20T10:05:00"),
         "messages": [*turn2, {"role": "assistant", "content": A2}, {"role": "user", "content": Q2}],
         "response": {"role": "assistant", "content": A3}, "model_version": "gpt-4.1-mini",
         "latency_ms": 1500.0,
         "feedback": [{"source": "user", "timestamp": _iso("2026-11-20T10:06:00"), "thumb": -1,
                       "correction": FIX, "aspects": {"user_feedback": "fail"}}]},
    ]  # fmt: skip


# --- openai-stored -----------------------------------------------------------------------------
T1, T2 = 1763632800, 1763633100  # 2025-11-20T10:00:00Z, 10:05:00Z


def _stored_file(path: Path) -> Path:
    meta = {"agent_id": AGENT, "conversation_id": "conv-s1"}
    c1 = completion("chatcmpl-S1", T1, {"content": SA2},
                     {**meta, "rating": "5", "thumb": "up"}, (130, 25))  # fmt: skip
    c2 = completion("chatcmpl-S2", T2, {"content": SA3},
                     {**meta, "thumb": "down", "correction": SFIX}, (160, 12))  # fmt: skip
    page = {"object": "list", "data": [c2, c1], "first_id": "chatcmpl-S2",
            "last_id": "chatcmpl-S1", "has_more": False}  # fmt: skip
    m1 = [
        stored_message("chatcmpl-S1", 0, "system", SYSTEM_S),
        stored_message("chatcmpl-S1", 1, "user", SQ1),
        stored_message("chatcmpl-S1", 2, "assistant", None, tool_calls=[_call()]),
        stored_message("chatcmpl-S1", 3, "tool", RESULT, tool_call_id="call_1"),
    ]
    m2 = [*[{**m, "id": m["id"].replace("S1", "S2")} for m in m1],
          stored_message("chatcmpl-S2", 4, "assistant", SA2),
          stored_message("chatcmpl-S2", 5, "user", SQ2)]  # fmt: skip

    def msg_page(items: list[dict[str, Any]], more: bool) -> dict[str, Any]:
        return {"object": "list", "data": items, "first_id": items[0]["id"],
                "last_id": items[-1]["id"], "has_more": more}  # fmt: skip

    # the messages endpoint pages (20 by default): here S2's history comes in two pages
    lines = [page, msg_page(m1, False), msg_page(m2[:3], True), msg_page(m2[3:], False)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines))
    return path


def _stored_twin() -> list[dict[str, Any]]:
    turn1 = [{"role": "system", "content": SYSTEM_S}, {"role": "user", "content": SQ1},
             {"role": "assistant", "content": None, "tool_calls": [_call()]},
             {"role": "tool", "tool_call_id": "call_1", "content": RESULT}]  # fmt: skip
    base = {"agent_id": AGENT, "conversation_id": "conv-s1", "user_id": "cust-812",
            "model_version": "gpt-4o-2024-08-06"}  # fmt: skip
    return [
        {**base, "interaction_id": "chatcmpl-S1", "timestamp": T1, "messages": turn1,
         "response": SA2, "prompt_tokens": 130, "completion_tokens": 25,
         "feedback": [{"source": "user", "rating": 5, "thumb": "up"}]},
        {**base, "interaction_id": "chatcmpl-S2", "timestamp": T2,
         "messages": [*turn1, {"role": "assistant", "content": SA2},
                      {"role": "user", "content": SQ2}],
         "response": SA3, "prompt_tokens": 160, "completion_tokens": 12,
         "feedback": [{"source": "user", "thumb": "down", "correction": SFIX}]},
    ]  # fmt: skip


# --- the comparison ----------------------------------------------------------------------------
def _curated(home: Path, paths: list[Path], monkeypatch: pytest.MonkeyPatch) -> dict[str, list]:
    """Ingest files (format auto) into their own home, curate, and read every dataset."""
    monkeypatch.setenv("RATCHET_HOME", str(home))
    settings = get_settings()
    config = load_config(settings)
    store, sessions = Store(settings.store_root), open_database(settings)
    redactor = Redactor(config.redaction)
    ictx = IngestContext(
        store=store, sessions=sessions, config=config, redactor=redactor,
        pseudonym_key=resolve_pseudonym_key(settings), now=datetime.now(UTC),
    )  # fmt: skip
    for path in paths:
        report = ingest_file(ictx, path, "auto", "auto")
        assert sum(report.quarantined.values()) == 0, report.quarantined
    ctx = CurationContext(store, sessions, config, redactor, None)
    out = curate_agent(ctx, AGENT, Window(None, datetime.now(UTC) + timedelta(days=1)))
    datasets = {}
    for v in out["versions"]:
        table = store.read_table(v["path"], schema_for(v["kind"]))
        datasets[v["kind"]] = sorted(table.to_pylist(), key=lambda r: json.dumps(r, default=str))
    return datasets


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def test_source_files_curate_like_their_canonical_twins(
    ratchet_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Both exports in one home, their canonical twins in another (one curation each side:
    the scenarios have distinct inputs, so their cases stay apart)."""
    vendor = _curated(
        tmp_path / "vendor-home",
        [_otel_file(tmp_path / "otel.jsonl"), _stored_file(tmp_path / "stored.jsonl")],
        monkeypatch,
    )
    canonical = _curated(
        tmp_path / "canonical-home",
        [_write(tmp_path / "otel-twin.jsonl", _otel_twin()),
         _write(tmp_path / "stored-twin.jsonl", _stored_twin())],
        monkeypatch,
    )  # fmt: skip
    assert vendor == canonical
    cases = {r["interaction_id"] for r in vendor["eval_cases"]}
    assert cases == {"chatcmpl-2", "chatcmpl-3", "chatcmpl-S1", "chatcmpl-S2"}  # both sources
    assert {"sft_examples", "preference_pairs"} <= set(vendor)
