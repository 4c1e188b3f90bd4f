"""Erasure end to end (issue 12): ingest -> curate -> export -> train (local) -> evaluate ->
forget, then nothing of the user in any file of the store (parts, datasets, exports, model
folders, eval results, the answer cache, quarantine) nor in Prefect's records (flow run
parameters and names, logs, artifacts), and a re-ingest of the same source does not restore it.
A forget that crashes half-way leaves nothing readable once rerun; ``--dry-run`` changes
nothing. Everything runs through the CLI, as an operator would."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from tests.conftest import SAMPLE_DIR
from tests.prefect_records import every

RAW_USER = "zed.quokka-7731"
PHRASE = "marmalade zeppelin"
AGENT = "shop-assistant"
runner = CliRunner()


def _user_files(folder: Path) -> tuple[Path, Path]:
    """Six interactions of one user (golden and corrected), their feedback, and a line that is
    quarantined (no response) but names the user and the phrase."""
    rows, feedback = [], []
    for i in range(6):
        iid = f"zq-{i:02d}"
        rows.append(
            {
                "interaction_id": iid,
                "agent_id": AGENT,
                "user_id": RAW_USER,
                "timestamp": f"2026-01-2{i}T10:00:00Z",
                "consent": True,
                "messages": [
                    {
                        "role": "user",
                        "content": f"Does the {PHRASE} jacket number {i} come in teal {i}?",
                    }
                ],
                "response": f"The {PHRASE} jacket {i} comes in teal, yes.",
                "metadata": {"topic": "product"},
            }
        )
        vote: dict[str, Any] = {"thumb": 1} if i < 4 else {
            "thumb": -1, "correction": f"The {PHRASE} jacket {i} is navy only."}  # fmt: skip
        feedback.append(
            {
                "feedback_id": f"fb-zq-{i}",
                "interaction_id": iid,
                "agent_id": AGENT,
                "timestamp": f"2026-01-2{i}T11:00:00Z",
                "source": "user",
                "annotator": RAW_USER,
                **vote,
            }
        )
    bad = {"interaction_id": "zq-bad", "agent_id": AGENT, "user_id": RAW_USER,
           "timestamp": "2026-01-20T10:00:00Z", "messages": [{"role": "user",
           "content": f"{PHRASE} again"}]}  # fmt: skip
    logs = folder / "user-logs.jsonl"
    logs.write_text("".join(json.dumps(r) + "\n" for r in [*rows, bad]))
    fb = folder / "user-feedback.jsonl"
    fb.write_text("".join(json.dumps(r) + "\n" for r in feedback))
    return logs, fb


def _invoke(*args: str) -> Any:
    from flows.cli import app

    result = runner.invoke(app, list(args))
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout) if "--json" in args else result.stdout


def _store_hits(root: Path, needles: list[str]) -> list[str]:
    """Files under ``root`` (Parquet decoded: their strings are compressed) holding a needle."""
    import pyarrow.parquet as pq

    hits = []
    for path in root.rglob("*"):
        if not path.is_file():
            continue
        data = path.read_bytes()
        if path.suffix == ".parquet":
            data = json.dumps(pq.read_table(path).to_pylist(), default=str).encode()
        hits += [f"{path.relative_to(root)}: {n}" for n in needles if n.encode() in data]
    return hits


def _prefect_hits(needles: list[str]) -> list[str]:
    """Needles in any flow run's name or parameters, any task run's name or inputs, any log
    line, any artifact."""
    from prefect.client.orchestration import get_client

    hits = []
    with get_client(sync_client=True) as client:
        runs = every(client.read_flow_runs)
        texts = [json.dumps({"name": r.name, "parameters": r.parameters}, default=str)
                 for r in runs]  # fmt: skip
        texts += [log.message for log in every(client.read_logs)]
        texts += [json.dumps(a.data, default=str) for a in every(client.read_artifacts)]
        texts += [
            json.dumps({"name": t.name, "inputs": t.task_inputs, "state": t.state_name},
                       default=str)
            for t in every(client.read_task_runs)
        ]  # fmt: skip
    for text in texts:
        hits += [n for n in needles if n in text]
    return hits


def _loop(logs: Path, fb: Path) -> list[str]:
    """ingest -> curate (exports) -> the logs model as production -> train (local) ->
    evaluate, on the sample's first week plus the user's files; returns the model versions."""
    from flows.curate import curate_flow
    from flows.evaluate import evaluate_flow
    from flows.ingest import ingest_flow
    from flows.train import train_flow
    from ratchet.backends.logs import register_logs_model
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings
    from tasks import runtime

    ingest_flow(
        paths=[str(SAMPLE_DIR / "interactions-week-01.jsonl"), str(logs)],
        feedback_paths=[str(SAMPLE_DIR / "feedback-week-01.jsonl"), str(fb)],
    )
    curate_flow(agent=AGENT)
    settings = get_settings()
    with open_database(settings)() as s, s.begin():
        prod = register_logs_model(s, runtime.store(settings), AGENT).version_id
        latest = repo.latest_dataset_version(s, AGENT, "sft_examples")
        assert latest is not None
        sft = latest.id
    trained = train_flow(dataset=sft, strategy="sft", backend="local", agent=AGENT)
    candidate = trained["model_version_id"]
    # tfidf similarity, as the other evaluation tests: MiniLM (scored case by case, seconds
    # here) keeps nothing in the store, so forget has the same files to reach either way
    evaluate_flow(
        candidate=candidate,
        baseline=prod,
        config_overrides={"evaluation": {"embedding": "tfidf"}},
    )
    return [prod, candidate]


def _pseudonym() -> str:
    from ratchet.redaction import pseudonymise
    from ratchet.settings import get_settings
    from tasks import runtime

    return pseudonymise(RAW_USER, runtime.pseudonym_key(get_settings()))


def test_forget_reaches_every_derived_file_and_survives_a_crash(
    prefect_harness: None, ratchet_env: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ratchet.db import open_database, repo
    from ratchet.privacy import erasure
    from ratchet.settings import get_settings

    logs, fb = _user_files(tmp_path)
    models = _loop(logs, fb)
    store = ratchet_env / "store"
    pseudonym = _pseudonym()
    needles = [RAW_USER, pseudonym, PHRASE]
    before = _store_hits(store, needles)
    for where in ("interactions/", "feedback/", "quarantine/", "datasets/", "exports/", "models/"):
        assert any(h.startswith(where) for h in before), (where, before)
    assert any(h.startswith("evals/") for h in before), before

    # a dry run says what it would touch and changes nothing
    dry = _invoke("forget", "--user", RAW_USER, "--dry-run", "--json")
    assert dry["dry_run"] and dry["rows_removed"]["interactions"] == 6
    assert dry["versions_superseded"] >= 2 and dry["model_versions"]
    assert _store_hits(store, needles) == before

    # a crash half-way (after models, evals and datasets, before the parts): exit 1 ...
    real = erasure._rewrite_parts

    def crash(*args: Any, **kwargs: Any) -> None:
        raise RuntimeError("simulated crash")

    monkeypatch.setattr(erasure, "_rewrite_parts", crash)
    from flows.cli import app

    crashed = runner.invoke(app, ["forget", "--user", RAW_USER, "--reason", "gdpr-request"])
    assert crashed.exit_code == 1 and "simulated crash" in crashed.output
    assert any(h.startswith("interactions/") for h in _store_hits(store, needles))
    monkeypatch.setattr(erasure, "_rewrite_parts", real)

    # ... and the rerun finishes it: nothing of the user anywhere
    out = _invoke("forget", "--user", RAW_USER, "--reason", "gdpr-request", "--json")
    assert out["rows_removed"]["interactions"] == 6 and out["rows_removed"]["feedback"] == 6
    assert out["rows_removed"]["quarantine"] == 1
    assert _store_hits(store, needles) == []
    assert _prefect_hits(needles) == []
    assert not list((ratchet_env / "inputs").glob("fg-*.json"))  # the request is gone

    with open_database(get_settings())() as s:
        marked = [m for m in repo.list_model_versions(s, AGENT) if m.erased_data_at is not None]
        tombs = repo.list_tombstones(s, agent_id=AGENT)
        assert {t.kind for t in tombs} == {"user", "interaction"}
        assert all(t.erased_at is not None and RAW_USER not in t.value for t in tombs)
    assert {m.id for m in marked} == set(dry["model_versions"]) == set(models)
    shown = _invoke("models", "show", marked[0].id, "--json")
    assert shown["trained_on_erased_data"] is True
    assert "trained on erased data: yes" in _invoke("models", "show", marked[0].id)

    # idempotent: a second forget finds nothing
    again = _invoke("forget", "--user", RAW_USER, "--json")
    assert again["rows_removed_total"] == 0 and again["models_marked"] == 0

    # a re-ingest of the same source (and of a copy that is not byte-identical) restores nothing
    copy_logs = tmp_path / "again-logs.jsonl"
    copy_logs.write_text(logs.read_text() + "\n")
    copy_fb = tmp_path / "again-feedback.jsonl"
    copy_fb.write_text(fb.read_text() + "\n")
    _invoke("ingest", str(logs), str(copy_logs), "--feedback", str(fb), "--feedback", str(copy_fb))
    assert _store_hits(store, needles) == []  # the broken line is not quarantined again either
