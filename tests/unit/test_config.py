"""Settings and pipeline config: layering, validation at the edge, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratchet.config import ConfigError, PipelineConfig, describe, load_config
from ratchet.settings import REPO_CONFIG_DIR, get_settings


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str):
    for key in list(__import__("os").environ):
        if key.startswith("RATCHET_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return get_settings()


def test_defaults_put_store_and_sqlite_under_dot_ratchet(tmp_path, monkeypatch) -> None:
    s = _settings(tmp_path, monkeypatch)
    assert s.store_root == ".ratchet/store"
    assert s.db_url == "sqlite:///.ratchet/ratchet.db"
    assert s.store_is_local


def test_contract_variables_are_read(tmp_path, monkeypatch) -> None:
    s = _settings(
        tmp_path,
        monkeypatch,
        RATCHET_STORE="s3://bucket/prefix",
        RATCHET_DATABASE_URL="postgresql+psycopg://u:hunter2@db/ratchet",
        RATCHET_PSEUDONYM_KEY="k" * 32,
    )
    assert s.store_root == "s3://bucket/prefix" and not s.store_is_local
    assert s.pseudonym_key is not None and s.pseudonym_key.get_secret_value() == "k" * 32
    shown = repr(s.masked())
    assert "hunter2" not in shown and "k" * 32 not in shown
    assert "***" in shown


def test_shipped_yaml_files_validate() -> None:
    for path in sorted(REPO_CONFIG_DIR.glob("*.yaml")):
        import yaml

        PipelineConfig.model_validate(yaml.safe_load(path.read_text()) or {})


def test_layers_apply_in_order(tmp_path, monkeypatch) -> None:
    over = tmp_path / "over.yaml"
    over.write_text("ingest:\n  batch_size: 777\n")
    s = _settings(tmp_path, monkeypatch, RATCHET_ENV="production", RATCHET_CONFIG=str(over))
    cfg = load_config(s, overrides={"runtime": {"max_workers": 3}})
    assert cfg.ingest.batch_size == 777  # RATCHET_CONFIG over production.yaml
    assert cfg.ingest.max_quarantine_share == 0.05  # production.yaml over base.yaml
    assert cfg.runtime.max_workers == 3  # overrides over everything
    assert cfg.curation.holdout_share == 0.2  # base.yaml


@pytest.mark.parametrize(
    ("yaml_text", "names"),
    [
        ("ingest:\n  batch_sise: 10\n", "ingest.batch_sise"),
        ("ingest:\n  batch_size: -5\n", "ingest.batch_size"),
        ("curation:\n  holdout_share: 1.5\n", "curation.holdout_share"),
        ("curation:\n  golden_min_rating: 2\n  negative_max_rating: 3\n", "negative_max_rating"),
        ("- a list\n", "mapping"),
        ("ingest: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_config_stops_naming_the_key(tmp_path, monkeypatch, yaml_text, names) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    s = _settings(tmp_path, monkeypatch, RATCHET_CONFIG=str(bad))
    with pytest.raises(ConfigError) as err:
        load_config(s)
    assert names in str(err.value)
    assert str(bad) in str(err.value)


def test_missing_config_file_is_named(tmp_path, monkeypatch) -> None:
    s = _settings(tmp_path, monkeypatch, RATCHET_CONFIG=str(tmp_path / "absent.yaml"))
    with pytest.raises(ConfigError, match="absent.yaml"):
        load_config(s)


def test_bad_setting_is_named(tmp_path, monkeypatch) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="env"):
        _settings(tmp_path, monkeypatch, RATCHET_ENV="../etc")


def test_every_field_is_documented() -> None:
    rows = describe()
    assert len(rows) > 20
    assert [key for key, text in rows if not text] == []
