"""What a stored record is called, and what makes two records "the same".

**Identifiers.** Every string the input uses as an identifier (``interaction_id``,
``conversation_id``, ``feedback_id``, a tool call's ``id`` and ``type``, a tool message's
``tool_call_id``) goes through the redactor like any text. One the redactor would change (an
e-mail used as an interaction id) is replaced whole by :func:`pseudonymise_id`, a keyed HMAC under
the pseudonymisation key: the same id gives the same pseudonym in every table and batch, so
feedback still joins its interaction and a tool message its call. An id the redactor leaves alone
is kept as given. ``user_id`` and ``annotator`` are always pseudonymised (they name people).

**Content hash.** The hash that decides "same record, skip it" or "same id, other content:
conflicting duplicate" is stored in the ledger (``record_keys.content_hash``) and in every row, so
it must not be a way back to the raw text, and it must not depend on the key (after a key
rotation, or on a second machine that generated its own key, the overlapping records must still
be recognised). The choices, and why:

- A keyed HMAC over the raw record (what this replaced) reveals nothing but changes with the key.
- Any *unkeyed* function of a raw value is a dictionary oracle: the rest of the record sits next
  to the hash in the store, so an attacker hashes the row with each candidate e-mail or
  ``cust-<n>`` until it matches. A fixed public salt or a truncated digest does not change that.
- So the hash is SHA-256 over **what is stored, as it is stored**: the redacted text, with every
  pseudonymised value replaced by a key-independent form that reveals no more than the row
  already does: an id that held PII by its *redacted* text (``[EMAIL]``), ``user_id`` and
  ``annotator`` only by whether they are present. It reveals nothing the stored row does not,
  and is the same under every key.

The price: two records that differ only in a redacted value, or only in the person
(``user_id``, ``annotator``), are the same record (the stored rows differ only in pseudonyms); and
a change of the redaction rules that changes a record's redacted text makes the same input a
different content (a rerun under new rules reports conflicting duplicates; the stored row stays).
Derived feedback ids (:func:`derive_feedback_id`) use the same hash, so they too are the same
under every key: a version built on one machine names the same events as on another.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

import pyarrow as pa

from ratchet.redaction import Redactor
from ratchet.schemas import PROVENANCE_COLUMNS

ID_PREFIX = "p_"
ID_HEX_CHARS = 32  # 128 bits, as for user pseudonyms
# Top-level id columns per table; nested ids (tool calls) are walked by _map_ids.
TOP_IDS = {
    "interactions": ("interaction_id", "conversation_id"),
    "feedback": ("feedback_id", "interaction_id"),
}
# Pseudonymised always (they name people): in the content hash only as present / absent.
PERSON_COLUMNS = ("user_id", "annotator")


def pseudonymise_id(value: str, key: bytes) -> str:
    """``p_`` + 32 hex of HMAC-SHA256(key, "id" 0x1f value): same id and key, same pseudonym.

    Domain-separated from user pseudonyms (``u_``), so an id and a user id that happen to be the
    same string do not link rows of different meaning.
    """
    digest = hmac.new(key, b"id\x1f" + value.encode("utf-8"), hashlib.sha256).hexdigest()
    return ID_PREFIX + digest[:ID_HEX_CHARS]


def _map_calls(calls: list[dict[str, Any]] | None, fn: Callable[[Any], Any]) -> Any:
    if not calls:
        return calls
    return [{**c, "id": fn(c.get("id")), "type": fn(c.get("type"))} for c in calls]


def map_ids(row: dict[str, Any], table: str, fn: Callable[[Any], Any]) -> dict[str, Any]:
    """A copy of ``row`` with ``fn`` applied to every id leaf (``fn(None)`` must be None)."""
    out = dict(row)
    for column in TOP_IDS[table]:
        if column in out:
            out[column] = fn(out[column])
    if table == "interactions":
        out["messages"] = [
            {**m, "tool_call_id": fn(m.get("tool_call_id")),
             "tool_calls": _map_calls(m.get("tool_calls"), fn)}
            for m in row["messages"]
        ]  # fmt: skip
        out["response_tool_calls"] = _map_calls(row.get("response_tool_calls"), fn)
    return out


def id_values(row: dict[str, Any], table: str) -> list[str]:
    """Every non-empty id string of a row (the leaves :func:`map_ids` visits)."""
    found: list[Any] = [row.get(c) for c in TOP_IDS[table]]
    if table == "interactions":
        calls = list(row.get("response_tool_calls") or ())
        for m in row["messages"]:
            found.append(m.get("tool_call_id"))
            calls.extend(m.get("tool_calls") or ())
        for c in calls:
            found.append(c.get("id"))
            found.append(c.get("type"))
    return [v for v in found if isinstance(v, str) and v]


class IdGuard:
    """One batch's ids, checked in one redactor pass; those that hold PII get a pseudonym."""

    def __init__(self, redactor: Redactor, key: bytes) -> None:
        self._redactor = redactor
        self._key = key
        self.pseudonym: dict[str, str] = {}  # raw id -> pseudonym (only ids that held PII)
        self.visible: dict[str, str] = {}  # pseudonym -> the id's redacted text

    def check(self, values: Iterable[str]) -> None:
        todo = sorted(set(values) - self.pseudonym.keys())
        if not todo:
            return
        redacted, hits = self._redactor.redact_array(pa.array(todo, pa.string()))
        for i in hits:
            alias = pseudonymise_id(todo[i], self._key)
            self.pseudonym[todo[i]] = alias
            self.visible[alias] = redacted[i].as_py()

    def apply(self, row: dict[str, Any], table: str) -> dict[str, Any]:
        """The row with its PII-holding ids replaced (a copy when any is; else the row)."""
        if not self.pseudonym:
            return row
        return map_ids(row, table, lambda v: self.pseudonym.get(v, v) if isinstance(v, str) else v)


def _canonical(value: Any) -> str:
    if isinstance(value, datetime):
        return value.astimezone(UTC).isoformat()
    return str(value)


def content_hash(row: dict[str, Any], table: str, visible: dict[str, str] | None = None) -> str:
    """SHA-256 (hex) of a stored row's content, the same under every key (see the module doc).

    ``row`` is the row as stored (redacted, ids pseudonymised), as a dict; provenance columns
    are left out; ``visible`` maps id pseudonyms back to their redacted text.
    """
    content = {k: v for k, v in row.items() if k not in PROVENANCE_COLUMNS}
    for column in PERSON_COLUMNS:
        if column in content:
            content[column] = content[column] is not None
    if visible:
        content = map_ids(content, table, lambda v: visible.get(v, v) if isinstance(v, str) else v)
    text = json.dumps(
        content, sort_keys=True, ensure_ascii=False, separators=(",", ":"), default=_canonical
    )
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def derive_feedback_id(row: dict[str, Any], visible: dict[str, str] | None = None) -> str:
    """An event given without an id gets one from its stored content: the same event twice
    (under any key) is one event."""
    content = {k: v for k, v in row.items() if k != "feedback_id"}
    return "fb_" + content_hash(content, "feedback", visible)[:32]
