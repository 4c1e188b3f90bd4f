"""The whole weekly loop under a real Prefect run on the bundled sample: the logs model becomes
the first production, a candidate trained on corrections (local backend) is promoted; a worse
candidate (one that forgets golden cases) is rejected with its reasons, production untouched;
``dry_run`` decides and changes nothing."""

from __future__ import annotations

import json
from typing import Any

from tests.conftest import SAMPLE_DIR

MANIFEST = json.loads((SAMPLE_DIR / "manifest.json").read_text())


def _sample_paths() -> tuple[list[str], list[str]]:
    logs = [str(SAMPLE_DIR / f["name"]) for f in MANIFEST["files"] if f["kind"] != "feedback"]
    fb = [str(SAMPLE_DIR / f["name"]) for f in MANIFEST["files"] if f["kind"] == "feedback"]
    return logs, fb


def _report(flow_run_id: Any) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return next(a.data for a in arts if a.key == "weekly-report")


def test_weekly_registers_the_logs_model_then_rejects_a_candidate_that_forgets_golden_cases(
    prefect_harness, ratchet_env
) -> None:
    """On the sample, the logs model answers every holdout golden case as logged; the local
    retrieval candidate answers some of them with a neighbour's answer: it forgets golden
    cases, and the gate rejects it with its reasons while production stays the logs model."""
    from flows.weekly import weekly_flow
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    agent = "shop-assistant"
    logs, fb = _sample_paths()
    dry = weekly_flow(
        paths=logs,
        feedback_paths=fb,
        all_time=True,
        agent=agent,
        strategy="sft",
        backend="local",
        dry_run=True,
        return_state=True,
    )
    assert dry.is_completed(), dry.message
    planned = dry.result()["improve"][agent]
    assert planned["action"] == "none" and planned["passed"] is False  # would be rejected
    with open_database(get_settings())() as s:  # ... but the dry run changed nothing
        assert repo.get_model_version(s, planned["candidate"]).status == "candidate"
        assert repo.list_decisions(s, agent) == []
        first_prod = repo.production_version(s, agent).id
    first = _report(dry.state_details.flow_run_id)
    assert f"the logs model `{first_prod}` became production" in first
    assert "### Decision: dry run: no change" in first

    state = weekly_flow(
        paths=logs,
        feedback_paths=fb,
        all_time=True,
        agent=agent,
        strategy="sft",
        backend="local",
        return_state=True,
    )
    assert state.is_completed(), state.message
    decision = state.result()["improve"][agent]
    assert decision["action"] == "reject" and decision["passed"] is False
    assert any(r.startswith("no_regressions: ") for r in decision["reasons"])
    with open_database(get_settings())() as s:
        prod = repo.production_version(s, agent)
        assert prod.backend == "logs"  # the first run made the logs model production ...
        assert repo.get_model_version(s, decision["candidate"]).status == "rejected"
        (d,) = repo.list_decisions(s, agent)  # ... and the rejection left it untouched
        assert (d.action, d.baseline_id, d.passed) == ("reject", prod.id, False)
        assert d.gate_results["lineage"]["dataset"]["kind"] == "sft_examples"
        assert {r["rule"] for r in d.gate_results["gate"]["rules"]} >= {
            "min_cases",
            "quality:token_f1",
            "latency",
            "cost",
            "no_regressions",
            "key_metric_better",
            "fix_checks",
        }
    assert decision["candidate"] == planned["candidate"] and prod.id == first_prod  # reused
    text = _report(state.state_details.flow_run_id)
    assert "became production" not in text  # the second run found production in place
    assert "### Decision: REJECTED" in text and "| no_regressions | FAIL |" in text
    assert "### Comparison" in text and "| holdout | token_f1 |" in text
    assert "### Metric history" in text and f"| {prod.id} | production | logs |" in text
