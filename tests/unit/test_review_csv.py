"""The review CSV: formula injection escaped on the way out and undone exactly on the way in;
re-importing the same labels records nothing."""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pyarrow as pa
import pytest
from typer.testing import CliRunner

from flows.cli import app
from ratchet.review import (
    REVIEW_COLUMNS,
    escape_cell,
    labels_from_csv,
    review_files,
    unescape_cell,
)

NASTY = [
    "=SUM(A1)",
    "-1 is wrong",
    "+44 is the code",
    "@mention",
    "\tleading tab",
    "\rleading CR",
    "'already quoted",
    "plain text",
    "",
    "a=b",
]


@pytest.mark.parametrize("value", NASTY)
def test_escape_is_undone_exactly(value: str) -> None:
    escaped = escape_cell(value)
    assert not escaped[:1] or escaped[0] not in "=+-@\t\r"
    assert unescape_cell(escaped) == value


def test_the_exported_csv_escapes_text_cells() -> None:
    queue = pa.Table.from_pylist(
        [
            {
                "review_id": "r1",
                "agent_id": "a",
                "interaction_id": '=HYPERLINK("x")',
                "reason": "thumbs_down_no_correction",
                "input": [{"role": "user", "content": "hi"}],
                "response": "-1 is wrong",
            }
        ]
    )
    text = review_files(queue)["review_queue.csv"].decode()
    row = next(csv.DictReader(io.StringIO(text)))
    assert row["response"] == "'-1 is wrong"
    assert row["interaction_id"] == '\'=HYPERLINK("x")'
    assert not any(v[:1] in ("=", "+", "-", "@", "\t", "\r") for v in row.values() if v)


def test_import_undoes_the_escape_in_every_label_column(tmp_path: Path) -> None:
    f = tmp_path / "filled.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(REVIEW_COLUMNS))
        w.writeheader()
        for i, value in enumerate(v for v in NASTY if v):
            w.writerow(
                {c: "" for c in REVIEW_COLUMNS}
                | {
                    "interaction_id": escape_cell(f"-i{i}"),
                    "agent_id": "a",
                    "thumb": escape_cell("-1"),
                    "correction": escape_cell(value),
                    "comment": escape_cell(value),
                }
            )
    labels = labels_from_csv(f, now=datetime(2026, 11, 20, tzinfo=UTC))
    got = [
        (e["interaction_id"], e.get("correction"), e.get("comment"), e["thumb"])
        for e in labels.events
    ]
    assert got == [(f"-i{i}", v, v, -1) for i, v in enumerate(v for v in NASTY if v)]


def test_reimporting_the_same_review_csv_records_nothing(ratchet_env: Path, tmp_path: Path) -> None:
    from ratchet.db import open_database
    from ratchet.db.models import RecordKey
    from ratchet.settings import get_settings

    logs = tmp_path / "i.jsonl"
    logs.write_text(
        json.dumps(
            {
                "interaction_id": "bad-1",
                "agent_id": "help-desk",
                "timestamp": "2026-11-02T10:00:00Z",
                "messages": [{"role": "user", "content": "reset my router"}],
                "response": "no idea",
            }
        )
        + "\n"
    )
    _ingest_interactions(logs)
    f = tmp_path / "filled.csv"
    with open(f, "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=list(REVIEW_COLUMNS))
        w.writeheader()
        w.writerow(
            {c: "" for c in REVIEW_COLUMNS}
            | {
                "review_id": "r1",
                "agent_id": "help-desk",
                "interaction_id": "bad-1",
                "thumb": "-1",
                "correction": escape_cell("=open the admin page"),
            }
        )

    def feedback_keys() -> int:
        with open_database(get_settings())() as s:
            return s.query(RecordKey).filter(RecordKey.kind == "feedback").count()

    first = CliRunner().invoke(app, ["feedback", "import", str(f)])
    assert first.exit_code == 0, first.output
    assert "recorded 1 feedback event" in first.output
    assert feedback_keys() == 1
    again = CliRunner().invoke(app, ["feedback", "import", str(f)])
    assert again.exit_code == 0, again.output
    assert feedback_keys() == 1
    assert "nothing new" in again.output


def _ingest_interactions(logs: Path) -> None:
    from ratchet.config import load_config
    from ratchet.db import open_database
    from ratchet.ingest.pipeline import IngestContext, ingest_file
    from ratchet.redaction import Redactor, resolve_pseudonym_key
    from ratchet.settings import get_settings
    from ratchet.store import Store

    settings = get_settings()
    config = load_config(settings)
    ctx = IngestContext(
        store=Store(settings.store_root),
        sessions=open_database(settings),
        config=config,
        redactor=Redactor(config.redaction),
        pseudonym_key=resolve_pseudonym_key(settings),
        now=datetime.now(UTC),
    )
    ingest_file(ctx, logs, "interactions")
