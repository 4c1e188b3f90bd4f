"""Chat messages as tracers record them, to OpenAI chat messages (the canonical form).

Langfuse and LangSmith store whatever the instrumented code handed them, so one export holds
several shapes of the same message:

- OpenAI chat messages (``{"role": "user", "content": ...}``), sometimes with LangChain's role
  names (``human``, ``ai``) or LangChain-style tool calls (``{"name", "args", "id"}``);
- LangChain's serialised messages (``{"lc": 1, "type": "constructor", "id": [..., "HumanMessage"],
  "kwargs": {"content": ..., "tool_calls": [...]}}``), as LangSmith stores a chat model's inputs
  and generations;
- LangChain's ``message_to_dict`` form (``{"type": "human", "data": {"content": ...}}``) and its
  plain dict form (``{"type": "ai", "content": ...}``).

Each becomes ``{"role", "content", "tool_calls"?, "tool_call_id"?, "name"?}``; content parts are
kept as given (validation keeps their text and notes the rest). A value that is none of these
gives ``None``, and the caller refuses the record naming what it missed.
"""

from __future__ import annotations

import json
from typing import Any

_ROLE_OF_TYPE = {
    "human": "user",
    "user": "user",
    "ai": "assistant",
    "assistant": "assistant",
    "system": "system",
    "developer": "developer",
    "tool": "tool",
    "function": "function",
    "humanmessage": "user",
    "humanmessagechunk": "user",
    "aimessage": "assistant",
    "aimessagechunk": "assistant",
    "systemmessage": "system",
    "toolmessage": "tool",
    "functionmessage": "function",
}


def _role(value: Any) -> str | None:
    return _ROLE_OF_TYPE.get(value.lower()) if isinstance(value, str) else None


def tool_calls(value: Any) -> list[dict[str, Any]] | None:
    """OpenAI tool calls from OpenAI's or LangChain's form (``args`` as an object)."""
    if not isinstance(value, list) or not value:
        return None
    out = []
    for call in value:
        if not isinstance(call, dict):
            continue
        if isinstance(call.get("function"), dict):
            out.append(call)
            continue
        args = call.get("args", call.get("arguments"))
        out.append(
            {
                "id": call.get("id"),
                "type": "function",
                "function": {
                    "name": call.get("name"),
                    "arguments": args if isinstance(args, str) else json.dumps(args or {}),
                },
            }
        )
    return out or None


def _from_fields(role: str, fields: dict[str, Any]) -> dict[str, Any]:
    msg: dict[str, Any] = {"role": role, "content": fields.get("content")}
    extra = fields.get("additional_kwargs")
    extra = extra if isinstance(extra, dict) else {}
    calls = tool_calls(fields.get("tool_calls")) or tool_calls(extra.get("tool_calls"))
    if calls:
        msg["tool_calls"] = calls
    for key in ("tool_call_id", "name"):
        if isinstance(fields.get(key), str):
            msg[key] = fields[key]
    if msg["content"] == "" and calls:
        msg["content"] = None
    return msg


def chat_message(value: Any) -> dict[str, Any] | None:
    """One message in any shape above as an OpenAI chat message, or None."""
    if not isinstance(value, dict):
        return None
    if value.get("lc") is not None and isinstance(value.get("kwargs"), dict):
        ids = value.get("id")
        kwargs = value["kwargs"]
        role = _role(ids[-1]) if isinstance(ids, list) and ids else None
        role = role or _role(kwargs.get("role")) or _role(kwargs.get("type"))
        return _from_fields(role, kwargs) if role else None
    if "role" in value:
        role = _role(value.get("role"))
        return _from_fields(role, value) if role else None
    if isinstance(value.get("data"), dict) and _role(value.get("type")):
        return _from_fields(_role(value["type"]) or "", value["data"])
    if "content" in value and _role(value.get("type")):
        return _from_fields(_role(value["type"]) or "", value)
    return None


def chat_messages(value: Any) -> list[dict[str, Any]] | None:
    """A list of messages (a LangChain batch ``[[...]]`` gives its first prompt), or None when
    any item is not a message."""
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], list):
        value = value[0]
    if not isinstance(value, list) or not value:
        return None
    out = [chat_message(m) for m in value]
    return None if any(m is None for m in out) else out  # type: ignore[return-value]


def first_text(value: Any) -> str | None:
    """A plain prompt or answer given as text (a string, or a one-string list)."""
    if isinstance(value, str):
        return value
    if isinstance(value, list) and len(value) == 1 and isinstance(value[0], str):
        return value[0]
    return None


__all__ = ["chat_message", "chat_messages", "first_text", "tool_calls"]
