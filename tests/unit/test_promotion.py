"""Promotion, forced promotion, rejection, rollback, rollout steps, the audit record and the
sticky per-user router, on a fresh SQLite database."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy.orm import Session, sessionmaker

from ratchet.db import InvalidTransitionError, dispose_all, repo, session_factory
from ratchet.gates import GatesConfig, compare_scores, evaluate_gate
from ratchet.promotion import advance_rollout, decide, force_promote, roll_back
from ratchet.routing import (
    NoRouteError,
    Route,
    choose_version,
    load_routes,
    next_share,
    pick,
    user_bucket,
)

AGENT = "support-bot"
CFG = GatesConfig(min_cases=10, key_metrics=["token_f1"])


@pytest.fixture
def factory(tmp_path: Path) -> Iterator[sessionmaker[Session]]:
    yield session_factory(f"sqlite:///{tmp_path / 'ratchet.db'}")
    dispose_all()


def _seed(factory: sessionmaker[Session]) -> tuple[str, str]:
    """A production version and a candidate trained on a dataset version made from feedback."""
    with factory() as s, s.begin():
        prod = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="logs",
            model_ref="m/p",
            status="production",
            version_id="prod",
        )
        repo.register_dataset_version(
            s,
            version_id="d" * 16,
            agent_id=AGENT,
            kind="sft_examples",
            path="curated/x",
            rows=40,
            schema_fingerprint="f" * 16,
            config_hash="c" * 16,
            lineage=[("feedback_file", "f" * 64), ("part", "interactions/part-1.parquet")],
        )
        run = repo.create_training_run(
            s,
            agent_id=AGENT,
            training_type="sft",
            backend="local",
            base_model_version=prod.id,
            created_by="tester",
            dataset_version_id="d" * 16,
        )
        cand = repo.create_model_version(
            s,
            agent_id=AGENT,
            backend="local",
            model_ref="m/c",
            parent_id=prod.id,
            training_run_id=run.id,
            version_id="cand",
        )
        return prod.id, cand.id


def _report(cand: str, base: str, good: bool):
    b = [0.5] * 15 + [0.9] * 15
    c = [0.9] * 30 if good else [0.9] * 15 + [0.2] * 15
    comp = compare_scores(
        cand,
        base,
        [f"k{i}" for i in range(30)],
        ["regression"] * 15 + ["golden"] * 15,
        {"token_f1": c},
        {"token_f1": b},
        config=CFG,
    )
    return evaluate_gate(comp, CFG)


def test_a_passing_gate_promotes_in_one_transaction_with_its_audit(factory) -> None:
    prod, cand = _seed(factory)
    with factory() as s, s.begin():
        out = decide(
            s,
            _report(cand, prod, good=True),
            decided_by="alice",
            flow_run_id="fr-1",
            eval_runs=["e1", "e2"],
        )
    assert out.action == "promote" and out.baseline_id == prod
    with factory() as s:
        assert repo.production_version(s, AGENT).id == cand
        assert repo.get_model_version(s, prod).status == "retired"
        (d,) = repo.list_decisions(s, AGENT)
    assert (d.action, d.passed, d.decided_by, d.flow_run_id) == ("promote", True, "alice", "fr-1")
    assert d.decided_at is not None and d.baseline_id == prod
    gate = d.gate_results["gate"]
    assert gate["passed"] and {r["rule"] for r in gate["rules"]} >= {"no_regressions", "latency"}
    lin = d.gate_results["lineage"]
    assert lin["dataset"]["version"] == "d" * 16 and lin["eval_runs"] == ["e1", "e2"]
    assert lin["dataset"]["made_from"] == {"feedback_file": 1, "part": 1}
    assert lin["training_run"] and lin["strategy"] == "sft"


def test_a_failing_gate_rejects_with_reasons_and_leaves_production_untouched(factory) -> None:
    prod, cand = _seed(factory)
    with factory() as s, s.begin():
        out = decide(s, _report(cand, prod, good=False), decided_by="alice")
    assert out.action == "reject" and not out.passed
    assert any(r.startswith("no_regressions:") for r in out.reasons)
    with factory() as s:
        p = repo.production_version(s, AGENT)
        assert (p.id, p.traffic_share, p.promoted_at is not None) == (prod, 1.0, True)
        assert repo.get_model_version(s, cand).status == "rejected"
        (d,) = repo.list_decisions(s, AGENT)
    assert d.action == "reject" and d.passed is False and d.reasons == list(out.reasons)
    assert d.gate_results["gate"]["passed"] is False


def test_dry_run_decides_but_changes_and_records_nothing(factory) -> None:
    prod, cand = _seed(factory)
    with factory() as s, s.begin():
        out = decide(s, _report(cand, prod, good=True), decided_by="a", dry_run=True)
    assert out.action == "none" and out.passed
    with factory() as s:
        assert repo.production_version(s, AGENT).id == prod
        assert repo.list_decisions(s, AGENT) == []


def test_a_gate_against_a_stale_baseline_is_refused(factory) -> None:
    _, cand = _seed(factory)
    with factory() as s, s.begin(), pytest.raises(InvalidTransitionError, match="production"):
        decide(s, _report(cand, "someone-else", good=True), decided_by="a")


def test_forced_promotion_records_its_reason_and_the_failed_gate(factory) -> None:
    prod, cand = _seed(factory)
    with factory() as s, s.begin():
        with pytest.raises(ValueError, match="reason"):
            force_promote(s, cand, reason="  ", decided_by="bob")
        out = force_promote(
            s,
            cand,
            reason="hotfix for the refund policy",
            decided_by="bob",
            report=_report(cand, prod, good=False),
        )
    assert out.action == "promote" and out.passed is False
    with factory() as s:
        assert repo.production_version(s, AGENT).id == cand
        (d,) = repo.list_decisions(s, AGENT)
    assert d.reasons[0] == "forced: hotfix for the refund policy" and d.passed is False
    assert d.gate_results["forced"] is True
    assert d.gate_results["force_reason"] == "hotfix for the refund policy"
    assert d.gate_results["gate"]["passed"] is False


def test_rollback_restores_the_previous_production(factory) -> None:
    prod, cand = _seed(factory)
    with factory() as s, s.begin():
        decide(s, _report(cand, prod, good=True), decided_by="alice")
    with factory() as s, s.begin():
        out = roll_back(s, AGENT, decided_by="carol", reason="complaints")
    assert (out.candidate_id, out.baseline_id) == (prod, cand)
    with factory() as s:
        assert repo.production_version(s, AGENT).id == prod
        assert repo.get_model_version(s, cand).status == "retired"
        d = repo.list_decisions(s, AGENT)[0]
    assert (d.action, d.decided_by, d.reasons) == ("rollback", "carol", ["complaints"])
    with factory() as s, s.begin():  # --to: back to a named retired version
        out = roll_back(s, AGENT, decided_by="carol", to=cand)
    with factory() as s:
        assert repo.production_version(s, AGENT).id == cand
    with factory() as s, s.begin(), pytest.raises(InvalidTransitionError, match="retired"):
        roll_back(s, AGENT, decided_by="carol", to=cand)  # it serves now: not retired


def test_rollout_steps_through_the_configured_shares_then_promotes(factory) -> None:
    prod, cand = _seed(factory)
    shares = [0.1, 0.5, 1.0]
    seen = []
    for _ in range(3):
        with factory() as s, s.begin():
            out = advance_rollout(s, _report(cand, prod, good=True), shares, decided_by="a")
            seen.append((out.action, out.traffic_share))
    assert seen == [("rollout", 0.1), ("rollout", 0.5), ("promote", 1.0)]
    with factory() as s:
        assert repo.production_version(s, AGENT).id == cand
    assert next_share(0.0, shares) == 0.1 and next_share(0.1, shares) == 0.5
    assert next_share(1.0, shares) == 1.0


# ----------------------------------------------------------------------------------- routing ----
def test_routing_is_sticky_and_sends_about_the_share_to_the_candidate() -> None:
    route = Route(AGENT, "prod", "cand", 0.1)
    users = [f"user-{i}" for i in range(10_000)]
    first = [pick(route, u) for u in users]
    assert first == [pick(route, u) for u in users]  # the same user, the same version
    share = first.count("cand") / len(users)
    assert 0.09 <= share <= 0.11
    wider = Route(AGENT, "prod", "cand", 0.5)
    # raising the share only moves users to the candidate: nobody on it goes back
    assert all(pick(wider, u) == "cand" for u, v in zip(users, first, strict=True) if v == "cand")
    assert 0.48 <= [pick(wider, u) for u in users].count("cand") / len(users) <= 0.52
    assert all(0.0 <= user_bucket(AGENT, u) < 1.0 for u in users[:100])
    assert user_bucket(AGENT, "u1") != user_bucket("other-agent", "u1")


def test_choose_version_from_the_database_or_a_preloaded_table(factory) -> None:
    with pytest.raises(NoRouteError):
        choose_version(AGENT, "u1", sessions=factory)
    prod, cand = _seed(factory)
    assert choose_version(AGENT, "u1", sessions=factory) == prod  # share 0: production only
    with factory() as s, s.begin():
        repo.set_traffic_share(s, cand, 0.5)
    with factory() as s:
        routes = load_routes(s)
    assert routes[AGENT] == Route(AGENT, prod, cand, 0.5)
    users = [f"u{i}" for i in range(2000)]
    by_db = [choose_version(AGENT, u, sessions=factory) for u in users[:50]]
    assert by_db == [choose_version(AGENT, u, routes=routes) for u in users[:50]]
    share = sum(choose_version(AGENT, u, routes=routes) == cand for u in users) / len(users)
    assert 0.45 <= share <= 0.55
    with pytest.raises(ValueError):
        choose_version(AGENT, "u1")
