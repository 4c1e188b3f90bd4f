"""Adapters from log formats people already have to the canonical interaction object.

Each adapter maps one parsed JSON object to a canonical interaction dict (then validated by
:func:`ratchet.ingest.records.parse_interaction` like any other line), or raises ``Reject``.

OpenAI chat-completions logs (``--format openai-chat``), one object per line, the request you
sent and the response you got::

    {"request": {"model": "gpt-4.1-mini", "messages": [{"role": "user", "content": "Where is my
      order ORD-2026-118842?"}], "tools": [...], "user": "cust-812",
      "metadata": {"agent_id": "shop-assistant", "topic": "orders"}},
     "response": {"id": "chatcmpl-9x...", "object": "chat.completion", "created": 1761984000,
      "model": "gpt-4.1-mini-2025-04-14", "choices": [{"index": 0, "message": {"role":
      "assistant", "content": null, "tool_calls": [{"id": "call_1", "type": "function",
      "function": {"name": "lookup_order", "arguments": "{\\"order_id\\": \\"ORD-2026-118842\\"}"}}]},
      "finish_reason": "tool_calls"}], "usage": {"prompt_tokens": 84, "completion_tokens": 17}},
     "agent_id": "shop-assistant", "latency_ms": 812}

Mapping: ``interaction_id`` = ``response.id``; ``agent_id`` = the line's ``agent_id``, else
``request.metadata.agent_id``, else ``--agent``; ``timestamp`` = ``response.created`` (epoch
seconds, UTC) or the line's ``timestamp``; ``messages`` = ``request.messages``; ``response`` =
the first choice's message (content and tool calls); ``model_version`` = ``response.model``;
``user_id`` = ``request.user``; tokens from ``usage``; ``metadata`` = ``request.metadata``
without ``agent_id``; the request's other parameters (``temperature``, ``tools``...) go to
``extra.request``.
"""

from __future__ import annotations

from typing import Any

from ratchet.ingest.records import Reject

FORMATS = ("canonical", "openai-chat")


def looks_like_openai_chat(obj: Any) -> bool:
    return isinstance(obj, dict) and isinstance(obj.get("request"), dict) and "response" in obj


def from_openai_chat(obj: dict[str, Any]) -> dict[str, Any]:
    request = obj.get("request")
    response = obj.get("response")
    if not isinstance(request, dict):
        raise Reject("missing_field", "request is required (openai-chat)")
    if not isinstance(response, dict):
        raise Reject("missing_field", "response is required (openai-chat)")
    choices = response.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        raise Reject("missing_field", "response.choices[0] is required (openai-chat)")
    message = choices[0].get("message")
    if not isinstance(message, dict):
        raise Reject("missing_field", "response.choices[0].message is required (openai-chat)")
    metadata = request.get("metadata")
    metadata = dict(metadata) if isinstance(metadata, dict) else {}
    agent = obj.get("agent_id") or metadata.pop("agent_id", None)
    metadata.pop("agent_id", None)
    raw_usage = response.get("usage")
    usage: dict[str, Any] = raw_usage if isinstance(raw_usage, dict) else {}
    rest = {k: v for k, v in request.items() if k not in {"messages", "model", "user", "metadata"}}
    out: dict[str, Any] = {
        "interaction_id": response.get("id"),
        "timestamp": obj.get("timestamp", response.get("created")),
        "messages": request.get("messages"),
        "response": message,
        "model_version": response.get("model") or request.get("model"),
        "user_id": request.get("user"),
        "prompt_tokens": usage.get("prompt_tokens"),
        "completion_tokens": usage.get("completion_tokens"),
        "latency_ms": obj.get("latency_ms"),
        "metadata": metadata or None,
    }
    if agent is not None:
        out["agent_id"] = agent
    finish = choices[0].get("finish_reason")
    extra: dict[str, Any] = {}
    if rest:
        extra["request"] = rest
    if finish is not None:
        extra["finish_reason"] = finish
    for key in ("conversation_id", "consent", "feedback", "cost_usd", "schema_version"):
        if key in obj:
            out[key] = obj[key]
    if extra:
        out["openai"] = extra  # unknown to the canonical form: kept in `extra`
    return out
