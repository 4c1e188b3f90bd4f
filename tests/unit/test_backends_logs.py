"""The logs backend on interactions stored by the real ingest core, and the issue's acceptance
check on the bundled sample: a local model trained from a curated SFT version answers a
corrected question with its correction, while the logs model still gives the logged answer.

Ingest and curation run through the core (what their tasks call), so no Prefect server starts.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ratchet import schemas
from ratchet.backends import BackendContext, answerer_for, trainer_for
from ratchet.backends.base import BackendError, JobSpec, ModelSpec, TrainingData
from ratchet.backends.logs import build_logs_index, register_logs_model
from ratchet.backends.retrieval import context_text, has_tool_results
from ratchet.config import load_config
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor, resolve_pseudonym_key
from ratchet.settings import get_settings
from ratchet.store import Store

SAMPLE = Path(__file__).resolve().parents[2] / "ratchet" / "data" / "sample"
AGENT = "help-desk"


def _services() -> tuple[Any, Store, Any]:
    settings = get_settings()
    return open_database(settings), Store(settings.store_root), load_config(settings)


def _ingest(path: Path, kind: str = "interactions") -> None:
    settings = get_settings()
    sessions, store, config = _services()
    ctx = IngestContext(
        store=store,
        sessions=sessions,
        config=config,
        redactor=Redactor(config.redaction),
        pseudonym_key=resolve_pseudonym_key(settings),
        now=datetime.now(UTC),
    )
    ingest_file(ctx, path, kind)  # type: ignore[arg-type]


def _write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _row(iid: str, question: str, answer: str, ts: str, agent: str = AGENT) -> dict[str, Any]:
    return {
        "interaction_id": iid,
        "agent_id": agent,
        "timestamp": ts,
        "messages": [
            {"role": "system", "content": "Be helpful."},
            {"role": "user", "content": question},
        ],
        "response": answer,
    }


ROWS = [
    _row("i-1", "How do I reset my router password?", "Old: call us.", "2026-01-05T09:00:00Z"),
    _row(
        "i-2", "How do I reset my router password?", "New: hold reset 10 s.", "2026-01-07T09:00:00Z"
    ),
    _row("i-3", "Do you ship to Ireland?", "No.", "2026-01-06T09:00:00Z"),
    _row("i-4", "What is the return policy?", "14 days.", "2026-01-06T10:00:00Z"),
]


def _register(agent: str = AGENT) -> Any:
    sessions, store, config = _services()
    with sessions() as s, s.begin():
        return register_logs_model(s, store, agent, config.backends)


def _ask(spec_row: Any, text: str) -> Any:
    _, store, config = _services()
    ctx = BackendContext(store, get_settings(), config)
    spec = ModelSpec(
        spec_row.backend if hasattr(spec_row, "backend") else "logs", spec_row.model_ref
    )
    return answerer_for(spec, ctx).answer([{"role": "user", "content": text}])


@pytest.fixture
def logged(ratchet_env: Path, tmp_path: Path) -> Path:
    _ingest(_write(tmp_path / "i.jsonl", ROWS))
    return tmp_path


def test_answers_with_the_nearest_logged_answer_latest_wins(logged: Path) -> None:
    model = _register()
    assert (model.created, model.status, model.interactions, model.questions) == (
        True,
        "production",
        4,
        3,
    )
    answer = _ask(model, "How do I reset my router password?")
    assert answer.text == "New: hold reset 10 s."  # asked twice: the latest logged answer
    assert answer.details == {
        "source": "logged",
        "similarity": pytest.approx(1.0),
        "interaction_id": "i-2",
    }
    assert _ask(model, "shipping to ireland?").text == "No."
    assert _ask(model, "something nobody asked").text in {
        "Old: call us.",
        "New: hold reset 10 s.",
        "No.",
        "14 days.",
    }


def test_register_is_idempotent(logged: Path) -> None:
    first = _register()
    files = _services()[1].list_files("models")
    second = _register()
    assert second.created is False and second.version_id == first.version_id
    assert second.status == "production"
    sessions, store, _ = _services()
    with sessions() as s:
        assert [v.id for v in repo.list_model_versions(s, AGENT)] == [first.version_id]
    assert store.list_files("models") == files


def test_new_logs_make_a_candidate(logged: Path, tmp_path: Path) -> None:
    first = _register()
    _ingest(
        _write(
            tmp_path / "more.jsonl",
            [_row("i-5", "Can I pay with PayPal?", "Cards only.", "2026-01-08T09:00:00Z")],
        )
    )
    second = _register()
    assert second.created and second.version_id != first.version_id
    assert second.status == "candidate"
    assert _ask(second, "Can I pay with PayPal?").text == "Cards only."
    sessions, _, _ = _services()
    with sessions() as s:
        assert repo.production_version(s, AGENT).id == first.version_id  # type: ignore[union-attr]


def test_agents_are_kept_apart(logged: Path, tmp_path: Path) -> None:
    _ingest(
        _write(
            tmp_path / "other.jsonl",
            [
                _row(
                    "o-1",
                    "Do you ship to Ireland?",
                    "Other agent: yes.",
                    "2026-01-09T09:00:00Z",
                    agent="other-bot",
                )
            ],
        )
    )
    mine, theirs = _register(), _register("other-bot")
    assert mine.version_id != theirs.version_id and theirs.status == "production"
    assert _ask(mine, "Do you ship to Ireland?").text == "No."
    assert _ask(theirs, "Do you ship to Ireland?").text == "Other agent: yes."


def test_an_agent_without_interactions_is_refused(ratchet_env: Path) -> None:
    with pytest.raises(BackendError, match="no ingested interaction"):
        _register("nobody")


def test_index_round_trip_and_same_bytes(logged: Path) -> None:
    model = _register()
    sessions, store, config = _services()
    with sessions() as s:
        index, _ = build_logs_index(s, store, AGENT, config.backends)
    assert index.rows["id"].to_pylist() == ["i-2", "i-3", "i-4"]
    rebuilt = Store(f"memory://logs-rebuilt-{model.version_id}")
    index.save(rebuilt, "m")
    for name in ("index.json", "rows.parquet"):
        assert rebuilt.read_bytes(f"m/{name}") == store.read_bytes(f"{model.model_ref}{name}")


def test_logs_does_not_train(ratchet_env: Path) -> None:
    _, store, config = _services()
    with pytest.raises(BackendError, match="register-logs"):
        trainer_for("logs", BackendContext(store, None, config))


# --- the acceptance check on the bundled sample -------------------------------------------------
def _agent_lines(tmp_path: Path, agent: str) -> list[Path]:
    """The sample's files, cut to one agent's lines (a quarter of the ingest time)."""
    out = []
    for src in sorted(SAMPLE.glob("*-week-0*.jsonl")):
        lines = [
            ln
            for ln in src.read_text("utf-8", errors="replace").splitlines(keepends=True)
            if f'"agent_id": "{agent}"' in ln
        ]
        dst = tmp_path / src.name
        dst.write_text("".join(lines))
        out.append(dst)
    return out


def test_sample_local_model_learns_the_correction_logs_model_does_not(
    ratchet_env: Path, tmp_path: Path
) -> None:
    from flows.cli import app
    from ratchet.curation.registry import CurationContext, curate_agent
    from ratchet.curation.select import Window

    agent = "returns-bot"
    files = _agent_lines(tmp_path, agent)
    for f in files:
        if f.name.startswith("interactions"):
            _ingest(f)
    for f in files:
        if f.name.startswith("feedback"):
            _ingest(f, "feedback")
    sessions, store, config = _services()
    report = curate_agent(
        CurationContext(store, sessions, config, Redactor(config.redaction), None),
        agent,
        Window(None, datetime.now(UTC)),
    )
    versions = {v["kind"]: v["version"] for v in report["versions"]}
    logs = _register(agent)
    assert logs.status == "production"

    with sessions() as s:
        dv = repo.get_dataset_version(s, versions["sft_examples"])
        cases = repo.get_dataset_version(s, versions["eval_cases"])
        data = TrainingData(agent, dv.id, dv.kind, dv.path, rows=dv.rows)
        fixes = [
            c
            for c in store.read_table(cases.path, schemas.EVAL_CASES).to_pylist()
            if c["kind"] == "regression" and c["fix_check"] and c["status"] == "active"
        ]
    assert fixes, "the sample has train-split corrections"

    ctx = BackendContext(store, get_settings(), config)
    trainer = trainer_for("local", ctx)
    spec = JobSpec("run-sample", agent, "sft", ModelSpec("logs", logs.model_ref), data)
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

    local, baseline = answerer_for(model, ctx), answerer_for(ModelSpec("logs", logs.model_ref), ctx)
    trained = {
        context_text(row["messages"][:-1])
        for row in store.read_table(data.train_path, schemas.SFT_EXAMPLES).to_pylist()
        if row["split"] == "train"
    }
    learnt = 0
    for case in fixes:
        if has_tool_results(case["input"]) and context_text(case["input"]) not in trained:
            continue  # a turn on tool data takes a trained answer only on the same data
        assert local.answer(case["input"]).text == case["expected"]  # the fix checks pass
        if baseline.answer(case["input"]).text == case["production_answer"] != case["expected"]:
            learnt += 1
            question = [m for m in case["input"] if m["role"] == "user"][-1]["content"]
    assert learnt >= 1, "a corrected question the logs model still answers wrongly"

    runner = CliRunner()
    out = runner.invoke(app, ["ask", "--model", candidate, "--json", question])
    assert out.exit_code == 0, out.output
    got = json.loads(out.stdout)
    assert got["details"]["source"] == "example" and got["backend"] == "local"
    wrong = runner.invoke(app, ["ask", "--model", "production", "--agent", agent, question])
    assert wrong.exit_code == 0 and wrong.stdout.strip() != got["answer"]
    assert (
        next(c["production_answer"] for c in fixes if c["expected"] == got["answer"])
        == wrong.stdout.strip()
    )
