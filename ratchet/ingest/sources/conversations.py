"""Join the turns of a conversation that a source logged one per span or run.

Tracers often record a turn with only what was new in it (the user's latest message, or a tool
result), leaving the history in earlier spans. An interaction must carry the history its answer
was given (curation, training and replay read ``messages`` alone), so every source's mapped
interactions go through :func:`join_conversations` before validation.

The rule, per conversation (``agent_id`` + ``conversation_id``; records without a conversation
id are left alone), turns ordered by timestamp then by their order in the file:

- the previous turn's full exchange is its (joined) messages plus its answer as an assistant
  message (text and tool calls);
- a turn whose messages already start with that exchange (the common case: the model was sent
  the whole history) is kept as it is;
- a turn whose messages start with the *end* of that exchange (a tracer that logged the last
  few messages) gets the missing beginning prepended;
- a turn that starts the conversation afresh (its first message is the conversation's first)
  is kept as it is: it carries a history of its own;
- any other turn gets the whole previous exchange prepended.

Leading ``system``/``developer`` messages stay first: the turn's own, else the previous turn's.
Nothing is invented: only messages and answers that the file itself holds are copied.
"""

from __future__ import annotations

import json
import logging
from datetime import UTC, datetime
from typing import Any

logger = logging.getLogger(__name__)
_LEADING = frozenset({"system", "developer"})


def _text(content: Any) -> Any:
    """Comparable form of a message's content (parts reduced to their text)."""
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text", "")) if isinstance(p, dict) else str(p)
            for p in content
            if not isinstance(p, dict) or p.get("type") in (None, "text")
        )
    return content


def _calls(value: Any) -> Any:
    if not isinstance(value, list):
        return None
    out = []
    for call in value:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            args = fn.get("arguments")
            if not isinstance(args, str):
                args = json.dumps(args, sort_keys=True)
            out.append((fn.get("name"), args))
    return tuple(out) or None


def _key(msg: Any) -> Any:
    """What makes two messages the same one (ids assigned by the tracer are ignored)."""
    if not isinstance(msg, dict):
        return ("?", json.dumps(msg, sort_keys=True, default=str))
    content = _text(msg.get("content"))
    if content == "":
        content = None
    return (msg.get("role"), content, msg.get("tool_call_id"), _calls(msg.get("tool_calls")))


def answer_message(response: Any) -> dict[str, Any] | None:
    """A turn's answer as the assistant message the next turn would have been sent."""
    if isinstance(response, str):
        return {"role": "assistant", "content": response}
    if isinstance(response, dict):
        msg: dict[str, Any] = {"role": "assistant", "content": response.get("content")}
        if response.get("tool_calls"):
            msg["tool_calls"] = response["tool_calls"]
        return msg
    return None


def _split(messages: list[Any]) -> tuple[list[Any], list[Any]]:
    n = 0
    while (
        n < len(messages) and isinstance(messages[n], dict) and messages[n].get("role") in _LEADING
    ):
        n += 1
    return messages[:n], messages[n:]


def _when(value: Any) -> float:
    """Sort key of a timestamp; an unreadable one sorts last (validation will refuse it)."""
    try:
        if isinstance(value, bool):
            return float("inf")
        if isinstance(value, int | float):
            return float(value) / 1000 if value > 1e11 else float(value)
        if isinstance(value, str):
            ts = datetime.fromisoformat(value.strip())
            return (ts if ts.tzinfo else ts.replace(tzinfo=UTC)).timestamp()
    except (ValueError, OverflowError, OSError):
        pass
    return float("inf")


def join_turn(previous: list[Any], messages: list[Any]) -> list[Any]:
    """``messages`` with the part of ``previous`` (the full earlier exchange) it lacks."""
    prev_lead, prev_body = _split(previous)
    lead, body = _split(messages)
    prev_keys = [_key(m) for m in prev_body]
    keys = [_key(m) for m in body]
    if not prev_keys or keys[: len(prev_keys)] == prev_keys:
        return messages
    if keys and keys[0] == prev_keys[0]:
        return messages  # starts the conversation again: a history of its own
    overlap = 0
    for j in range(min(len(prev_keys), len(keys)), 0, -1):
        if prev_keys[-j:] == keys[:j]:
            overlap = j
            break
    return (lead or prev_lead) + prev_body[: len(prev_body) - overlap] + body


def join_conversations(records: list[dict[str, Any]]) -> int:
    """Give each interaction of a conversation its full history, in place; returns how many
    interactions got messages prepended (see the module docstring for the rule)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for i, rec in enumerate(records):
        conv = rec.get("conversation_id")
        if isinstance(conv, str | int) and not isinstance(conv, bool) and str(conv):
            agent = rec.get("agent_id")
            groups.setdefault((str(agent or ""), str(conv)), []).append(i)
    joined = 0
    for members in groups.values():
        if len(members) < 2:
            continue
        members.sort(key=lambda i: (_when(records[i].get("timestamp")), i))
        previous: list[Any] | None = None
        for i in members:
            rec = records[i]
            messages = rec.get("messages")
            if not isinstance(messages, list):
                previous = None  # refused later; the chain restarts at the next readable turn
                continue
            if previous is not None:
                full = join_turn(previous, messages)
                if len(full) != len(messages):
                    rec["messages"] = full
                    joined += 1
                    messages = full
            answer = answer_message(rec.get("response"))
            previous = messages + ([answer] if answer is not None else [])
    if joined:
        logger.info("conversations: %d turn(s) given the history of earlier turns", joined)
    return joined


__all__ = ["answer_message", "join_conversations", "join_turn"]
