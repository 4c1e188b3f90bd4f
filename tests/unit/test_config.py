"""Settings and pipeline config: layering, validation at the edge, errors that name the key."""

from __future__ import annotations

from pathlib import Path

import pytest

from ratchet.config import ConfigError, PipelineConfig, describe, load_config
from ratchet.settings import PACKAGE_CONFIG_DIR, REPO_CONFIG_DIR, get_settings


def _settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **env: str):
    for key in list(__import__("os").environ):
        if key.startswith("RATCHET_"):
            monkeypatch.delenv(key)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return get_settings()


def test_defaults_put_store_and_sqlite_under_dot_ratchet(tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = _settings(tmp_path, monkeypatch)
    # resolved once, absolute: what `config show` prints is where the state is
    assert s.home == tmp_path / ".ratchet"
    assert s.store_root == str(tmp_path / ".ratchet" / "store")
    assert s.db_url == f"sqlite:///{tmp_path / '.ratchet' / 'ratchet.db'}"
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
    from ratchet.config import NOT_ENVIRONMENTS
    from ratchet.gates import load_gates

    for path in sorted(REPO_CONFIG_DIR.glob("*.yaml")):
        import yaml

        if path.stem == "gates":  # the promotion gate's own file and model
            load_gates(REPO_CONFIG_DIR)
            continue
        assert path.stem not in NOT_ENVIRONMENTS or path.stem == "base"
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
    with pytest.raises(ConfigError, match=r"absent\.yaml"):
        load_config(s)


def test_bad_setting_is_named(tmp_path, monkeypatch) -> None:
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="env"):
        _settings(tmp_path, monkeypatch, RATCHET_ENV="../etc")


def test_every_field_is_documented() -> None:
    rows = describe()
    assert len(rows) > 20
    assert [key for key, text in rows if not text] == []


# --- the layered result (issue 9): base <- env delta <- RATCHET_CONFIG <- overrides ------------
def _config_dir(tmp_path: Path) -> Path:
    folder = tmp_path / "cfg"
    folder.mkdir()
    (folder / "base.yaml").write_text(
        "ingest:\n  batch_size: 1000\n  max_quarantine_share: 0.3\n  workers: 1\n"
        "curation:\n  holdout_share: 0.25\n  refusal_patterns: ['^no$', '^never$']\n"
        "runtime:\n  max_workers: 4\n"
    )
    (folder / "staging.yaml").write_text(
        "ingest:\n  batch_size: 2000\ncuration:\n  refusal_patterns: ['^nope$']\n"
    )
    return folder


def test_each_layer_overrides_only_what_it_sets(tmp_path, monkeypatch) -> None:
    folder = _config_dir(tmp_path)
    mine = tmp_path / "mine.yaml"
    mine.write_text("ingest:\n  max_quarantine_share: 0.1\n")
    s = _settings(
        tmp_path,
        monkeypatch,
        RATCHET_CONFIG_DIR=str(folder),
        RATCHET_ENV="staging",
        RATCHET_CONFIG=str(mine),
    )
    cfg = load_config(s, overrides={"ingest": {"workers": 3}})
    defaults = PipelineConfig()
    assert cfg.ingest.batch_size == 2000  # env delta over base
    assert cfg.ingest.max_quarantine_share == 0.1  # RATCHET_CONFIG over base
    assert cfg.ingest.workers == 3  # overrides over base
    assert cfg.curation.holdout_share == 0.25  # base, untouched by the later layers
    assert cfg.curation.refusal_patterns == ["^nope$"]  # a list is replaced, never merged
    assert cfg.runtime.max_workers == 4  # base; a sibling section the delta never names
    assert cfg.export == defaults.export  # no layer names it: the model's defaults
    assert cfg.ingest.max_record_bytes == defaults.ingest.max_record_bytes
    # without the later layers, each one's effect goes away
    s2 = _settings(tmp_path, monkeypatch, RATCHET_CONFIG_DIR=str(folder), RATCHET_ENV="staging")
    cfg2 = load_config(s2)
    assert (cfg2.ingest.batch_size, cfg2.ingest.max_quarantine_share, cfg2.ingest.workers) == (
        2000,
        0.3,
        1,
    )


