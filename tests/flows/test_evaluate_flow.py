"""The evaluate flow under the session's Prefect harness, started the way an operator starts it
(``ratchet evaluate --json``), with a counting fake answering backend from the registry: the
comparison artifact with intervals, the runs in the database, ``evals list|show``, and a rerun
that pays nothing. One flow start for the lot (the harness is slow)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ratchet.backends import BACKENDS
from ratchet.settings import get_settings
from tasks import runtime
from tests import eval_fakes
from tests.eval_fakes import CASES
from tests.flows.test_train_flow import _artifacts


@pytest.fixture
def seeded(ratchet_env: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    monkeypatch.setitem(BACKENDS, "evalfake", ("tests.eval_fakes", None))
    monkeypatch.setenv("RATCHET_CONFIG", str(_config(ratchet_env.parent)))
    eval_fakes.CALLS.clear()
    s = get_settings()
    return eval_fakes.seed(runtime.sessions(s), runtime.store(s))


def _config(folder: Path) -> Path:
    path = folder / "eval-config.yaml"
    path.write_text("evaluation:\n  embedding: tfidf\n  bootstrap_samples: 200\n  concurrency: 3\n")
    return path


def test_evaluate_cli_runs_the_flow_publishes_the_comparison_and_reruns_for_free(
    prefect_harness: Any, seeded: dict[str, str]
) -> None:
    from flows.cli import app

    runner = CliRunner()
    out = runner.invoke(app, ["evaluate", "--candidate", seeded["candidate"], "--json"])
    assert out.exit_code == 0, out.output
    report = json.loads(out.stdout)
    assert report["baseline"]["model_version_id"] == seeded["baseline"]
    assert eval_fakes.CALLS == {"candidate": len(CASES), "baseline": len(CASES)}
    rows = {(r["subset"], r["metric"]): r for r in report["comparison"]}
    regression = rows[("holdout/kind=regression", "pass_rate")]
    assert regression["difference"]["value"] == 1.0 and regression["n"] == 4

    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterName

    with get_client(sync_client=True) as client:
        runs = client.read_flow_runs(
            flow_run_filter=FlowRunFilter(
                name=FlowRunFilterName(any_=[f"evaluate-{seeded['candidate']}-vs-production"])
            )
        )
    assert len(runs) == 1
    arts = _artifacts(runs[0].id)
    assert {"evaluation-comparison", "evaluation-summary"} <= set(arts)
    table = json.loads(arts["evaluation-comparison"].data)
    holdout = next(r for r in table if r["subset"] == "holdout" and r["metric"] == "pass_rate")
    assert holdout["baseline"].startswith("0.636 [") and holdout["candidate"] == (
        "1.000 [1.000, 1.000]"
    )
    assert report["candidate"]["eval_run_id"] in arts["evaluation-summary"].data

    listed = json.loads(runner.invoke(app, ["evals", "list", "--json"]).stdout)
    assert {r["eval_run"] for r in listed} == {
        report["candidate"]["eval_run_id"],
        report["baseline"]["eval_run_id"],
    }
    shown = runner.invoke(app, ["evals", "show", report["candidate"]["eval_run_id"], "--json"])
    assert shown.exit_code == 0, shown.output
    detail = json.loads(shown.stdout)
    assert detail["status"] == "completed" and detail["cases"] == len(CASES)
    assert detail["comparison"]["baseline_eval_run_id"] == report["baseline"]["eval_run_id"]
    assert any(
        m["metric"] == "delta:pass_rate" and m["subset"] == "fix_check" for m in detail["metrics"]
    )
    assert runner.invoke(app, ["evals", "show", "nope"]).exit_code == 2
    assert runner.invoke(app, ["evaluate", "--candidate", "nope"]).exit_code == 2

    again = runner.invoke(app, ["evaluate", "--candidate", seeded["candidate"]])
    assert again.exit_code == 0, again.output
    assert eval_fakes.CALLS == {"candidate": len(CASES), "baseline": len(CASES)}
    assert "holdout" in again.stdout and "see: ratchet evals show" in again.stdout
