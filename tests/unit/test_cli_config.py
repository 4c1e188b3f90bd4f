"""`ratchet config show`: effective values, secrets masked, bad config stops with exit 2."""

from __future__ import annotations

import json

from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()


def test_config_show_masks_secrets(ratchet_env, monkeypatch) -> None:
    monkeypatch.setenv("RATCHET_PSEUDONYM_KEY", "super-secret-pseudonym-key-123")
    monkeypatch.setenv("RATCHET_DATABASE_URL", "postgresql+psycopg://ratchet:pg-pass-777@db:5432/r")
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 0, result.output
    assert "super-secret-pseudonym-key-123" not in result.output
    assert "pg-pass-777" not in result.output
    shown = json.loads(result.stdout)
    assert shown["config"]["ingest"]["batch_size"] == 10_000
    assert shown["settings"]["pseudonym_key"] == "**********"


def test_config_show_describe_lists_every_key(ratchet_env) -> None:
    result = runner.invoke(app, ["config", "show", "--describe"])
    assert result.exit_code == 0
    assert "ingest.max_quarantine_share:" in result.output
    assert "curation.holdout_share:" in result.output


def test_bad_config_exits_2_naming_the_key(ratchet_env, tmp_path, monkeypatch) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("ingest:\n  max_quarantine_share: 3\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(bad))
    result = runner.invoke(app, ["config", "show"])
    assert result.exit_code == 2
    assert "ingest.max_quarantine_share" in result.output


def test_ingest_of_a_missing_path_exits_2_before_any_flow(ratchet_env, tmp_path) -> None:
    result = runner.invoke(app, ["ingest", str(tmp_path / "nothing-here-*.jsonl")])
    assert result.exit_code == 2
    assert "no input files match" in result.output
