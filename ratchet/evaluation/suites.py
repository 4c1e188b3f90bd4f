"""``ratchet suites import``: an eval suite from a file, redacted, registered as a dataset version
of kind ``eval_cases`` (``stats.source = "import"``, so :func:`default_suite` never mistakes it
for the agent's curated cases).

Formats, one JSON object per line:

* ``openai-evals``: the samples format of the OpenAI Evals registry,
  ``{"input": [messages], "ideal": "..." | ["...", ...]}``. With several ideals the first is the
  expected answer (``eval_cases.expected`` holds one; the others are counted in the stats).
* ``canonical``: ``{"input": [messages], "expected": "...", "expected_tool_calls": [...],
  "topic": "...", "kind": "golden" | "regression"}`` (only ``input`` and ``expected`` required).

Imported cases are ``holdout`` (never trained on) and active. Every text goes through the ingest
redactor before anything is written; a bad line stops the import with its line number, the
field and the rule (never the value), and nothing is registered.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
from sqlalchemy.orm import Session, sessionmaker

from ratchet import schemas
from ratchet.curation.text import case_ids
from ratchet.evaluation.evaluate import IMPORTED
from ratchet.redaction import Redactor
from ratchet.store import Store, dataset_path

FORMATS = ("openai-evals", "canonical")
MAX_ERRORS_SHOWN = 10


class SuiteFormatError(ValueError):
    """A suite file that cannot be imported; ``problems`` are (line, field, rule)."""

    def __init__(self, problems: list[tuple[int, str, str]]) -> None:
        shown = "; ".join(f"line {n}: {f}: {r}" for n, f, r in problems[:MAX_ERRORS_SHOWN])
        more = len(problems) - MAX_ERRORS_SHOWN
        super().__init__(
            f"{len(problems)} bad line(s): {shown}" + (f" (+{more} more)" if more > 0 else "")
        )
        self.problems = problems


@dataclass(frozen=True)
class ImportedSuite:
    version_id: str
    agent_id: str
    path: str
    rows: int
    created: bool
    pii_redacted: dict[str, int]

    def as_dict(self) -> dict[str, Any]:
        return {
            "version": self.version_id,
            "agent": self.agent_id,
            "path": self.path,
            "rows": self.rows,
            "created": self.created,
            "pii_redacted": self.pii_redacted,
        }


def _messages(value: Any) -> list[dict[str, Any]] | str:
    if not isinstance(value, list) or not value:
        return "must be a non-empty list of messages"
    out = []
    for m in value:
        if not isinstance(m, Mapping) or m.get("role") not in schemas.VALID_ROLES:
            return "each message needs a known role"
        content = m.get("content")
        if content is not None and not isinstance(content, str):
            return "message content must be text"
        out.append(
            {
                "role": m["role"],
                "content": content,
                "name": m.get("name"),
                "tool_call_id": None,
                "tool_calls": None,
            }
        )
    if not any(m["role"] == "user" for m in out):
        return "needs a user message"
    return out


def _tool_calls(value: Any) -> list[dict[str, Any]] | str:
    if value is None:
        return []
    if not isinstance(value, list):
        return "must be a list"
    out = []
    for c in value:
        fn = c.get("function") if isinstance(c, Mapping) else None
        if not isinstance(fn, Mapping) or not isinstance(fn.get("name"), str):
            return "each call needs function.name"
        args = fn.get("arguments")
        if not isinstance(args, str):
            args = json.dumps(args, sort_keys=True)
        out.append(
            {
                "id": c.get("id"),
                "type": c.get("type") or "function",
                "function": {"name": fn["name"], "arguments": args},
            }
        )
    return out


def parse_line(obj: Any, fmt: str) -> dict[str, Any] | tuple[str, str]:
    """One line's case fields, or ``(field, rule)``."""
    if not isinstance(obj, Mapping):
        return ("line", "must be a JSON object")
    messages = _messages(obj.get("input"))
    if isinstance(messages, str):
        return ("input", messages)
    alternatives = 0
    if fmt == "openai-evals":
        ideal = obj.get("ideal")
        if isinstance(ideal, list):
            if not ideal or not all(isinstance(i, str) for i in ideal):
                return ("ideal", "must be text or a non-empty list of texts")
            expected, alternatives = ideal[0], len(ideal) - 1
        elif isinstance(ideal, str):
            expected = ideal
        else:
            return ("ideal", "must be text or a non-empty list of texts")
        calls: list[dict[str, Any]] | str = []
        kind, topic = "golden", None
    else:
        expected = obj.get("expected")
        if not isinstance(expected, str):
            return ("expected", "must be text")
        calls = _tool_calls(obj.get("expected_tool_calls"))
        if isinstance(calls, str):
            return ("expected_tool_calls", calls)
        kind = obj.get("kind", "golden")
        if kind not in ("golden", "regression"):
            return ("kind", "must be golden or regression")
        topic = obj.get("topic")
        if topic is not None and not isinstance(topic, str):
            return ("topic", "must be text")
    return {
        "input": messages,
        "expected": expected,
        "expected_tool_calls": calls or None,
        "kind": kind,
        "topic": topic,
        "alternatives": alternatives,
    }


