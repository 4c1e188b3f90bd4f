"""``ratchet audit pii`` and ``ratchet audit lineage`` on a store made by the real ingest and
curation cores (no Prefect flow): exit codes, --json, planted PII named by file and column but
never shown, and lineage that gives ids and pseudonyms only."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from flows.cli import app
from ratchet import schemas
from ratchet.config import load_config
from ratchet.curation.registry import CurationContext, curate_agent
from ratchet.curation.select import Window
from ratchet.db import open_database
from ratchet.ingest.pipeline import IngestContext, ingest_file
from ratchet.redaction import Redactor, pseudonymise, resolve_pseudonym_key
from ratchet.settings import get_settings
from ratchet.store import Store, feedback_dir

AGENT = "help-desk"
USER_EMAIL = "jane.doe@example.com"
PLANTED = "planted.person@example.org"
TOPICS = [
    "reset my router password", "international roaming plans", "pay an invoice by transfer",
    "change the delivery address", "cancel a subscription renewal", "enable two factor login",
    "report a damaged parcel", "upgrade the storage quota", "merge two customer accounts",
    "export my contacts list", "set up automatic top ups", "book a repair technician",
]  # fmt: skip
runner = CliRunner()


@pytest.fixture
def curated(ratchet_env: Path, tmp_path: Path) -> dict[str, str]:
    """12 interactions by one user (an e-mail as user id), 11 voted up, one down."""
    rows, fb = [], []
    for i, topic in enumerate(TOPICS):
        rows.append(
            {
                "interaction_id": f"q-{i}", "agent_id": AGENT, "user_id": USER_EMAIL,
                "timestamp": "2026-01-05T09:00:00Z",
                "messages": [{"role": "user", "content": f"Please explain how to {topic}."}],
                "response": f"Here is how to {topic}: open settings, then follow step {i}.",
            }
        )  # fmt: skip
        fb.append(
            {
                "feedback_id": f"fb-{i}", "interaction_id": f"q-{i}", "agent_id": AGENT,
                "timestamp": "2026-01-06T09:00:00Z", "thumb": -1 if i == 0 else 1,
                "annotator": "expert.reviewer@example.com", "source": "expert",
            }
        )  # fmt: skip
    (tmp_path / "i.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (tmp_path / "f.jsonl").write_text("".join(json.dumps(r) + "\n" for r in fb))
    settings = get_settings()
    config = load_config(settings)
    store, sessions = Store(settings.store_root), open_database(settings)
    red = Redactor(config.redaction)
    ictx = IngestContext(
        store=store, sessions=sessions, config=config, redactor=red,
        pseudonym_key=resolve_pseudonym_key(settings), now=datetime.now(UTC),
    )  # fmt: skip
    ingest_file(ictx, tmp_path / "i.jsonl", "interactions")
    ingest_file(ictx, tmp_path / "f.jsonl", "feedback")
    report = curate_agent(
        CurationContext(store, sessions, config, red, None), AGENT, Window(None, datetime.now(UTC))
    )
    return {v["kind"]: v["version"] for v in report["versions"]}


def _run(*args: str) -> tuple[int, str]:
    """Exit code and output: stdout alone for --json (once a flow command in the same process
    routed the core's logs, its INFO lines go to stderr), both streams otherwise."""
    res = runner.invoke(app, list(args))
    return res.exit_code, res.stdout if "--json" in args else res.stdout + res.stderr


def test_audit_pii_is_clean_then_names_a_planted_email_without_showing_it(
    curated: dict[str, str],
) -> None:
    code, out = _run("audit", "pii", "--json")
    assert code == 0, out
    clean = json.loads(out)
    assert clean["clean"] and clean["findings"] == [] and clean["files_scanned"] >= 4
    assert clean["second_opinion"] == "scanned"

    # a part written straight to the store, past redaction
    store = Store(get_settings().store_root)
    bad = schemas.FEEDBACK.empty_table().to_pylist()
    bad = [
        {
            "schema_version": schemas.SCHEMA_VERSION, "agent_id": AGENT, "feedback_id": "x",
            "interaction_id": "q-1", "timestamp": datetime(2026, 1, 6, tzinfo=UTC),
            "source": "user", "comment": f"reach me at {PLANTED}", "content_hash": "0" * 64,
            "source_file": "1" * 64, "source_line": 1, "timestamp_assumed_utc": False,
            "redaction_version": "1.2.0", "pii_residual": 0,
        }
    ]  # fmt: skip
    import pyarrow as pa

    part = store.write_part(
        feedback_dir(AGENT, "2026-01-06"), pa.Table.from_pylist(bad, schemas.FEEDBACK),
        schemas.FEEDBACK,
    ).path  # fmt: skip
    code, out = _run("audit", "pii", "--json")
    assert code == 1
    assert PLANTED not in out and "planted.person" not in out
    report = json.loads(out)
    assert not report["clean"]
    assert {(f["table"], f["file"], f["column"], f["detector"]) for f in report["findings"]} == {
        ("feedback", part, "comment", "rules"),
        ("feedback", part, "comment", "presidio"),
    }
    assert report["hits_by_type"] == {"EMAIL": 1, "EMAIL_ADDRESS": 1}
    code, text = _run("audit", "pii")
    assert code == 1 and PLANTED not in text
    assert f"HIT feedback {part} [comment] EMAIL 1 in 1 row(s) (rules)" in text
    code, text = _run("audit", "pii", "--agent", "another-agent")
    assert code == 0 and "clean" in text


def test_audit_lineage_of_dataset_and_model_versions_gives_ids_and_pseudonyms(
    curated: dict[str, str],
) -> None:
    key = resolve_pseudonym_key(get_settings())
    user = pseudonymise(USER_EMAIL, key)
    for kind in ("eval_cases", "sft_examples"):
        code, out = _run("audit", "lineage", curated[kind], "--json")
        assert code == 0, out
        assert (
            USER_EMAIL not in out and "Please explain" not in out and "expert.reviewer" not in out
        )
        got = json.loads(out)
        assert got["type"] == "dataset_version" and got["kind"] == kind
        ids = {r["interaction_id"] for r in got["interactions"]}
        assert ids and ids <= {f"q-{i}" for i in range(len(TOPICS))}
        assert {r["user"] for r in got["interactions"]} == {user}
        assert got["users"] == [user]
        assert {r["feedback_id"] for r in got["feedback"]} == {
            f"fb-{i[2:]}" for i in ids
        } or kind == "sft_examples"
        assert [sf["kind"] for sf in got["source_files"]] in (
            ["interactions", "feedback"], ["feedback", "interactions"], ["interactions"],
        )  # fmt: skip
        assert got["not_in_store"] == {"interactions": 0, "feedback": 0}
        assert got["unresolved_cases"] == 0
    cases = json.loads(_run("audit", "lineage", curated["eval_cases"], "--json")[1])
    assert {r["feedback_id"] for r in cases["feedback"]} == {
        f"fb-{r['interaction_id'][2:]}" for r in cases["interactions"]
    }
    assert all(r["annotator"].startswith("u_") for r in cases["feedback"])

    # the logs model answers from every logged interaction with a question
    code, out = _run("models", "register-logs", "--agent", AGENT, "--json")
    assert code == 0, out
    model = json.loads(out)["version"]
    code, out = _run("audit", "lineage", model, "--json")
    assert code == 0, out
    got = json.loads(out)
    assert got["type"] == "model_version" and got["training_run"] is None
    assert len(got["interactions"]) == len(TOPICS) and got["users"] == [user]
    code, text = _run("audit", "lineage", model)
    assert code == 0 and "users: 1" in text and USER_EMAIL not in text

    code, text = _run("audit", "lineage", "no-such-version")
    assert code == 2 and "no dataset version or model version" in text
