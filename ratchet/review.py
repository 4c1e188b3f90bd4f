"""The review round-trip: the review queue out for labelling, the labels back in as feedback.

Out: ``review_queue.jsonl`` and ``review_queue.csv`` with the columns :data:`REVIEW_COLUMNS`:
``review_id``, ``agent_id``, ``interaction_id``, ``reason``, ``input`` (the conversation as text,
one ``role: content`` line per message), ``response``, and the empty label columns ``rating``,
``thumb``, ``correction``, ``comment`` for the reviewer to fill. The text is already redacted
(the queue is built from stored, redacted records).

In: :func:`labels_from_csv` turns a filled CSV into feedback events (one per row with at least
one label; unlabelled rows are counted and skipped). The caller ingests them through the normal
feedback ingest (redaction, validation, exactly-once), as ``source="expert"`` by default: a
reviewer's label is an expert judgement, so it decides over the user's vote where
``curation.expert_outranks_user`` is set.

Spreadsheet formula injection: a cell that starts with ``=``, ``+``, ``-``, ``@``, a tab or a
carriage return is run as a formula by Excel, LibreOffice and Google Sheets. Every cell written
is passed through :func:`escape_cell`, which prefixes such a cell (and one that already starts
with ``'``, so the rule stays invertible) with a single quote; :func:`labels_from_csv` undoes it
exactly with :func:`unescape_cell`: an escaped cell is taken verbatim, an unescaped one is
stripped of outer blanks as before.

Re-importing: each label row becomes an event whose ``feedback_id`` is a hash of what the
reviewer said (agent, interaction, source, annotator and the four label cells), so the same
labels imported twice are the same events; :func:`split_recorded` drops the ones the ledger
already holds before they are ingested, and a second import of the same CSV records nothing.
A changed label is a new event (a later vote from the same source supersedes the earlier one).
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pyarrow as pa

REVIEW_COLUMNS = (
    "review_id",
    "agent_id",
    "interaction_id",
    "reason",
    "input",
    "response",
    "rating",
    "thumb",
    "correction",
    "comment",
)
LABEL_COLUMNS = ("rating", "thumb", "correction", "comment")


_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r", "'")


def escape_cell(value: str) -> str:
    """A cell a spreadsheet shows as text: one that a spreadsheet would run as a formula (or
    that starts with the escape itself) gets a leading ``'``."""
    return "'" + value if value.startswith(_FORMULA_STARTS) else value


def unescape_cell(value: str) -> str:
    """The inverse of :func:`escape_cell`."""
    return value.removeprefix("'")


def _cell(value: str | None) -> str:
    """A label cell as the reviewer meant it: escaped cells verbatim, others stripped."""
    value = value or ""
    return unescape_cell(value) if value.startswith("'") else value.strip()


class LabelError(ValueError):
    """A label row is malformed; the message names the row and the column, never the value."""


def conversation_text(messages: list[dict[str, Any]] | None) -> str:
    lines = []
    for m in messages or []:
        content = m.get("content") or ""
        calls = m.get("tool_calls") or []
        if calls:
            names = ", ".join((c.get("function") or {}).get("name") or "?" for c in calls)
            content = f"{content} [tool calls: {names}]".strip()
        lines.append(f"{m.get('role')}: {content}")
    return "\n".join(lines)


def review_rows(review_queue: pa.Table) -> list[dict[str, Any]]:
    rows = review_queue.sort_by("review_id").to_pylist() if review_queue.num_rows else []
    return [
        {
            "review_id": r["review_id"],
            "agent_id": r["agent_id"],
            "interaction_id": r["interaction_id"],
            "reason": r["reason"],
            "input": conversation_text(r["input"]),
            "response": r["response"],
            "rating": "",
            "thumb": "",
            "correction": "",
            "comment": "",
        }
        for r in rows
    ]


def review_files(review_queue: pa.Table) -> dict[str, bytes]:
    """``{"review_queue.jsonl": ..., "review_queue.csv": ...}`` (deterministic bytes)."""
    rows = review_rows(review_queue)
    jsonl = "".join(json.dumps(r, ensure_ascii=False, separators=(",", ":")) + "\n" for r in rows)
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=list(REVIEW_COLUMNS), lineterminator="\n")
    writer.writeheader()
    writer.writerows(
        {k: escape_cell(v) if isinstance(v, str) else v for k, v in r.items()} for r in rows
    )
    return {"review_queue.jsonl": jsonl.encode(), "review_queue.csv": buf.getvalue().encode()}


