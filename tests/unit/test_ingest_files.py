"""File-level ingest rules: kinds by shape, empty files, small files and the quarantine share,
the good lines of a file that stops, and retries that add no quarantine rows twice."""

from __future__ import annotations

import dataclasses
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ratchet.config import PipelineConfig
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import (
    IngestContext,
    QuarantineThresholdExceeded,
    ingest_file,
)
from ratchet.redaction import Redactor
from ratchet.schemas import FEEDBACK, INTERACTIONS, QUARANTINE
from ratchet.settings import get_settings
from ratchet.store import Store
from tests.conftest import SAMPLE_DIR

NOW = datetime(2026, 11, 20, 12, 0, tzinfo=UTC)


def _line(i: int) -> str:
    return json.dumps(
        {
            "interaction_id": f"i-{i}",
            "agent_id": "shop-assistant",
            "timestamp": "2026-11-02T10:00:00Z",
            "messages": [{"role": "user", "content": f"question {i}"}],
            "response": f"answer {i}",
        }
    )


def _ctx(**ingest: object) -> IngestContext:
    settings = get_settings()
    config = PipelineConfig.model_validate({"ingest": {"batch_size": 100, "workers": 1, **ingest}})
    return IngestContext(
        store=Store(settings.store_root),
        sessions=open_database(settings),
        config=config,
        redactor=Redactor(config.redaction),
        pseudonym_key=b"k" * 32,
        now=NOW,
    )


def _stored(ctx: IngestContext, table: str) -> pa.Table:
    schema = {"interactions": INTERACTIONS, "feedback": FEEDBACK, "quarantine": QUARANTINE}[table]
    with ctx.sessions() as s:
        paths = [p.path for p in repo.list_parts(s, table)]
    return ctx.store.read_tables(paths, schema)


def test_auto_kind_reads_a_feedback_file_as_feedback(ratchet_env: Path, tmp_path: Path) -> None:
    ctx = _ctx()
    ingest_file(ctx, SAMPLE_DIR / "interactions-week-01.jsonl", kind="auto")
    report = ingest_file(ctx, SAMPLE_DIR / "feedback-week-01.jsonl", kind="auto")
    assert report.kind == "feedback"
    assert report.stored["feedback"] > 0 and not report.stored["interactions"]


def test_a_manifest_is_skipped_and_an_empty_file_is_a_zero_count(
    ratchet_env: Path, tmp_path: Path
) -> None:
    ctx = _ctx()
    skipped = ingest_file(ctx, SAMPLE_DIR / "manifest.json", kind="auto")
    assert skipped.status == "not_records" and skipped.lines == 0
    # also when it sits in a folder given as feedback
    assert ingest_file(ctx, SAMPLE_DIR / "manifest.json", kind="feedback").status == "not_records"
    empty = tmp_path / "empty.jsonl"
    empty.write_bytes(b"")
    for kind in ("auto", "interactions", "feedback"):
        report = ingest_file(ctx, empty, kind=kind)  # type: ignore[arg-type]
        assert report.status == "empty" and report.records == 0 and not report.stored
    blank = tmp_path / "blank.jsonl"
    blank.write_text("\n\n  \n")
    assert ingest_file(ctx, blank).status == "empty"


def test_one_bad_line_in_a_small_file_does_not_fail_it(ratchet_env: Path, tmp_path: Path) -> None:
    ctx = _ctx()  # the default share (20%), the default minimum of lines
    f = tmp_path / "two.jsonl"
    f.write_text(_line(1) + "\nnot json\n")
    report = ingest_file(ctx, f)
    assert report.status == "ingested"
    assert report.stored["interactions"] == 1 and dict(report.quarantined) == {"not_json": 1}


def test_the_share_applies_past_the_minimum_and_the_stopping_batch_keeps_its_good_lines(
    ratchet_env: Path, tmp_path: Path
) -> None:
    ctx = _ctx(max_quarantine_share=0.2, min_lines_for_quarantine_share=50)
    f = tmp_path / "half-bad.jsonl"
    lines = [_line(i) if i % 2 else "not json" for i in range(250)]
    f.write_text("\n".join(lines) + "\n")
    with pytest.raises(QuarantineThresholdExceeded, match="min_lines_for_quarantine_share"):
        ingest_file(ctx, f)
    # the first batch (100 lines, 50 bad) stopped the file: its 50 good lines are stored
    assert _stored(ctx, "interactions").num_rows == 50
    assert _stored(ctx, "quarantine").num_rows == 50


def test_retrying_a_failed_file_adds_no_quarantine_rows_again(
    ratchet_env: Path, tmp_path: Path
) -> None:
    f = tmp_path / "half-bad.jsonl"
    f.write_text("\n".join(_line(i) if i % 2 else "not json" for i in range(250)) + "\n")
    for attempt in range(3):  # each retry is a new run with its own clock
        ctx = dataclasses.replace(
            _ctx(max_quarantine_share=0.2, min_lines_for_quarantine_share=50),
            now=NOW + timedelta(hours=attempt),
        )
        with pytest.raises(QuarantineThresholdExceeded):
            ingest_file(ctx, f)
        assert _stored(ctx, "quarantine").num_rows == 50, f"attempt {attempt + 1}"
        assert _stored(ctx, "interactions").num_rows == 50
    # with the threshold lifted (and batches cut elsewhere: the parts differ), the retry
    # finishes the file and still stores each line once
    ctx = dataclasses.replace(
        _ctx(max_quarantine_share=1.0, batch_size=150), now=NOW + timedelta(days=1)
    )
    report = ingest_file(ctx, f)
    assert report.status == "ingested"
    assert _stored(ctx, "quarantine").num_rows == 125
    assert sorted(_stored(ctx, "quarantine").column("source_line").to_pylist()) == list(
        range(1, 251, 2)
    )
    assert _stored(ctx, "interactions").num_rows == 125
