"""The promote flow under a real Prefect run, on evaluation results laid out as ``evaluate``
writes them (``evals/<run>/results.parquet``, ``comparison.json``, eval_runs rows): a candidate
that fixes regression cases and keeps golden ones is promoted; one that forgets golden cases is
rejected with its reasons and production is untouched; a forced promotion records its reason;
the CLI's rollback and route answer from the database."""

from __future__ import annotations

import json
from typing import Any

import pyarrow as pa
import pytest

AGENT = "support-bot"
N = 30  # 15 golden cases (the baseline passes), 15 regression cases (it fails)


def _rows(run_id: str, model: str, *, fixes: bool, forgets: int = 0) -> list[dict[str, Any]]:
    rows = []
    for i in range(N):
        kind = "golden" if i < N // 2 else "regression"
        good = (kind == "golden" and i >= forgets) or (kind == "regression" and fixes)
        score = 1.0 if good else 0.2
        rows.append(
            {
                "eval_run_id": run_id,
                "case_id": f"case-{i}",
                "model_version_id": model,
                "answer": "redacted",
                "scores": {"token_f1": score, "exact_match": score},
                "passed": good,
                "latency_ms": 5.0,
                "cost_usd": 0.0,
                "suite": "s",
                "kind": kind,
                "split": "holdout",
                "fix_check": False,
                "topic": None,
                "input_hash": f"h{i}",
                "tool_calls": None,
                "source": "answered",
                "error": None,
                "scorer_versions": {"token_f1": "1"},
            }
        )
    return rows


def _evaluated(candidate: str, baseline: str, *, fixes: bool, forgets: int) -> str:
    """Eval runs, results and comparison of ``candidate`` vs ``baseline``, as evaluate stores them."""
    from ratchet import schemas
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings
    from ratchet.store import Store

    settings = get_settings()
    store = Store(settings.store_root)
    ids = {}
    with open_database(settings)() as s, s.begin():
        for model, rows_kw in (
            (candidate, {"fixes": fixes, "forgets": forgets}),
            (baseline, {"fixes": False}),
        ):
            run = repo.create_eval_run(s, agent_id=AGENT, model_version_id=model)
            path = f"evals/{run.id}/results.parquet"
            store.write_table_at(
                path,
                pa.Table.from_pylist(_rows(run.id, model, **rows_kw), schema=schemas.EVAL_RESULTS),
                schemas.EVAL_RESULTS,
            )
            repo.finish_eval_run(s, run.id, n_cases=N, results_path=path)
            ids[model] = run.id
    doc = {
        "candidate_eval_run_id": ids[candidate],
        "baseline_eval_run_id": ids[baseline],
        "candidate": candidate,
        "baseline": baseline,
        "rows": [],
    }
    store.write_bytes(f"evals/{ids[candidate]}/comparison.json", json.dumps(doc).encode())
    return ids[candidate]


def _versions() -> tuple[str, str, str]:
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    with open_database(get_settings())() as s, s.begin():
        prod = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="logs",
            model_ref="m/p",
            status="production",
            version_id="prod-1",
        )
        good = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="local",
            model_ref="m/g",
            parent_id=prod.id,
            version_id="cand-good",
        )
        bad = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="local",
            model_ref="m/b",
            parent_id=prod.id,
            version_id="cand-bad",
        )
    return prod.id, good.id, bad.id


def test_promote_flow_promotes_rejects_and_forces_with_audit(
    prefect_harness, ratchet_env, monkeypatch
) -> None:
    from flows.promote import promote_flow
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    monkeypatch.setenv("RATCHET_USER", "dana")
    prod, good, bad = _versions()
    _evaluated(bad, prod, fixes=True, forgets=2)  # better on average, forgets 2 golden cases
    rejected = promote_flow(candidate=bad)
    assert rejected["action"] == "reject" and rejected["passed"] is False
    assert any(r.startswith("no_regressions: 2 of 15") for r in rejected["reasons"])
    with open_database(get_settings())() as s:
        assert repo.production_version(s, AGENT).id == prod  # untouched
        assert repo.get_model_version(s, bad).status == "rejected"

    dry = (
        promote_flow(candidate=good, dry_run=True)
        if _evaluated(good, prod, fixes=True, forgets=0)
        else None
    )
    assert dry is not None and dry["action"] == "none" and dry["passed"] is True
    done = promote_flow(candidate=good)
    assert done["action"] == "promote" and done["passed"] is True
    with open_database(get_settings())() as s:
        assert repo.production_version(s, AGENT).id == good
        d = repo.list_decisions(s, AGENT)[0]
    assert (d.action, d.decided_by, d.baseline_id) == ("promote", "dana", prod)
    rules = {r["rule"]: r for r in d.gate_results["gate"]["rules"]}
    assert rules["no_regressions"]["numbers"]["newly_passing"] == 15
    assert rules["key_metric_better"]["passed"] and len(d.gate_results["lineage"]["eval_runs"]) == 2

    with open_database(get_settings())() as s, s.begin():  # a candidate never evaluated
        repo.create_model_version(
            s, agent_id=AGENT, backend="local", model_ref="m/h", version_id="cand-hotfix"
        )
    with pytest.raises(Exception, match="no completed evaluation"):
        promote_flow(candidate="cand-hotfix")
    forced = promote_flow(candidate="cand-hotfix", force=True, reason="legal asked for it")
    assert forced["action"] == "promote" and forced["reasons"][0] == "forced: legal asked for it"
    with open_database(get_settings())() as s:
        d = repo.list_decisions(s, AGENT)[0]
    assert d.gate_results["force_reason"] == "legal asked for it" and d.passed is False


def test_cli_rollback_and_route(ratchet_env, monkeypatch) -> None:
    from typer.testing import CliRunner

    from flows.cli import app
    from ratchet.db import open_database, repo
    from ratchet.db.repo import Decision
    from ratchet.settings import get_settings

    runner = CliRunner()
    prod, good, _ = _versions()
    with open_database(get_settings())() as s, s.begin():
        repo.promote(s, good, Decision(decided_by="t"))
    res = runner.invoke(app, ["models", "route", "--agent", AGENT, "--user", "u-1", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout) == {
        "agent": AGENT,
        "version": good,
        "production": good,
        "candidate": None,
        "candidate_share": 0.0,
    }
    res = runner.invoke(app, ["promote", good, "--force"])
    assert res.exit_code == 2 and "--reason" in res.output
    res = runner.invoke(app, ["rollback", "--json"])  # the only agent with a production
    assert res.exit_code == 0, res.output
    # JSON on stdout; the core's INFO line may go to stderr (once a flow command routed it)
    out = json.loads(res.stdout)
    assert (out["action"], out["candidate"], out["baseline"]) == ("rollback", prod, good)
    res = runner.invoke(app, ["rollback", "--agent", AGENT])  # prod replaced nothing
    assert res.exit_code == 1 and "replaced nothing" in res.output
    res = runner.invoke(app, ["rollback", "--to", good])
    assert res.exit_code == 0 and f"{good} serves again" in res.output
    res = runner.invoke(app, ["models", "route", "--agent", "nobody", "--user", "u"])
    assert res.exit_code == 2