def read_suite(path: Path, fmt: str) -> list[dict[str, Any]]:
    """Every line parsed, or :class:`SuiteFormatError` listing the bad ones."""
    if fmt not in FORMATS:
        raise ValueError(f"--format must be one of {', '.join(FORMATS)}")
    rows, problems = [], []
    with path.open("r", encoding="utf-8", errors="replace") as src:
        for n, line in enumerate(src, 1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except ValueError:
                problems.append((n, "line", "is not valid JSON"))
                continue
            got = parse_line(obj, fmt)
            if isinstance(got, tuple):
                problems.append((n, *got))
            else:
                rows.append(got)
    if problems:
        raise SuiteFormatError(problems)
    if not rows:
        raise SuiteFormatError([(0, "file", "holds no case")])
    return rows


def import_suite(
    store: Store,
    sessions: sessionmaker[Session],
    redactor: Redactor,
    path: Path,
    agent_id: str,
    fmt: str,
) -> ImportedSuite:
    """Read, redact and register a suite; importing the same file again registers nothing."""
    from ratchet.db import repo

    parsed = read_suite(path, fmt)
    alternatives = sum(r.pop("alternatives") for r in parsed)
    rows = [
        {
            **r,
            "case_id": "",
            "agent_id": agent_id,
            "interaction_id": "",
            "split": "holdout",
            "fix_check": False,
            "production_answer": None,
            "status": "active",
            "retired_reason": None,
            "feedback_ids": None,
            "first_seen": None,
            "pii_residual": 0,
        }
        for r in parsed
    ]
    table = pa.Table.from_pylist(rows, schema=schemas.EVAL_CASES)
    redacted = redactor.redact_table(table)
    table = redacted.table
    users = [
        " ".join(m["content"] or "" for m in r if m["role"] == "user")
        for r in table.column("input").to_pylist()
    ]
    ids = case_ids(agent_id, pa.array(users, pa.string()))
    table = table.set_column(
        table.schema.get_field_index("case_id"), "case_id", pa.array(ids, pa.string())
    )
    table = table.set_column(
        table.schema.get_field_index("interaction_id"),
        "interaction_id",
        pa.array([f"import:{i[:16]}" for i in ids], pa.string()),
    )
    residual = redactor.scan_table(table)
    table = table.set_column(
        table.schema.get_field_index("pii_residual"), "pii_residual", residual.cast(pa.int32())
    )
    data = (
        schemas.fingerprint(schemas.EVAL_CASES)
        + fmt
        + json.dumps(table.to_pylist(), sort_keys=True, default=str)
    )
    version = hashlib.sha256(data.encode()).hexdigest()[:24]
    part = store.write_table_at(
        dataset_path(agent_id, "eval_cases", version), table, schemas.EVAL_CASES
    )
    with sessions() as s, s.begin():
        _, created = repo.register_dataset_version(
            s,
            version_id=version,
            agent_id=agent_id,
            kind="eval_cases",
            path=part.path,
            rows=table.num_rows,
            schema_fingerprint=part.schema_fingerprint,
            config_hash=hashlib.sha256(fmt.encode()).hexdigest(),
            stats={
                "source": IMPORTED,
                "format": fmt,
                "rows": table.num_rows,
                "alternative_ideals": alternatives,
                "pii_redacted": redacted.totals,
            },
            parent_id=None,
        )
    return ImportedSuite(
        version, agent_id, part.path, table.num_rows, created, dict(redacted.totals)
    )
