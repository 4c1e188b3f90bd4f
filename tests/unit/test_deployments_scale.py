"""The scale-out examples in deployments/ name only settings that exist: no container engine runs
here, so what can be checked is checked. The compose file parses; every RATCHET_* variable in it
is one ratchet/settings.py reads; the config it points at (scale.yaml) validates with every key
known; every Ratchet service gets the same environment (a Dask worker rebuilds settings, store
and database from it); and the weekly deployment declares one run per agent."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

from ratchet.config import ConfigError, PipelineConfig, load_config
from ratchet.settings import Settings, get_settings

DEPLOYMENTS = Path(__file__).resolve().parents[2] / "deployments"


def _compose() -> dict[str, Any]:
    return yaml.safe_load((DEPLOYMENTS / "docker-compose.yaml").read_text())


def _settings_variables() -> set[str]:
    names: set[str] = set()
    for name, field in Settings.model_fields.items():
        names.add(f"RATCHET_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []):
            if isinstance(choice, str) and choice.startswith("RATCHET_"):
                names.add(choice)
    return names


def _ratchet_variables(text: str) -> set[str]:
    return set(re.findall(r"\bRATCHET_[A-Z0-9_]+\b", text))


def test_compose_names_only_ratchet_variables_the_settings_read() -> None:
    compose = _compose()
    known = _settings_variables()
    used = {k for k in compose["x-ratchet-env"] if k.startswith("RATCHET_")}
    assert used >= {"RATCHET_STORE", "RATCHET_DATABASE_URL", "RATCHET_S3_ENDPOINT_URL",
                    "RATCHET_PSEUDONYM_KEY", "RATCHET_CONFIG"}  # fmt: skip
    assert used <= known, f"not settings: {sorted(used - known)}"
    # anywhere in the file (comments included), and in the README beside it
    for path in ("docker-compose.yaml", "README.md", "prefect.yaml"):
        unknown = _ratchet_variables((DEPLOYMENTS / path).read_text()) - known
        assert not unknown, f"{path} names settings that do not exist: {sorted(unknown)}"


def test_every_ratchet_service_gets_the_same_environment() -> None:
    services = _compose()["services"]
    ratchet = {n: s for n, s in services.items() if s.get("image") == "ratchet:latest"}
    assert {"dask-worker", "prefect-worker"} <= set(ratchet)
    env = _compose()["x-ratchet-env"]
    for name in ("dask-worker", "prefect-worker"):
        assert ratchet[name]["environment"] == env, name
    assert services["prefect-server"]["environment"][
        "PREFECT_API_DATABASE_CONNECTION_URL"
    ].startswith("postgresql+asyncpg://")
    assert env["RATCHET_DATABASE_URL"].startswith("postgresql+psycopg://")
    assert env["RATCHET_STORE"].startswith("s3://")


def test_the_scale_config_validates_and_points_at_the_compose_scheduler(
    ratchet_env: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = _compose()["x-ratchet-env"]
    monkeypatch.setenv("RATCHET_ENV", env["RATCHET_ENV"])
    monkeypatch.setenv("RATCHET_CONFIG", str(DEPLOYMENTS / Path(env["RATCHET_CONFIG"]).name))
    config = load_config(get_settings())
    assert config.runtime.task_runner == "dask"
    assert config.runtime.agent_concurrency == "wait"
    scheduler = _compose()["services"]["dask-scheduler"]["command"]
    host, port = config.runtime.dask_address.removeprefix("tcp://").split(":")
    assert host == "dask-scheduler" and f"--port {port}" in scheduler
    # the file holds nothing the model does not know (extra keys are refused, naming them)
    raw = yaml.safe_load((DEPLOYMENTS / "scale.yaml").read_text())
    PipelineConfig.model_validate(raw)
    with pytest.raises(ConfigError, match=r"runtime\.dask_adress"):
        load_config(get_settings(), {"runtime": {"dask_adress": "x"}})


def test_the_weekly_deployment_declares_one_run_per_agent() -> None:
    import inspect

    from flows.weekly import weekly_flow

    deployments = {
        d["name"]: d
        for d in yaml.safe_load((DEPLOYMENTS / "prefect.yaml").read_text())["deployments"]
    }
    weekly = deployments["weekly"]
    assert weekly["parameters"]["agent_concurrency"] == "wait"
    params = inspect.signature(weekly_flow.fn).parameters
    assert set(weekly["parameters"]) <= set(params)