@dataclass
class Labels:
    events: list[dict[str, Any]] = field(default_factory=list)
    unlabelled: int = 0


_THUMBS = {"+1": 1, "1": 1, "up": 1, "-1": -1, "down": -1}


def _int(value: str, row: int, column: str) -> int:
    try:
        return int(float(value))
    except ValueError:
        raise LabelError(f"row {row}: {column} is not a number") from None


def feedback_event(
    *,
    agent_id: str | None,
    interaction_id: str,
    timestamp: datetime,
    source: str,
    annotator: str | None = None,
    rating: int | None = None,
    thumb: int | None = None,
    correction: str | None = None,
    comment: str | None = None,
) -> dict[str, Any]:
    """A feedback event as a feedback-JSONL object (nulls omitted)."""
    event: dict[str, Any] = {
        "agent_id": agent_id,
        "interaction_id": interaction_id,
        "timestamp": timestamp.isoformat(),
        "source": source,
        "annotator": annotator,
        "rating": rating,
        "thumb": thumb,
        "correction": correction,
        "comment": comment,
    }
    return {k: v for k, v in event.items() if v is not None and v != ""}


def labels_from_csv(
    path: Path,
    *,
    now: datetime,
    source: str = "expert",
    annotator: str | None = None,
    default_agent: str | None = None,
) -> Labels:
    """Feedback events from a filled review CSV (rows with no label are skipped and counted)."""
    out = Labels()
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        missing = {"interaction_id", *LABEL_COLUMNS} - set(reader.fieldnames or [])
        if missing:
            raise LabelError(f"the CSV lacks columns {sorted(missing)}")
        for number, row in enumerate(reader, start=2):
            vals = {c: _cell(row.get(c)) for c in LABEL_COLUMNS}
            if not any(vals.values()):
                out.unlabelled += 1
                continue
            thumb = None
            if vals["thumb"]:
                if vals["thumb"].lower() not in _THUMBS:
                    raise LabelError(f"row {number}: thumb must be +1 or -1")
                thumb = _THUMBS[vals["thumb"].lower()]
            iid = _cell(row.get("interaction_id"))
            if not iid:
                raise LabelError(f"row {number}: interaction_id is empty")
            event = feedback_event(
                agent_id=_cell(row.get("agent_id")) or default_agent,
                interaction_id=iid,
                timestamp=now,
                source=source,
                annotator=annotator,
                rating=_int(vals["rating"].strip(), number, "rating") if vals["rating"] else None,
                thumb=thumb,
                correction=vals["correction"] or None,
                comment=vals["comment"] or None,
            )
            out.events.append(event | {"feedback_id": label_id(event)})
    return out


def label_id(event: dict[str, Any]) -> str:
    """A label's feedback id from what it says, not when it was imported (see the module doc)."""
    said = [
        event.get(k)
        for k in (
            "agent_id",
            "interaction_id",
            "source",
            "annotator",
            "rating",
            "thumb",
            "correction",
            "comment",
        )
    ]
    return "review-" + hashlib.sha256(json.dumps(said).encode()).hexdigest()[:32]


def split_recorded(
    events: list[dict[str, Any]], recorded: Callable[[str, set[str]], Iterable[str]]
) -> tuple[list[dict[str, Any]], int]:
    """``(events not yet recorded, how many were)``; ``recorded(agent_id, ids)`` answers which of
    an agent's feedback ids the ledger holds (``ratchet.db.repo.lookup_keys``)."""
    by_agent: dict[str, set[str]] = {}
    for e in events:
        by_agent.setdefault(e["agent_id"], set()).add(e["feedback_id"])
    known = {(a, i) for a, ids in by_agent.items() for i in recorded(a, ids)}
    new = [e for e in events if (e["agent_id"], e["feedback_id"]) not in known]
    return new, len(events) - len(new)


def write_jsonl(events: Iterable[dict[str, Any]], path: Path) -> Path:
    with open(path, "w", encoding="utf-8") as fh:
        fh.writelines(json.dumps(e, ensure_ascii=False) + "\n" for e in events)
    return path
