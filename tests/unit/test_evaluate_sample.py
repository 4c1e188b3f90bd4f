"""The evaluation on the bundled sample, end to end through the cores (no Prefect): ingest and
curate one agent, register its logs model (production), train the local backend from the
curated SFT version, and evaluate the candidate against the logs model on the curated eval
cases. The candidate, which learnt the corrections, scores higher on the regression cases."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from ratchet.backends import BackendContext, trainer_for
from ratchet.backends.base import JobSpec, ModelSpec, TrainingData
from ratchet.config import PipelineConfig
from ratchet.db import repo
from ratchet.evaluation.evaluate import EvalContext, EvalRequest, evaluate, read_results
from ratchet.redaction import Redactor
from ratchet.settings import get_settings
from tests.unit.test_backends_logs import _agent_lines, _ingest, _register, _services


def test_local_candidate_beats_the_logs_model_on_regression_cases(
    ratchet_env: Path, tmp_path: Path
) -> None:
    from ratchet.curation.registry import CurationContext, curate_agent
    from ratchet.curation.select import Window

    agent = "returns-bot"
    files = _agent_lines(tmp_path, agent)
    for f in sorted(files, key=lambda p: not p.name.startswith("interactions")):
        _ingest(f, "interactions" if f.name.startswith("interactions") else "feedback")
    sessions, store, config = _services()
    report = curate_agent(
        CurationContext(store, sessions, config, Redactor(config.redaction), None),
        agent,
        Window(None, datetime.now(UTC)),
    )
    versions = {v["kind"]: v["version"] for v in report["versions"]}
    logs = _register(agent)
    with sessions() as s:
        dv = repo.get_dataset_version(s, versions["sft_examples"])
        data = TrainingData(agent, dv.id, dv.kind, dv.path, rows=dv.rows)
    ctx = BackendContext(store, get_settings(), config)
    trainer = trainer_for("local", ctx)
    spec = JobSpec("run-eval-sample", agent, "sft", ModelSpec("logs", logs.model_ref), data)
    model = trainer.collect(spec, trainer.poll(trainer.submit(spec)))
    with sessions() as s, s.begin():
        candidate = repo.create_model_version(
            s,
            agent_id=agent,
            backend=model.backend,
            model_ref=model.model_ref,
            parameters=dict(model.parameters),
            parent_id=logs.version_id,
        ).id

    cfg = PipelineConfig.model_validate(
        {
            **config.model_dump(),
            "evaluation": {"embedding": "tfidf", "bootstrap_samples": 500, "concurrency": 2},
        }
    )
    redactor = Redactor(cfg.redaction)
    out = evaluate(
        EvalContext(store, sessions, cfg, get_settings(), lambda t: redactor.redact_text(t)[0]),
        EvalRequest(candidate),
    )
    assert out["baseline"]["model_version_id"] == logs.version_id
    assert out["suites"] == [versions["eval_cases"]]
    rows = {(r["subset"], r["metric"]): r for r in out["comparison"]}
    fixes = rows[("fix_check", "token_f1")]
    assert fixes["candidate"]["value"] > fixes["baseline"]["value"]
    assert fixes["difference"]["ci_low"] > 0  # the corrections were learnt, beyond noise
    results = read_results(store, out["candidate"]["results_path"])
    regression = [r for r in results if r["kind"] == "regression"]
    base = {r["case_id"]: r for r in read_results(store, out["baseline"]["results_path"])}
    cand_mean = sum(r["scores"]["token_f1"] for r in regression) / len(regression)
    base_mean = sum(base[r["case_id"]]["scores"]["token_f1"] for r in regression) / len(regression)
    assert cand_mean > base_mean
    assert all(r["passed"] for r in regression if r["fix_check"])