def test_shipped_production_layered_over_shipped_base(tmp_path, monkeypatch) -> None:
    import yaml

    base = yaml.safe_load((PACKAGE_CONFIG_DIR / "base.yaml").read_text())
    prod = yaml.safe_load((PACKAGE_CONFIG_DIR / "production.yaml").read_text())
    local = load_config(_settings(tmp_path, monkeypatch))
    cfg = load_config(_settings(tmp_path, monkeypatch, RATCHET_ENV="production"))
    assert cfg.ingest.batch_size == prod["ingest"]["batch_size"] != local.ingest.batch_size
    assert cfg.runtime.max_workers == prod["runtime"]["max_workers"]
    assert cfg.ingest.max_record_bytes == base["ingest"]["max_record_bytes"]
    assert cfg.curation == local.curation and cfg.export == local.export
    assert local.ingest.batch_size == base["ingest"]["batch_size"]


def test_config_files_ship_inside_the_package() -> None:
    import ratchet

    assert PACKAGE_CONFIG_DIR == Path(ratchet.__file__).parent / "configs"
    assert REPO_CONFIG_DIR == PACKAGE_CONFIG_DIR
    assert {"base.yaml", "local.yaml", "production.yaml"} <= {
        p.name for p in PACKAGE_CONFIG_DIR.glob("*.yaml")
    }


# --- no silent fall back -----------------------------------------------------------------------
def test_unknown_environment_is_an_error_naming_it(tmp_path, monkeypatch) -> None:
    s = _settings(tmp_path, monkeypatch, RATCHET_ENV="prodution")
    with pytest.raises(ConfigError) as err:
        load_config(s)
    assert "prodution" in str(err.value) and "RATCHET_ENV" in str(err.value)
    assert "production" in str(err.value)  # the known ones are listed


def test_missing_config_folder_is_an_error_naming_it(tmp_path, monkeypatch) -> None:
    s = _settings(tmp_path, monkeypatch, RATCHET_CONFIG_DIR=str(tmp_path / "no-such-dir"))
    with pytest.raises(ConfigError, match="no-such-dir"):
        load_config(s)
    empty = tmp_path / "empty"
    empty.mkdir()
    s = _settings(tmp_path, monkeypatch, RATCHET_CONFIG_DIR=str(empty))
    with pytest.raises(ConfigError, match=r"base\.yaml"):
        load_config(s)


@pytest.mark.parametrize(
    ("yaml_text", "key"),
    [
        ("curation:\n  refusal_patterns: ['^fine$', '(unclosed']\n", "curation.refusal_patterns"),
        ("curation:\n  refusal_patterns: ['.*']\n", "curation.refusal_patterns"),
        ("curation:\n  placeholder_pattern: '[A-Z'\n", "curation.placeholder_pattern"),
        # RE2 has no look-around: Python's re would accept this one
        (
            "redaction:\n  extra_patterns:\n    TICKET: '(?<=T-)\\\\d+'\n",
            "redaction.extra_patterns",
        ),
    ],
)
def test_every_regex_compiles_at_validation(tmp_path, monkeypatch, yaml_text, key) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml_text)
    s = _settings(tmp_path, monkeypatch, RATCHET_CONFIG=str(bad))
    with pytest.raises(ConfigError) as err:
        load_config(s)
    assert key in str(err.value)
    assert "unclosed" not in str(err.value)  # the key and the rule, never the value


def test_shipped_patterns_compile() -> None:
    cfg = PipelineConfig()
    assert cfg.curation.refusal_patterns and cfg.curation.placeholder_pattern
