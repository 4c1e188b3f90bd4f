"""OpenAI stored chat completions (``--format openai-stored``).

What a team saves from the Chat Completions store: the list endpoint's pages
(``GET /v1/chat/completions``: ``{"object": "list", "data": [<chat.completion>...], "first_id",
"last_id", "has_more"}``) or single completion objects (``GET /v1/chat/completions/{id}``),
one per line or as one document, and the messages endpoint's pages
(``GET /v1/chat/completions/{id}/messages``: ``{"object": "list", "data": [{"id":
"<completion id>-<n>", "role", "content", "name", "content_parts"}...]}``), in the same file.
A completion is stored with the input messages that name it (the store's message ids are the
completion's id and the message's index; a page may also say ``completion_id`` itself, and
several pages of one completion are put together in index order).

Mapping to the canonical interaction:

==========================  =============================================================
``interaction_id``          ``id``
``timestamp``               ``created`` (epoch seconds, UTC)
``messages``                the messages endpoint's ``data`` (role, content or
                            ``content_parts``, name, tool_call_id, tool_calls)
``response``                ``choices[0].message`` (content, tool calls)
``model_version``           ``model``
``user_id``                 ``input_user`` (else ``metadata.user_id``)
``agent_id``                ``metadata.agent_id`` (else ``--agent``)
``conversation_id``         ``metadata.conversation_id``
``prompt_tokens`` etc.      ``usage.prompt_tokens`` / ``usage.completion_tokens``
``metadata``                ``metadata`` without the keys above and the feedback keys
``feedback``                ``metadata.rating`` ("1".."5"), ``metadata.thumb`` ("up",
                            "down", "1", "-1"), ``metadata.correction``,
                            ``metadata.feedback_comment``: what a team writes back with
                            ``POST /v1/chat/completions/{id}`` (metadata is the only field the
                            store lets one update); one user feedback event, timed ``created``
extra ``openai``            everything else: ``request_id``, ``seed``, ``temperature``,
                            ``top_p``, ``tools``, ``tool_choice``, ``service_tier``,
                            ``system_fingerprint``, ``response_format``, ``finish_reason``...
==========================  =============================================================

Refused (quarantined, reason naming ``openai-stored`` and the missing piece): a completion with
no ``id``, no ``choices[0].message`` or no input messages in the file; a messages page whose
completion is not in the file, or whose message ids do not name a completion.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from typing import Any

from ratchet.ingest.adapters import FileKind, FileObject, Mapped

NAME = "openai-stored"
_MESSAGE_ID = re.compile(r"^(?P<completion>.+)-(?P<index>[0-9]+)$")
_KNOWN = {"id", "object", "created", "model", "choices", "usage", "metadata", "input_user"}
_META_FIELDS = ("agent_id", "conversation_id", "user_id")
_FEEDBACK_KEYS = ("rating", "thumb", "correction", "feedback_comment")


def _is_completion(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("object") == "chat.completion" and "choices" in obj


def _is_message(obj: Any) -> bool:
    return isinstance(obj, dict) and "role" in obj and "id" in obj and "choices" not in obj


def detect(obj: Any) -> FileKind | None:
    """A completion, a page of completions, or a page of stored input messages."""
    if _is_completion(obj):
        return "interactions"
    if isinstance(obj, dict) and obj.get("object") == "list":
        data = obj.get("data")
        if isinstance(data, list) and data and (_is_completion(data[0]) or _is_message(data[0])):
            return "interactions"
    return None


def _raw(obj: Any) -> bytes:
    return json.dumps(obj, ensure_ascii=False, default=str).encode()


def _message(msg: dict[str, Any]) -> dict[str, Any]:
    """A stored input message as a chat message (parts when the text is in content_parts)."""
    content = msg.get("content")
    if content is None and isinstance(msg.get("content_parts"), list):
        content = msg["content_parts"]
    out: dict[str, Any] = {"role": msg.get("role"), "content": content}
    for key in ("name", "tool_call_id", "tool_calls"):
        if msg.get(key) is not None:
            out[key] = msg[key]
    return out


def _feedback(meta: dict[str, Any]) -> dict[str, Any] | None:
    event: dict[str, Any] = {}
    rating = meta.pop("rating", None)
    if rating is not None:
        try:
            event["rating"] = int(str(rating).strip())
        except ValueError:
            event["rating"] = rating  # refused by validation, naming the rule
    thumb = meta.pop("thumb", None)
    if thumb is not None:
        event["thumb"] = str(thumb).strip().lower()
    for key, target in (("correction", "correction"), ("feedback_comment", "comment")):
        value = meta.pop(key, None)
        if value is not None:
            event[target] = value
    if not event:
        return None
    event["source"] = "user"
    return event


def _completion(obj: dict[str, Any], messages: list[dict[str, Any]]) -> dict[str, Any]:
    choice = obj["choices"][0]
    meta = dict(obj["metadata"]) if isinstance(obj.get("metadata"), dict) else {}
    fields = {k: meta.pop(k) for k in _META_FIELDS if k in meta}
    feedback = _feedback(meta)
    usage = obj.get("usage") if isinstance(obj.get("usage"), dict) else {}
    extra = {k: v for k, v in obj.items() if k not in _KNOWN and v is not None}
    for key in ("finish_reason", "logprobs"):
        if choice.get(key) is not None:
            extra[key] = choice[key]
    if isinstance(usage, dict):
        details = {
            k: v
            for k, v in usage.items()
            if k not in {"prompt_tokens", "completion_tokens", "total_tokens"}
        }
        if details:
            extra["usage"] = details
    message = choice["message"]
    response = {"role": "assistant", "content": message.get("content")}
    if message.get("tool_calls"):
        response["tool_calls"] = message["tool_calls"]
    for key in ("refusal", "annotations", "audio", "function_call"):
        if message.get(key):
            extra.setdefault("message", {})[key] = message[key]
    record: dict[str, Any] = {
        "interaction_id": obj.get("id"),
        "timestamp": obj.get("created"),
        "messages": [_message(m) for m in messages],
        "response": response,
        "model_version": obj.get("model"),
        "user_id": obj.get("input_user") or fields.get("user_id"),
        "prompt_tokens": usage.get("prompt_tokens") if isinstance(usage, dict) else None,
        "completion_tokens": usage.get("completion_tokens") if isinstance(usage, dict) else None,
        "metadata": meta or None,
    }
    for key in ("agent_id", "conversation_id"):
        if fields.get(key) is not None:
            record[key] = fields[key]
    if feedback is not None:
        record["feedback"] = [feedback]
    if extra:
        record["openai"] = extra  # unknown to the canonical form: kept in `extra`
    return record


def map_objects(objects: list[FileObject], config: Any = None) -> Iterator[Mapped]:
    """Completions joined with their input messages (see the module docstring)."""
    completions: list[tuple[int, dict[str, Any]]] = []
    messages: dict[str, list[tuple[int, dict[str, Any]]]] = {}
    message_lines: dict[str, int] = {}
    for o in objects:
        obj = o.obj
        if _is_completion(obj):
            completions.append((o.line, obj))
            continue
        data = obj.get("data") if isinstance(obj, dict) and obj.get("object") == "list" else None
        if not isinstance(data, list):
            yield Mapped.refused(
                o.line, "interaction", "missing_field",
                f"{NAME}: not a chat.completion object nor a list page (object, data)", _raw(obj),
            )  # fmt: skip
            continue
        named = obj.get("completion_id")
        for item in data:
            if _is_completion(item):
                completions.append((o.line, item))
                continue
            match = _MESSAGE_ID.match(str(item.get("id"))) if _is_message(item) else None
            owner = named if isinstance(named, str) and named else match and match["completion"]
            if not owner:
                yield Mapped.refused(
                    o.line, "interaction", "missing_field",
                    f"{NAME}: a stored message needs role and an id <completion id>-<n> "
                    "(or the page's completion_id)", _raw(item),
                )  # fmt: skip
                continue
            index = int(match["index"]) if match else len(messages.get(owner, []))
            messages.setdefault(owner, []).append((index, item))
            message_lines.setdefault(owner, o.line)
    used: set[str] = set()
    for line, obj in completions:
        cid = obj.get("id")
        choices = obj.get("choices")
        if not isinstance(cid, str) or not cid:
            detail = f"{NAME}: a chat.completion needs its id"
        elif not (isinstance(choices, list) and choices and isinstance(choices[0], dict)
                  and isinstance(choices[0].get("message"), dict)):  # fmt: skip
            detail = f"{NAME}: choices[0].message (the answer) is missing"
        elif cid not in messages:
            detail = (
                f"{NAME}: no input messages for this completion in the file "
                "(GET /v1/chat/completions/{id}/messages)"
            )
        else:
            used.add(cid)
            ordered = [m for _, m in sorted(messages[cid], key=lambda pair: pair[0])]
            yield Mapped.interaction(line, _completion(obj, ordered))
            continue
        yield Mapped.refused(line, "interaction", "missing_field", detail, _raw(obj))
    for owner, items in messages.items():
        if owner not in used and owner not in {c.get("id") for _, c in completions}:
            yield Mapped.refused(
                message_lines[owner], "interaction", "missing_field",
                f"{NAME}: input messages of a completion the file does not hold "
                "(GET /v1/chat/completions)", _raw([m for _, m in items][:3]),
            )  # fmt: skip
