"""The record and read commands: feedback add/import, datasets list/show/diff, export.

None of them starts a flow; curation in between runs through the core (``curate_agent``, what
the curate task calls), so these tests need no Prefect server.
"""

from __future__ import annotations

import csv
import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from ratchet.config import load_config
from ratchet.curation.registry import CurationContext, curate_agent, read_version
from ratchet.curation.select import Window
from ratchet.db import open_database, repo
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor, resolve_pseudonym_key
from ratchet.settings import get_settings
from ratchet.store import Store

AGENT = "help-desk"
TOPICS = [
    "reset my router password",
    "international roaming plans",
    "pay an invoice by transfer",
    "change the delivery address",
    "cancel a subscription renewal",
    "download last year's tax form",
    "enable two factor login",
    "report a damaged parcel",
    "upgrade the storage quota",
    "merge two customer accounts",
    "export my contacts list",
    "set up automatic top ups",
    "book a repair technician",
    "transfer a phone number",
    "update billing currency",
]
runner = CliRunner()


def _ctx() -> tuple[IngestContext, CurationContext]:
    settings = get_settings()
    config = load_config(settings)
    store, sessions = Store(settings.store_root), open_database(settings)
    red = Redactor(config.redaction)
    return (
        IngestContext(
            store=store,
            sessions=sessions,
            config=config,
            redactor=red,
            pseudonym_key=resolve_pseudonym_key(settings),
            now=datetime.now(UTC),
        ),
        CurationContext(store, sessions, config, red, None),
    )


def _curate() -> dict:
    _, cctx = _ctx()
    return curate_agent(cctx, AGENT, Window(None, datetime.now(UTC)))


