"""The shipped deployment runs as shipped: ``deployments/prefect.yaml`` deployed to a real local
Prefect server (the session's: ``prefect_test_harness`` runs the same server app as ``prefect
server start``, as a subprocess on a loopback port; a second server would only cost its start),
its weekly deployment run by a process worker to Completed, with the run named by its window and
its report attached.

Everything goes through the ``prefect`` CLI in subprocesses, as the README tells an operator,
with the client state (Prefect's home and Ratchet's) in a temporary folder. Slow (half a minute).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
DEPLOYMENTS = REPO / "deployments" / "prefect.yaml"
PREFECT = [sys.executable, "-m", "prefect"]


def _get(url: str) -> Any:
    with urllib.request.urlopen(url, timeout=5) as r:  # noqa: S310 - a loopback http URL
        return json.loads(r.read())


def _post(url: str, body: dict[str, Any]) -> Any:
    req = urllib.request.Request(  # noqa: S310 - a loopback http URL
        url,
        data=json.dumps(body).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=10) as r:  # noqa: S310 - a loopback http URL
        return json.loads(r.read())


@pytest.fixture(scope="module")
def prefect_server(
    prefect_harness: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[dict[str, str]]:
    """The operator's env for the session's Prefect server, with homes of its own."""
    from prefect.settings import PREFECT_API_URL

    root = tmp_path_factory.mktemp("prefect-server")
    env = {
        k: v for k, v in os.environ.items()
        if not k.startswith(("PREFECT_", "RATCHET_"))
    }  # fmt: skip
    env.update(
        PREFECT_HOME=str(root / "prefect-home"), PREFECT_SERVER_ANALYTICS_ENABLED="false",
        DO_NOT_TRACK="1", GX_ANALYTICS_ENABLED="false",
        PREFECT_API_URL=str(PREFECT_API_URL.value()),
        RATCHET_HOME=str(root / "ratchet-home"),
    )  # fmt: skip
    _get(f"{env['PREFECT_API_URL']}/health")  # up, and reachable from other processes
    yield env


def _prefect(env: dict[str, str], *args: str, timeout: int = 180) -> str:
    out = subprocess.run(
        [*PREFECT, *args], env=env, cwd=REPO, capture_output=True, text=True, timeout=timeout
    )
    assert out.returncode == 0, (
        f"prefect {' '.join(args)}:\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    )
    return out.stdout


def test_the_shipped_file_names_no_machine_path() -> None:
    spec = yaml.safe_load(DEPLOYMENTS.read_text())
    weekly = next(d for d in spec["deployments"] if d["name"] == "weekly")
    assert weekly["entrypoint"] == "flows/weekly.py:weekly_flow"
    # inputs come from settings (the inbox), never paths; one run per agent at a time
    assert weekly.get("parameters") == {"agent_concurrency": "wait"}
    assert "/data/" not in DEPLOYMENTS.read_text()
    assert weekly["work_pool"]["job_variables"]["env"]["PREFECT_LOGGING_EXTRA_LOGGERS"] == "ratchet"


@pytest.mark.slow
def test_weekly_deployment_runs_to_completed_on_a_local_server(prefect_server) -> None:
    env = prefect_server
    api = env["PREFECT_API_URL"]
    _prefect(env, "work-pool", "create", "ratchet-local", "--type", "process")
    _prefect(env, "--no-prompt", "deploy", "--all", "--prefect-file", str(DEPLOYMENTS))
    deployment = _get(f"{api}/deployments/name/weekly-improvement/weekly")
    assert deployment["schedules"] and deployment["work_pool_name"] == "ratchet-local"

    out = _prefect(env, "deployment", "run", "weekly-improvement/weekly")
    run_id = re.search(r"UUID: ([0-9a-f-]{36})", out).group(1)
    worker = subprocess.run(  # polls once, waits for its runs
        [*PREFECT, "worker", "start", "--pool", "ratchet-local", "--run-once"],
        env=env,
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=400,
    )
    run = _get(f"{api}/flow_runs/{run_id}")
    assert run["state"]["type"] == "COMPLETED", (
        run["state"],
        worker.stdout[-3000:],
        worker.stderr[-3000:],
    )
    assert re.fullmatch(r"weekly-\d{4}-\d{2}-\d{2}", run["name"])
    artifacts = _post(f"{api}/artifacts/filter", {"artifacts": {"flow_run_id": {"any_": [run_id]}}})
    report = {a["key"]: a for a in artifacts}["weekly-report"]
    assert "Nothing ingested" in report["data"]  # the inbox exists after set-up, empty
    assert (Path(env["RATCHET_HOME"]) / "inbox" / "logs").is_dir()
