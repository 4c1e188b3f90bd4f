"""One evaluation end to end through the core (no Prefect): results, metrics, the paired
comparison, the answer cache, candidate-only replay and imported suites. Answerers come from
the backend registry (a counting fake registered as ``evalfake``), never from patched imports."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ratchet import schemas
from ratchet.backends import BACKENDS
from ratchet.config import PipelineConfig
from ratchet.curation.select import latest_curated_eval_cases
from ratchet.db import repo
from ratchet.db.session import dispose_all, session_factory
from ratchet.evaluation.evaluate import (
    EvalContext,
    EvalRequest,
    EvaluationError,
    default_suite,
    evaluate,
    read_results,
)
from ratchet.evaluation.suites import SuiteFormatError, import_suite
from ratchet.redaction import Redactor
from ratchet.store import Store
from tests import eval_fakes
from tests.eval_fakes import AGENT, CASES


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    monkeypatch.setitem(BACKENDS, "evalfake", ("tests.eval_fakes", None))
    eval_fakes.CALLS.clear()
    sessions = session_factory(f"sqlite:///{tmp_path / 'ratchet.db'}")
    store = Store(str(tmp_path / "store"))
    config = PipelineConfig.model_validate(
        {"evaluation": {"embedding": "tfidf", "bootstrap_samples": 200, "concurrency": 3}}
    )
    ids = eval_fakes.seed(sessions, store)
    redactor = Redactor(config.redaction)
    ctx = EvalContext(store, sessions, config, None, lambda t: redactor.redact_text(t)[0])
    yield {"ctx": ctx, "ids": ids, "store": store, "sessions": sessions, "redactor": redactor}
    dispose_all()


def test_evaluate_stores_results_metrics_and_the_paired_comparison(env: dict[str, Any]) -> None:
    ids = env["ids"]
    report = evaluate(env["ctx"], EvalRequest(ids["candidate"]))
    assert report["suites"] == ["v1"] and report["cases"] == len(CASES)
    assert report["baseline"]["model_version_id"] == ids["baseline"]
    assert eval_fakes.CALLS == {"candidate": len(CASES), "baseline": len(CASES)}
    rows = read_results(env["store"], report["candidate"]["results_path"])
    assert len(rows) == len(CASES) and all(r["passed"] for r in rows)
    assert {r["source"] for r in rows} == {"answered"}
    assert dict(rows[0]["scorer_versions"])["token_f1"] == "1"
    assert {"exact_match", "normalised_match", "token_f1", "tfidf_cosine", "refusal"} <= set(
        dict(rows[0]["scores"])
    )
    fix = [r for r in rows if r["fix_check"]]
    assert len(fix) == 2 and {r["split"] for r in fix} == {"train"}
    with env["sessions"]() as s:
        run = repo.get_eval_run(s, report["candidate"]["eval_run_id"])
        assert run.status == "completed" and run.n_cases == len(CASES)
        assert run.cost_usd == pytest.approx(0.001 * len(CASES))
        metrics = {(m.subset, m.metric): m for m in repo.eval_metrics(s, run.id)}
    assert metrics[("holdout", "exact_match")].n == 11  # fix checks are not generalisation
    assert metrics[("fix_check", "exact_match")].n == 2
    delta = metrics[("holdout/kind=regression", "delta:exact_match")]
    assert delta.value == 1.0 and delta.ci_low == 1.0
    golden = metrics[("holdout/kind=golden", "delta:exact_match")]
    assert golden.ci_low <= 0.0 <= golden.ci_high
    assert ("holdout/topic=shipping", "pass_rate") in metrics
    doc = json.loads(env["store"].read_bytes(report["comparison_path"]))
    assert doc["baseline_eval_run_id"] == report["baseline"]["eval_run_id"]
    assert any(r["subset"] == "holdout" and r["metric"] == "token_f1" for r in doc["rows"])


def test_a_rerun_pays_nothing_twice(env: dict[str, Any]) -> None:
    evaluate(env["ctx"], EvalRequest(env["ids"]["candidate"]))
    before = dict(eval_fakes.CALLS)
    again = evaluate(env["ctx"], EvalRequest(env["ids"]["candidate"]))
    assert dict(eval_fakes.CALLS) == before
    assert again["candidate"]["answered"] == 0 and again["candidate"]["cost_usd"] == 0.0


def test_candidate_only_replay_when_the_baseline_has_stored_results(env: dict[str, Any]) -> None:
    ids, store = env["ids"], env["store"]
    evaluate(env["ctx"], EvalRequest(ids["candidate"]))
    for path in store.list_files("evals/cache"):  # no cache: only replay can save the calls
        store.delete(path)
    eval_fakes.CALLS.clear()
    report = evaluate(env["ctx"], EvalRequest(ids["other"], baseline=ids["baseline"]))
    assert eval_fakes.CALLS == {"other": len(CASES)}
    assert report["baseline"]["replayed"] == len(CASES)
    rows = read_results(store, report["baseline"]["results_path"])
    assert {r["source"] for r in rows} == {"replayed"}
    assert sum(r["passed"] for r in rows) == 7  # the golden ones, as stored


def test_no_baseline_and_bad_requests(env: dict[str, Any]) -> None:
    ids = env["ids"]
    alone = evaluate(env["ctx"], EvalRequest(ids["candidate"], baseline=None))
    assert alone["baseline"] is None and alone["comparison"] == []
    with pytest.raises(EvaluationError, match="--candidate: no model version"):
        evaluate(env["ctx"], EvalRequest("nope"))
    with pytest.raises(EvaluationError, match="--suite: no dataset version"):
        evaluate(env["ctx"], EvalRequest(ids["candidate"], suites=("missing",)))


def test_import_openai_evals_suite_redacts_and_evaluates(
    env: dict[str, Any], tmp_path: Path
) -> None:
    src = tmp_path / "samples.jsonl"
    src.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {
                    "input": [
                        {"role": "system", "content": "Be brief."},
                        {"role": "user", "content": "My email is jane.doe@example.com, refund?"},
                    ],
                    "ideal": "Refund sent to jane.doe@example.com.",
                },
                {
                    "input": [{"role": "user", "content": "Call me on +44 20 7946 0958"}],
                    "ideal": ["We will call you.", "Calling you now."],
                },
            ]
        )
        + "\n"
    )
    got = import_suite(env["store"], env["sessions"], env["redactor"], src, AGENT, "openai-evals")
    assert got.rows == 2 and got.created and got.pii_redacted
    raw = env["store"].read_bytes(got.path)
    assert b"jane.doe@example.com" not in raw and b"7946" not in raw
    table = env["store"].read_table(got.path, schemas.EVAL_CASES).to_pylist()
    assert table[0]["expected"].startswith("Refund sent to [") and table[1]["expected"] == (
        "We will call you."
    )
    assert {r["split"] for r in table} == {"holdout"} and all(r["case_id"] for r in table)
    again = import_suite(env["store"], env["sessions"], env["redactor"], src, AGENT, "openai-evals")
    assert again.version_id == got.version_id and not again.created
    with env["sessions"]() as s:
        assert default_suite(s, AGENT) == "v1"  # an imported suite is never the default
        # nor the version curation carries forward (its cases would be copied into the next)
        latest = latest_curated_eval_cases(s, AGENT)
        assert latest is not None and latest.id == "v1"
    report = evaluate(env["ctx"], EvalRequest(env["ids"]["candidate"], suites=(got.version_id,)))
    assert report["cases"] == 2 and report["suites"] == [got.version_id]


@pytest.mark.parametrize(
    ("line", "where"),
    [
        ("{not json", "line 2: line: is not valid JSON"),
        (json.dumps({"input": [], "ideal": "x"}), "line 2: input"),
        (
            json.dumps({"input": [{"role": "user", "content": "secret@example.com"}], "ideal": 3}),
            "line 2: ideal",
        ),
        (
            json.dumps({"input": [{"role": "robot", "content": "hi"}], "ideal": "x"}),
            "line 2: input: each message needs a known role",
        ),
    ],
)
def test_a_bad_suite_line_names_line_and_field_never_the_value(
    env: dict[str, Any], tmp_path: Path, line: str, where: str
) -> None:
    src = tmp_path / "bad.jsonl"
    good = json.dumps({"input": [{"role": "user", "content": "hi"}], "ideal": "hello"})
    src.write_text(good + "\n" + line + "\n")
    with pytest.raises(SuiteFormatError) as err:
        import_suite(env["store"], env["sessions"], env["redactor"], src, AGENT, "openai-evals")
    assert where in str(err.value) and "secret@example.com" not in str(err.value)
    with env["sessions"]() as s:
        assert len(repo.list_dataset_versions(s, agent_id=AGENT)) == 1  # nothing registered


def test_canonical_suite_with_tool_calls(env: dict[str, Any], tmp_path: Path) -> None:
    src = tmp_path / "canonical.jsonl"
    call = {
        "id": "c",
        "type": "function",
        "function": {"name": "lookup_order", "arguments": {"order": "A1"}},
    }
    src.write_text(
        json.dumps(
            {
                "input": [{"role": "user", "content": "where is A1"}],
                "expected": "",
                "expected_tool_calls": [call],
                "topic": "orders",
                "kind": "regression",
            }
        )
        + "\n"
    )
    got = import_suite(env["store"], env["sessions"], env["redactor"], src, AGENT, "canonical")
    row = env["store"].read_table(got.path, schemas.EVAL_CASES).to_pylist()[0]
    assert row["kind"] == "regression" and row["topic"] == "orders"
    assert json.loads(row["expected_tool_calls"][0]["function"]["arguments"]) == {"order": "A1"}


def test_cli_suites_import_json_and_bad_usage(ratchet_env: Path, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from flows.cli import app

    src = tmp_path / "samples.jsonl"
    src.write_text(
        json.dumps(
            {
                "input": [{"role": "user", "content": "I am bob@example.org"}],
                "ideal": "Hello bob@example.org",
            }
        )
        + "\n"
    )
    runner = CliRunner()
    out = runner.invoke(
        app, ["suites", "import", str(src), "--agent", AGENT, "--format", "openai-evals", "--json"]
    )
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert got["rows"] == 1 and got["created"] and "bob@example.org" not in out.stdout
    assert (
        runner.invoke(
            app, ["suites", "import", str(src), "--agent", AGENT, "--format", "csv"]
        ).exit_code
        == 2
    )
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"input": "bob@example.org"}\n')
    failed = runner.invoke(
        app, ["suites", "import", str(bad), "--agent", AGENT, "--format", "openai-evals"]
    )
    assert failed.exit_code == 1 and "line 1: input" in failed.output
    assert "bob@example.org" not in failed.output


def test_a_run_in_batches_writes_what_one_run_writes_and_a_retried_batch_pays_nothing(
    env: dict[str, Any],
) -> None:
    """The cluster's way (issue 14): batches of cases answered and scored apart, then joined
    in case order. Same rows as one run of the same model; a batch run twice (a retried task)
    answers nothing the second time; the batch files and their folder are gone after."""
    from ratchet.evaluation import model_run
    from ratchet.evaluation.evaluate import (
        EvalRequest,
        build_run_scorers,
        model_version,
        plan_cases,
        plan_evaluation,
    )

    ctx, ids, store = env["ctx"], env["ids"], env["store"]
    plan = plan_evaluation(ctx, EvalRequest(ids["candidate"], baseline=None))
    cases, scorers = plan_cases(ctx, plan), build_run_scorers(ctx)
    version = model_version(ctx, ids["candidate"])
    run_id = model_run.start_run(ctx, version, plan.suites)
    batches = [
        model_run.run_batch(ctx, version, run_id, cases[i : i + 5], i, scorers, 1 / 3)
        for i in (10, 0, 5)  # out of order, as tasks finish
    ]
    calls = dict(eval_fakes.CALLS)
    again = model_run.run_batch(ctx, version, run_id, cases[0:5], 0, scorers)
    assert dict(eval_fakes.CALLS) == calls and again.counts["cached"] == 5
    batched = model_run.finish_from_batches(ctx, version.id, run_id, batches)
    assert store.list_files(f"evals/{run_id}") == [f"evals/{run_id}/results.parquet"]
    assert not (Path(store.full(f"evals/{run_id}")) / "batches").exists()

    twin = model_version(ctx, ids["other"])  # answers like the candidate, nothing cached
    whole = model_run.run_model(ctx, twin, cases, plan.suites, scorers)

    def key(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
        return [(r["case_id"], r["answer"], r["scores"], r["passed"]) for r in rows]

    assert key(read_results(store, model_run.results_path(run_id))) == key(whole.rows)
    assert batched.counts["answered"] == len(CASES)
    with env["sessions"]() as s:
        assert repo.get_eval_run(s, run_id).n_cases == len(CASES)
