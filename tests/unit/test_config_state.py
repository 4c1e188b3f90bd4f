"""Issue 9, configuration: no silent fall back, config shipped in the package, and state that
does not appear by surprise in whatever folder a read command runs from."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app

runner = CliRunner()
REPO = Path(__file__).resolve().parents[2]


def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for key in list(os.environ):
        if key.startswith("RATCHET_"):
            monkeypatch.delenv(key)


def test_unknown_environment_exits_2_naming_it(ratchet_env, monkeypatch) -> None:
    monkeypatch.setenv("RATCHET_ENV", "prodution")
    res = runner.invoke(app, ["config", "show"])
    assert res.exit_code == 2
    assert "prodution" in res.output and "production" in res.output


def test_missing_config_folder_exits_2_naming_it(ratchet_env, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("RATCHET_CONFIG_DIR", str(tmp_path / "gone"))
    res = runner.invoke(app, ["config", "show"])
    assert res.exit_code == 2 and "gone" in res.output


def test_invalid_refusal_pattern_exits_2_naming_the_key(ratchet_env, monkeypatch, tmp_path) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text("curation:\n  refusal_patterns: ['(sorry']\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(bad))
    res = runner.invoke(app, ["datasets", "list"])
    assert res.exit_code == 2 and "curation.refusal_patterns" in res.output


def test_read_command_elsewhere_creates_no_state_and_says_where_it_looked(
    tmp_path, monkeypatch
) -> None:
    _clean_env(monkeypatch)
    elsewhere = tmp_path / "some-other-folder"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    for args in (
        ["datasets", "list"],
        ["datasets", "show", "v1"],
        ["export", "v1", "--format", "eval-jsonl"],
    ):
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (args, res.output)
        assert "no Ratchet state" in res.output
        assert str(elsewhere / ".ratchet") in " ".join(res.output.split())
    assert list(elsewhere.iterdir()) == []  # no empty .ratchet/ left behind


def test_config_show_says_which_home_store_and_database(tmp_path, monkeypatch) -> None:
    _clean_env(monkeypatch)
    monkeypatch.chdir(tmp_path)
    res = runner.invoke(app, ["config", "show"])
    assert res.exit_code == 0, res.output
    state = json.loads(res.stdout)["state"]
    assert state["home"] == str(tmp_path / ".ratchet")
    assert state["store"] == str(tmp_path / ".ratchet" / "store")
    assert state["database"].endswith(str(tmp_path / ".ratchet" / "ratchet.db"))
    assert state["home_exists"] is False and state["database_exists"] is False
    assert not (tmp_path / ".ratchet").exists()


@pytest.mark.slow
def test_built_wheel_carries_the_config_and_applies_production(tmp_path) -> None:
    """The non-editable install: the wheel holds ratchet/configs/*.yaml, and the package run
    from the unpacked wheel (not this checkout) applies production.yaml."""
    out, src = tmp_path / "wheel", tmp_path / "src"
    # the project's files only (a build in the checkout would leave build/ there)
    skip = shutil.ignore_patterns("__pycache__", "*.pyc")
    for name in ("ratchet", "flows", "tasks"):
        shutil.copytree(REPO / name, src / name, ignore=skip)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    # an isolated build, as `pip install .` does (it fetches the build backend from PyPI)
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", str(src), "--no-deps", "-q", "-w", str(out)],
        check=True,
        cwd=tmp_path,
        capture_output=True,
        timeout=300,
    )
    (wheel,) = out.glob("agent_ratchet-*.whl")
    with zipfile.ZipFile(wheel) as zf:
        names = set(zf.namelist())
        assert {
            "ratchet/configs/base.yaml",
            "ratchet/configs/local.yaml",
            "ratchet/configs/production.yaml",
        } <= names
        site = tmp_path / "site"
        zf.extractall(site)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RATCHET_")}
    env.update(PYTHONPATH=str(site), RATCHET_ENV="production", RATCHET_HOME=str(tmp_path / "home"))
    code = (
        "import json, ratchet; from ratchet.config import load_config; "
        "from ratchet.settings import get_settings; s = get_settings(); "
        "print(json.dumps([ratchet.__file__, str(s.config_dir), "
        "load_config(s).ingest.batch_size]))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env=env,
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    )
    where, config_dir, batch_size = json.loads(done.stdout)
    assert where.startswith(str(site)) and config_dir.startswith(str(site))
    assert batch_size == 50_000  # production.yaml's value, not base.yaml's 10000
