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


def _decisions(flow_state: Any) -> dict[str, dict[str, Any]]:
    return dict(flow_state.result()["improve"])


def test_weekly_promotes_a_candidate_that_learned_corrections_and_rejects_one_that_forgets(
    prefect_harness, ratchet_env, tmp_path, monkeypatch
) -> None:
    """The sample's story, on a real Prefect run: the logs models become the first productions;
    ``shop-assistant``'s candidate learned its users' corrections of an out-of-date shipping
    answer, fixes holdout regression cases the logs model fails and is promoted;
    ``billing-helper``'s candidate forgets a golden case and is rejected with its reasons while
    production stays the logs model. A dry run first decides the same and changes nothing."""
    from flows.weekly import weekly_flow
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    # The similarity scorer is reported, never gated (the gate reads token_f1 and the per-case
    # verdict, which is token_f1's): tfidf, as the other evaluation tests, instead of MiniLM,
    # which scores case by case (about half of this test's time; its own tests cover it).
    (tmp_path / "eval.yaml").write_text("evaluation:\n  embedding: tfidf\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(tmp_path / "eval.yaml"))
    logs, fb = _sample_paths()
    common: dict[str, Any] = {
        "paths": logs,
        "feedback_paths": fb,
        "all_time": True,
        "strategy": "sft",
        "backend": "local",
        "return_state": True,
    }
    dry = weekly_flow(agent="shop-assistant", dry_run=True, **common)
    assert dry.is_completed(), dry.message
    planned = _decisions(dry)["shop-assistant"]
    assert planned["action"] == "none" and planned["passed"] is True  # would be promoted
    with open_database(get_settings())() as s:  # ... but the dry run changed nothing
        assert repo.get_model_version(s, planned["candidate"]).status == "candidate"
        assert repo.list_decisions(s, "shop-assistant") == []
        logs_model = repo.production_version(s, "shop-assistant").id
    assert "### Decision: dry run: no change" in _report(dry.state_details.flow_run_id)

    state = weekly_flow(**common)
    assert state.is_completed(), state.message
    decisions = _decisions(state)
    promoted, rejected = decisions["shop-assistant"], decisions["billing-helper"]
    assert promoted["action"] == "promote" and promoted["passed"] is True
    assert promoted["candidate"] == planned["candidate"]  # the dry run's candidate, reused
    assert rejected["action"] == "reject" and rejected["passed"] is False
    assert any(r.startswith("no_regressions: ") for r in rejected["reasons"])
    unproven = decisions["returns-bot"]  # better on average, not beyond doubt: not promoted
    assert unproven["action"] == "reject"
    assert any(r.startswith("key_metric_better: ") for r in unproven["reasons"])
    with open_database(get_settings())() as s:
        prod = repo.production_version(s, "shop-assistant")
        assert prod.id == promoted["candidate"] and prod.backend == "local"
        assert repo.get_model_version(s, logs_model).status == "retired"
        (d,) = repo.list_decisions(s, "shop-assistant")
        rules = {r["rule"]: r for r in d.gate_results["gate"]["rules"]}
        assert all(r["passed"] for name, r in rules.items() if name != "fix_checks")
        assert d.gate_results["lineage"]["dataset"]["kind"] == "sft_examples"
        billing = repo.production_version(s, "billing-helper")
        assert billing.backend == "logs"  # the rejection left the logs model in place
        assert repo.get_model_version(s, rejected["candidate"]).status == "rejected"
        (r,) = repo.list_decisions(s, "billing-helper")
        assert (r.action, r.baseline_id, r.passed) == ("reject", billing.id, False)
        assert {x["rule"] for x in r.gate_results["gate"]["rules"]} >= {
            "min_cases",
            "quality:token_f1",
            "latency",
            "cost",
            "no_regressions",
            "key_metric_better",
            "fix_checks",
        }
    text = _report(state.state_details.flow_run_id)
    assert "### Decision: PROMOTED" in text and "### Decision: REJECTED" in text
    assert "| no_regressions | FAIL |" in text
    assert "### Comparison" in text and "| holdout | token_f1 |" in text
    assert "### Metric history" in text and f"| {prod.id} | production | local |" in text
