"""One input line in, one canonical record (or one rejection with its reason) out.

Validation is strict about what it stores and lenient about harmless variety (an integer id, a
``Z`` suffix, an epoch timestamp): the point is that every stored row means one thing, and every
line that is not stored says why. A rejection names the field and the rule, never the value, so
its ``detail`` can be shown anywhere; the raw line travels separately and is redacted before it
is written to the quarantine table.
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, cast

from ratchet.schemas import FEEDBACK_SOURCES, SCHEMA_MAJOR, SCHEMA_VERSION, VALID_ROLES
from ratchet.store import valid_agent_id

INTERACTION_FIELDS = frozenset(
    {
        "schema_version", "interaction_id", "agent_id", "timestamp", "messages", "response",
        "conversation_id", "user_id", "model_version", "tools_used", "sources", "latency_ms",
        "prompt_tokens", "completion_tokens", "cost_usd", "consent", "metadata", "feedback",
    }
)  # fmt: skip
FEEDBACK_FIELDS = frozenset(
    {
        "schema_version", "feedback_id", "interaction_id", "agent_id", "timestamp", "source",
        "annotator", "rating", "thumb", "correction", "comment", "aspects",
    }
)  # fmt: skip


class Reject(Exception):
    """A line that cannot be stored: ``reason`` is one of QUARANTINE_REASONS, ``detail`` names
    the field and rule (never the value)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class TimeRules:
    """The sane range for timestamps, fixed once per run (from the run's clock, not per line)."""

    earliest: datetime
    latest: datetime


INT64_MAX = 2**63 - 1
# Record ids are keys of the ledger (``record_keys.record_id``, ``String(255)``): a longer one
# would fail the batch's commit on PostgreSQL, so it is refused here, line by line.
MAX_RECORD_ID_CHARS = 255
_SCHEMA_VERSION = re.compile(r"[0-9]{1,6}(?:\.[0-9]{1,6})?")


@dataclass
class Parsed:
    """A valid record: canonical column values, plus inline feedback events to split off.

    ``feedback`` holds the inline events as given (any JSON value): each is validated on its
    own, so a broken event is quarantined alone and the interaction it rides on is still stored.
    """

    row: dict[str, Any]
    assumed_utc: bool
    feedback: list[Any]


# --- scalar checks --------------------------------------------------------------------------
def _str(obj: dict[str, Any], key: str, *, required: bool = False) -> str | None:
    value = obj.get(key)
    if value is None:
        if required:
            raise Reject("missing_field", f"{key} is required")
        return None
    if isinstance(value, bool):
        raise Reject("wrong_type", f"{key} must be a string")
    if isinstance(value, int):  # integer ids are common and unambiguous
        try:
            return str(value)
        except ValueError:  # past Python's int max str digits
            raise Reject("invalid_value", f"{key} has too many digits") from None
    if not isinstance(value, str):
        raise Reject("wrong_type", f"{key} must be a string")
    if required and not value.strip():
        raise Reject("missing_field", f"{key} is empty")
    return value


def _num(obj: dict[str, Any], key: str, *, integer: bool = False) -> float | int | None:
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise Reject("wrong_type", f"{key} must be a number")
    if isinstance(value, float) and not math.isfinite(value):
        raise Reject("invalid_value", f"{key} must be finite")
    if integer:
        if isinstance(value, float) and not value.is_integer():
            raise Reject("wrong_type", f"{key} must be an integer")
        if value < 0:
            raise Reject("invalid_value", f"{key} must not be negative")
        if value > INT64_MAX:  # the column is int64: past it, the table build would fail
            raise Reject("invalid_value", f"{key} is out of range (over 2**63 - 1)")
        return int(value)
    try:
        number = float(value)  # an integer past ~1.8e308 does not fit a float
    except OverflowError:
        raise Reject("invalid_value", f"{key} is out of range") from None
    if not math.isfinite(number):
        raise Reject("invalid_value", f"{key} must be finite")
    return number


def _str_list(obj: dict[str, Any], key: str) -> list[str] | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, list):
        raise Reject("wrong_type", f"{key} must be a list")
    out = []
    for item in value:
        if isinstance(item, str):
            out.append(item)
        elif isinstance(item, dict | list | int | float):  # a source given as an object
            out.append(json.dumps(item, ensure_ascii=False, sort_keys=True))
        else:
            raise Reject("wrong_type", f"{key} items must be strings or objects")
    return out


