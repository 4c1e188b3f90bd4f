"""`ratchet ingest` end to end (in process, under the session's Prefect harness)."""

from __future__ import annotations

from typer.testing import CliRunner

from flows.cli import app
from tests.conftest import SAMPLE_DIR

runner = CliRunner()


def test_cli_ingest_prints_a_summary_and_is_idempotent(prefect_harness, ratchet_env) -> None:
    args = [
        "ingest",
        str(SAMPLE_DIR / "interactions-week-01.jsonl"),
        "--feedback",
        str(SAMPLE_DIR / "feedback-week-01.jsonl"),
    ]
    first = runner.invoke(app, args)
    assert first.exit_code == 0, first.output
    assert "stored: feedback 217, interactions 587" in first.output  # the pinned 1.1 sample
    again = runner.invoke(app, args)
    assert again.exit_code == 0
    assert "files already ingested: 2" in again.output


def test_cli_ingest_failure_exits_1_with_the_reason(prefect_harness, ratchet_env, tmp_path) -> None:
    bad = tmp_path / "garbage.jsonl"
    bad.write_text("not json\n" * 120)  # past ingest.min_lines_for_quarantine_share
    result = runner.invoke(app, ["ingest", str(bad), "--agent", "shop-assistant"])
    assert result.exit_code == 1
    assert "garbage.jsonl" in result.output and "max_quarantine_share" in result.output