@pytest.fixture
def seeded(ratchet_env: Path, tmp_path: Path) -> Path:
    """15 interactions: 13 voted up, "bad-1" voted down without a correction (review), one
    unrated ("quiet")."""
    rows, fb = [], []
    for i, topic in enumerate(TOPICS):
        iid = "bad-1" if i == 0 else ("quiet" if i == 1 else f"ok-{i}")
        rows.append(
            {
                "interaction_id": iid,
                "agent_id": AGENT,
                "timestamp": "2026-01-05T09:00:00Z",
                "messages": [{"role": "user", "content": f"Please explain how to {topic}."}],
                "response": f"Here is how to {topic}: open settings, then follow step {i}.",
            }
        )
        if iid != "quiet":
            fb.append(
                {
                    "interaction_id": iid,
                    "agent_id": AGENT,
                    "timestamp": "2026-01-06T09:00:00Z",
                    "thumb": -1 if iid == "bad-1" else 1,
                }
            )
    (tmp_path / "i.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fb))
    ictx, _ = _ctx()
    ingest_file(ictx, tmp_path / "i.jsonl", "interactions")
    ingest_file(ictx, tmp_path / "f.jsonl", "feedback")
    return tmp_path


def _versions(report: dict) -> dict[str, str]:
    return {v["kind"]: v["version"] for v in report["versions"]}


def _eval_rows(version: str) -> dict[str, dict]:
    _, cctx = _ctx()
    with cctx.sessions() as s:
        table = read_version(cctx.store, repo.get_dataset_version(s, version))
    return {r["interaction_id"]: r for r in table.to_pylist() if r["status"] == "active"}


def test_feedback_add_turns_a_review_item_into_a_regression_case(seeded: Path) -> None:
    first = _curate()
    assert "bad-1" not in _eval_rows(_versions(first)["eval_cases"])
    res = runner.invoke(
        app,
        [
            "feedback",
            "add",
            "--interaction",
            "bad-1",
            "--thumb",
            "-1",
            "--correction",
            "Open Settings > Network > Reset password.",
        ],
    )
    assert res.exit_code == 0, res.output
    assert "recorded 1 feedback event" in res.output
    second = _curate()
    case = _eval_rows(_versions(second)["eval_cases"])["bad-1"]
    assert case["kind"] == "regression"
    assert case["expected"] == "Open Settings > Network > Reset password."
    assert second["stats"]["signal_review_thumbs_down_no_correction"] == 0


def test_feedback_add_usage_errors(seeded: Path) -> None:
    assert (
        runner.invoke(app, ["feedback", "add", "--interaction", "nope", "--rating", "5"]).exit_code
        == 2
    )
    assert runner.invoke(app, ["feedback", "add", "--interaction", "bad-1"]).exit_code == 2
    assert (
        runner.invoke(app, ["feedback", "add", "--interaction", "bad-1", "--rating", "9"]).exit_code
        == 2
    )
    assert (
        runner.invoke(app, ["feedback", "add", "--interaction", "bad-1", "--thumb", "2"]).exit_code
        == 2
    )


def test_feedback_import_of_a_filled_review_csv(seeded: Path, tmp_path: Path) -> None:
    report = _curate()
    rq_version = _versions(report)["review_queue"]
    _, cctx = _ctx()
    exported = cctx.store.read_bytes(f"exports/{AGENT}/{rq_version}/review_queue.csv").decode()
    rows = list(csv.DictReader(io.StringIO(exported)))
    assert [r["interaction_id"] for r in rows] == ["bad-1"]
    assert set(rows[0]) >= {
        "review_id",
        "interaction_id",
        "reason",
        "input",
        "response",
        "rating",
        "thumb",
        "correction",
        "comment",
    }
    assert rows[0]["rating"] == "" and "user: Please explain" in rows[0]["input"]
    assert cctx.store.exists(f"exports/{AGENT}/{rq_version}/review_queue.jsonl")
    rows[0].update(rating="1", correction="Use the router's admin page to reset it.")
    filled = tmp_path / "filled.csv"
    with open(filled, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=list(rows[0]))
        w.writeheader()
        w.writerows(rows)
    res = runner.invoke(app, ["feedback", "import", str(filled)])
    assert res.exit_code == 0, res.output
    assert "recorded 1 feedback event" in res.output
    # the same file again is recognised (exactly once)
    assert "already" in runner.invoke(app, ["feedback", "import", str(filled)]).output
    after = _curate()
    case = _eval_rows(_versions(after)["eval_cases"])["bad-1"]
    assert case["kind"] == "regression"
    assert "review_queue" in after["skipped_empty"]


def test_datasets_list_show_diff(seeded: Path) -> None:
    first = _versions(_curate())
    assert (
        runner.invoke(app, ["feedback", "add", "--interaction", "ok-3", "--thumb", "-1"]).exit_code
        == 0
    )
    second = _versions(_curate())
    assert first["eval_cases"] != second["eval_cases"]

    res = runner.invoke(app, ["datasets", "list", "--json"])
    assert res.exit_code == 0, res.output
    listed = json.loads(res.stdout)
    assert {r["version"] for r in listed} >= set(first.values()) | set(second.values())
    res = runner.invoke(app, ["datasets", "list", "--agent", AGENT, "--kind", "eval_cases"])
    assert res.exit_code == 0 and first["eval_cases"] in res.output
    assert runner.invoke(app, ["datasets", "list", "--kind", "nope"]).exit_code == 2

    res = runner.invoke(app, ["datasets", "show", second["eval_cases"], "--json"])
    info = json.loads(res.stdout)
    assert info["kind"] == "eval_cases" and info["agent"] == AGENT
    assert info["parent"] == first["eval_cases"]
    assert {"kind": "dataset_version", "ref": first["eval_cases"]} in info["lineage"]
    assert any(r["kind"] == "part" for r in info["lineage"])
    assert info["stats"]["retired_golden"] == 1
    text = runner.invoke(app, ["datasets", "show", second["eval_cases"]]).output
    assert "lineage:" in text and f"path: datasets/{AGENT}/eval_cases/" in text
    assert runner.invoke(app, ["datasets", "show", "nope"]).exit_code == 2

    res = runner.invoke(
        app, ["datasets", "diff", first["eval_cases"], second["eval_cases"], "--json"]
    )
    diff = json.loads(res.stdout)
    assert diff["status_changes"] == {"active->retired": 1}
    assert diff["changed"] == 1 and diff["removed"] == 0
    text = runner.invoke(app, ["datasets", "diff", first["eval_cases"], second["eval_cases"]])
    assert "active->retired: 1" in text.output
    assert (
        runner.invoke(
            app, ["datasets", "diff", first["eval_cases"], first["sft_examples"]]
        ).exit_code
        == 2
    )


def test_export_valid_and_invalid(seeded: Path, tmp_path: Path, monkeypatch) -> None:
    versions = _versions(_curate())
    out = tmp_path / "out"
    # 15 interactions are too few for the default export.min_examples (10 train examples)
    res = runner.invoke(
        app, ["export", versions["sft_examples"], "--format", "openai-sft", "--out", str(out)]
    )
    assert res.exit_code == 1
    assert "too_few_examples (" in res.output and "export.min_examples is 10" in res.output
    assert not out.exists()
    assert (
        runner.invoke(app, ["export", versions["sft_examples"], "--format", "openai-dpo"]).exit_code
        == 2
    )
    cfg = tmp_path / "small.yaml"
    cfg.write_text("export:\n  min_examples: 1\n")
    monkeypatch.setenv("RATCHET_CONFIG", str(cfg))
    res = runner.invoke(
        app, ["export", versions["sft_examples"], "--format", "openai-sft", "--out", str(out)]
    )
    assert res.exit_code == 0, res.output
    lines = (out / "openai_chat.train.jsonl").read_text().splitlines()
    assert lines and all(json.loads(x)["messages"][-1]["role"] == "assistant" for x in lines)
    # --split picks the files: this small version has no validation rows (refused, in numbers),
    # and an unknown split is bad usage (exit 2)
    val = tmp_path / "val"
    res = runner.invoke(
        app,
        [
            "export",
            versions["sft_examples"],
            "--format",
            "openai-sft",
            "--out",
            str(val),
            "--split",
            "validation",
        ],
    )
    assert res.exit_code == 1 and "0 examples" in res.output
    assert not val.exists() or not list(val.iterdir())
    assert (
        runner.invoke(
            app,
            ["export", versions["sft_examples"], "--format", "openai-sft", "--split", "holdout"],
        ).exit_code
        == 2
    )
    res = runner.invoke(
        app, ["export", versions["eval_cases"], "--format", "eval-jsonl", "--out", str(out)]
    )
    assert res.exit_code == 0 and (out / "eval.jsonl").exists()
    res = runner.invoke(
        app, ["export", versions["sft_examples"], "--format", "hf", "--out", str(out)]
    )
    assert res.exit_code == 0 and (out / "hf_sft.train.parquet").exists()


class _Tty(io.StringIO):
    def __init__(self, tty: bool) -> None:
        super().__init__()
        self.tty = tty

    def isatty(self) -> bool:
        return self.tty


@pytest.mark.parametrize("tty", [True, False])
def test_cli_shows_core_logs_at_info_and_a_bar_only_on_a_terminal(monkeypatch, tty: bool) -> None:
    import logging
    import sys

    import flows.cli as cli
    from tasks import runtime

    err = _Tty(tty)
    monkeypatch.setattr(sys, "stderr", err)
    monkeypatch.setattr(runtime, "progress_listeners", [])
    logger = logging.getLogger("ratchet")
    monkeypatch.setattr(logger, "handlers", [])
    monkeypatch.setattr(logger, "propagate", True)
    monkeypatch.setattr(logger, "level", logging.NOTSET)
    cli._show_core_logs()
    cli._show_core_logs()  # idempotent: one handler, one listener
    logging.getLogger("ratchet.ingest.pipeline").info("file.jsonl: batch 1 committed")
    logging.getLogger("ratchet.ingest.pipeline").debug("not shown without --verbose")
    runtime.Progress("curate-progress", "Curate").update(50.0, "curate: 1/2 agents")
    text = err.getvalue()
    assert text.count("I file.jsonl: batch 1 committed\n") == 1
    assert "not shown" not in text
    assert len(runtime.progress_listeners) == (1 if tty else 0)
    assert ("] " in text and " 50.0% curate: 1/2 agents" in text) == tty