def _json_obj(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None:
        return None
    if not isinstance(value, dict):
        raise Reject("wrong_type", f"{key} must be an object")
    return json.dumps(value, ensure_ascii=False, sort_keys=True)


def check_schema_version(obj: dict[str, Any]) -> None:
    value = obj.get("schema_version")
    if value is None:
        return
    text = str(value) if isinstance(value, int | float) and not isinstance(value, bool) else value
    if not isinstance(text, str):
        raise Reject("wrong_type", "schema_version must be a string like '1.0'")
    # Whole, not only its major: the column is stored as given and never redacted.
    if not _SCHEMA_VERSION.fullmatch(text):
        raise Reject("invalid_value", "schema_version must look like MAJOR.MINOR")
    major = int(text.split(".", 1)[0])
    if major > SCHEMA_MAJOR:
        raise Reject("newer_schema", f"schema_version major {major} > known {SCHEMA_MAJOR}")


def parse_timestamp(value: Any, rules: TimeRules, key: str = "timestamp") -> tuple[datetime, bool]:
    """UTC datetime and whether the zone was assumed (none given)."""
    if value is None:
        raise Reject("missing_field", f"{key} is required")
    assumed = False
    if isinstance(value, bool):
        raise Reject("wrong_type", f"{key} must be an ISO-8601 string or epoch seconds")
    if isinstance(value, int | float):
        try:
            seconds = value / 1000 if value > 1e11 else value  # epoch milliseconds are common
            ts = datetime.fromtimestamp(seconds, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise Reject("bad_timestamp", f"{key} is out of range") from None
    elif isinstance(value, str):
        try:
            ts = datetime.fromisoformat(value.strip())
        except ValueError:
            raise Reject("bad_timestamp", f"{key} is not ISO-8601") from None
        if ts.tzinfo is None:
            ts, assumed = ts.replace(tzinfo=UTC), True
        else:
            ts = ts.astimezone(UTC)
    else:
        raise Reject("wrong_type", f"{key} must be an ISO-8601 string or epoch seconds")
    if not rules.earliest <= ts <= rules.latest:
        raise Reject("bad_timestamp", f"{key} is outside the accepted range")
    return ts, assumed


# --- messages -------------------------------------------------------------------------------
def _opt_str(obj: dict[str, Any], key: str, where: str) -> str | None:
    """An optional string leaf of a message (an id, a name): integers are taken as text, any
    other non-string is refused (it would fail the table build, or be dropped silently)."""
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, int) and not isinstance(value, bool):
        return _str(obj, key)
    raise Reject("wrong_type", f"{where}.{key} must be a string")


def _tool_calls(value: Any, where: str) -> list[dict[str, Any]] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise Reject("wrong_type", f"{where}.tool_calls must be a list")
    calls = []
    for call in value:
        if not isinstance(call, dict) or not isinstance(call.get("function"), dict):
            raise Reject("wrong_type", f"{where}.tool_calls items need a function object")
        fn = call["function"]
        args = fn.get("arguments")
        if isinstance(args, dict | list):  # some loggers store parsed arguments
            args = json.dumps(args, ensure_ascii=False)
        if not isinstance(fn.get("name"), str) or not isinstance(args, str | None):
            raise Reject("wrong_type", f"{where}.tool_calls function name/arguments")
        kind = call.get("type")
        if kind is not None and not isinstance(kind, str):  # an enum ("function"), never a number
            raise Reject("wrong_type", f"{where}.tool_calls.type must be a string")
        calls.append(
            {
                "id": _opt_str(call, "id", f"{where}.tool_calls"),
                "type": kind or "function",
                "function": {"name": fn["name"], "arguments": args},
            }
        )
    return calls


def _content(value: Any, where: str, dropped: list[str]) -> str | None:
    """Text content; multi-part content keeps its text parts, and notes the others dropped."""
    if value is None or isinstance(value, str):
        return value
    if isinstance(value, list):
        texts = []
        for part in value:
            if isinstance(part, dict) and part.get("type") == "text":
                texts.append(str(part.get("text", "")))
            elif isinstance(part, str):
                texts.append(part)
            else:
                kind = part.get("type", "unknown") if isinstance(part, dict) else "unknown"
                dropped.append(f"{where}:{kind}")
        return "\n".join(texts)
    raise Reject("wrong_type", f"{where}.content must be a string, null or a list of parts")


def parse_messages(value: Any, dropped: list[str]) -> list[dict[str, Any]]:
    if value is None:
        raise Reject("missing_field", "messages is required")
    if not isinstance(value, list):
        raise Reject("wrong_type", "messages must be a list")
    if not value:
        raise Reject("invalid_value", "messages must not be empty")
    out = []
    for i, msg in enumerate(value):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise Reject("wrong_type", f"{where} must be an object")
        role = msg.get("role")
        if not isinstance(role, str):
            raise Reject("missing_field", f"{where}.role is required")
        if role not in VALID_ROLES:
            raise Reject("invalid_value", f"{where}.role is not an OpenAI role")
        out.append(
            {
                "role": role,
                "content": _content(msg.get("content"), where, dropped),
                "name": _opt_str(msg, "name", where),
                "tool_call_id": _opt_str(msg, "tool_call_id", where),
                "tool_calls": _tool_calls(msg.get("tool_calls"), where),
            }
        )
    return out


def _response(value: Any, dropped: list[str]) -> tuple[str, list[dict[str, Any]] | None]:
    """The answer as text plus its tool calls; an assistant message object is accepted too."""
    if value is None:
        raise Reject("missing_field", "response is required")
    if isinstance(value, str):
        return value, None
    if isinstance(value, dict):
        # An object is read as an assistant message only when it is one: anything else (say
        # {"text": ...}) would be stored as an empty answer, losing what the log said.
        if value.get("role", "assistant") != "assistant" or not (
            "content" in value or "tool_calls" in value
        ):
            raise Reject(
                "wrong_type",
                "response must be a string or an assistant message (content or tool_calls)",
            )
        text = _content(value.get("content"), "response", dropped) or ""
        return text, _tool_calls(value.get("tool_calls"), "response")
    raise Reject("wrong_type", "response must be a string or an assistant message")


# --- records --------------------------------------------------------------------------------
def _extra_json(extra: dict[str, Any]) -> str | None:
    """Unknown fields, kept (never dropped) as one JSON object; redacted like any text."""
    return json.dumps(extra, ensure_ascii=False, sort_keys=True, default=str) if extra else None


def agent_of(obj: dict[str, Any], default_agent: str | None) -> str:
    agent = _str(obj, "agent_id") or default_agent
    if not agent:
        raise Reject("missing_field", "agent_id is required (or pass --agent)")
    if not valid_agent_id(agent):
        raise Reject("invalid_value", "agent_id must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
    return agent


def _identity(
    obj: dict[str, Any], rules: TimeRules, default_agent: str | None
) -> tuple[str, str, datetime, bool]:
    """What every record needs first: a known schema major, its interaction, agent and time."""
    check_schema_version(obj)
    interaction_id = cast(str, _str(obj, "interaction_id", required=True))  # never None: required
    if len(interaction_id) > MAX_RECORD_ID_CHARS:
        raise Reject(
            "invalid_value", f"interaction_id is longer than {MAX_RECORD_ID_CHARS} characters"
        )
    agent = agent_of(obj, default_agent)
    ts, assumed = parse_timestamp(obj.get("timestamp"), rules)
    return interaction_id, agent, ts, assumed


def parse_interaction(
    obj: dict[str, Any], rules: TimeRules, default_agent: str | None = None
) -> Parsed:
    """Validate a canonical interaction object into INTERACTIONS column values."""
    interaction_id, agent, ts, assumed = _identity(obj, rules, default_agent)
    dropped: list[str] = []
    messages = parse_messages(obj.get("messages"), dropped)
    response, response_calls = _response(obj.get("response"), dropped)
    consent = obj.get("consent")
    if consent is not None and not isinstance(consent, bool):
        raise Reject("wrong_type", "consent must be true or false")
    extra = {k: v for k, v in obj.items() if k not in INTERACTION_FIELDS}
    if dropped:
        extra["_dropped_content_parts"] = dropped
    row = {
        "schema_version": str(obj.get("schema_version") or SCHEMA_VERSION),
        "agent_id": agent,
        "interaction_id": interaction_id,
        "conversation_id": _str(obj, "conversation_id"),
        "user_id": _str(obj, "user_id"),
        "timestamp": ts,
        "messages": messages,
        "response": response,
        "response_tool_calls": response_calls,
        "model_version": _str(obj, "model_version"),
        "tools_used": _str_list(obj, "tools_used"),
        "sources": _str_list(obj, "sources"),
        "latency_ms": _num(obj, "latency_ms"),
        "prompt_tokens": _num(obj, "prompt_tokens", integer=True),
        "completion_tokens": _num(obj, "completion_tokens", integer=True),
        "cost_usd": _num(obj, "cost_usd"),
        "consent": consent,
        "metadata": _json_obj(obj, "metadata"),
        "extra": _extra_json(extra),
    }
    inline = obj.get("feedback")
    events = [] if inline is None else list(inline) if isinstance(inline, list) else [inline]
    # An inline event is about the interaction it rides on: what it does not say (its
    # interaction, agent, time) it takes from there. Events that are not objects stay as they
    # are, to be quarantined on their own by the caller.
    own = {"interaction_id": interaction_id, "agent_id": agent, "timestamp": obj.get("timestamp")}
    events = [
        {**event, **{k: v for k, v in own.items() if event.get(k) is None}}
        if isinstance(event, dict)
        else event
        for event in events
    ]
    return Parsed(row, assumed, events)


#: A feedback-file line ``{"event": "consent_withdrawn", "user_id": ..., "agent_id"?: ...}``: the
#: user takes their consent back, which is an erasure (ratchet.privacy.erasure): ingest records a
#: pending tombstone for the user's pseudonym and the ingest flow runs the erasure after commit.
CONSENT_WITHDRAWN = "consent_withdrawn"


def is_consent_withdrawal(obj: Any) -> bool:
    return isinstance(obj, dict) and obj.get("event") == CONSENT_WITHDRAWN


def parse_consent_withdrawal(obj: dict[str, Any], default_agent: str | None = None) -> Parsed:
    """A consent withdrawal: ``row`` holds ``event``, ``user_id`` (raw: the caller hashes it
    at once) and ``agent_id`` (None: every agent, the default when the line names none and no
    ``--agent`` was given). Nothing else of the line is kept."""
    user = _str(obj, "user_id", required=True)
    agent = _str(obj, "agent_id") or default_agent
    if agent is not None and not valid_agent_id(agent):
        raise Reject("invalid_value", "agent_id must match [A-Za-z0-9][A-Za-z0-9._-]{0,127}")
    return Parsed({"event": CONSENT_WITHDRAWN, "user_id": user, "agent_id": agent}, False, [])


# JSON true/false are handled before this lookup: in a dict, True and False would collide with
# the keys 1 and 0 (so a thumb of 0 would silently become a thumb down).
_THUMBS = {1: 1, -1: -1, "up": 1, "down": -1, "+1": 1, "-1": -1}


def parse_feedback(obj: Any, rules: TimeRules, default_agent: str | None = None) -> Parsed:
    """Validate a feedback event into FEEDBACK column values (feedback_id derived later)."""
    if not isinstance(obj, dict):
        raise Reject("wrong_type", "feedback must be an object (or a list of objects)")
    interaction_id, agent, ts, assumed = _identity(obj, rules, default_agent)
    source = obj.get("source", "user")
    if source not in FEEDBACK_SOURCES:
        raise Reject("invalid_value", "source must be user, expert or system")
    rating = obj.get("rating")
    if rating is not None:
        if isinstance(rating, bool) or not isinstance(rating, int | float):
            raise Reject("wrong_type", "rating must be a number from 1 to 5")
        if not 1 <= rating <= 5 or rating != int(rating):  # range first: NaN, inf, 10**80
            raise Reject("invalid_value", "rating must be an integer from 1 to 5")
        rating = int(rating)
    thumb = obj.get("thumb")
    if isinstance(thumb, bool):
        thumb = 1 if thumb else -1
    elif thumb is not None:
        try:
            thumb = _THUMBS[thumb]
        except (KeyError, TypeError):
            raise Reject("invalid_value", "thumb must be +1 or -1") from None
    correction = _str(obj, "correction")
    if rating is None and thumb is None and not correction:
        raise Reject("missing_field", "feedback needs a rating, a thumb or a correction")
    feedback_id = _str(obj, "feedback_id")
    if feedback_id is not None and len(feedback_id) > MAX_RECORD_ID_CHARS:
        raise Reject(
            "invalid_value", f"feedback_id is longer than {MAX_RECORD_ID_CHARS} characters"
        )
    extra = {k: v for k, v in obj.items() if k not in FEEDBACK_FIELDS}
    row = {
        "schema_version": str(obj.get("schema_version") or SCHEMA_VERSION),
        "agent_id": agent,
        "feedback_id": feedback_id,
        "interaction_id": interaction_id,
        "timestamp": ts,
        "source": source,
        "annotator": _str(obj, "annotator"),
        "rating": rating,
        "thumb": thumb,
        "correction": correction,
        "comment": _str(obj, "comment"),
        "aspects": _json_obj(obj, "aspects"),
        "extra": _extra_json(extra),
    }
    return Parsed(row, assumed, [])
