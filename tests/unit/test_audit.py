"""The PII audit core: planted PII is found and named by table, file and column, never by value;
placeholders, pseudonyms and code are not hits; scope by agent and by time; unreadable files
fail the audit; the database is read too."""

from __future__ import annotations

import json
import os
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pyarrow as pa
import pytest

from ratchet import schemas
from ratchet.config import PipelineConfig
from ratchet.privacy import audit as audit_mod
from ratchet.privacy.audit import audit_pii, table_of
from ratchet.redaction import pseudonymise
from ratchet.store import Store, dataset_path, export_dir, interactions_dir

EMAIL = "planted.person@example.com"
PHONE = "+44 20 7946 0958"
CODE = 'token = await requestAccessToken(client)\napi_key = conn.get("ApiKey")'


def _interactions(agent: str, texts: list[str], user: str | None = None) -> pa.Table:
    n = len(texts)
    return pa.table(
        {
            "schema_version": [schemas.SCHEMA_VERSION] * n,
            "agent_id": [agent] * n,
            "interaction_id": [f"i-{k}" for k in range(n)],
            "user_id": [user] * n,
            "timestamp": [datetime(2026, 11, 2, tzinfo=UTC)] * n,
            "messages": [[{"role": "user", "content": t}] for t in texts],
            "response": ["Sent to [EMAIL], card [CREDIT_CARD]."] * n,
            "content_hash": ["0" * 64] * n,
            "source_file": ["1" * 64] * n,
            "source_line": list(range(1, n + 1)),
            "timestamp_assumed_utc": [False] * n,
            "redaction_version": ["1.2.0"] * n,
            "pii_residual": [0] * n,
        }
    )


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store(str(tmp_path / "store"))


def _write(store: Store, agent: str, texts: list[str], user: str | None = None) -> str:
    return store.write_part(
        interactions_dir(agent, "2026-11-02"),
        _interactions(agent, texts, user),
        schemas.INTERACTIONS,
    ).path


def test_planted_email_is_named_by_file_and_column_never_by_value(store: Store) -> None:
    clean = _write(store, "shop", ["Where is my order ORD-2026-118841?"])
    dirty = _write(store, "shop", ["fine", f"write to {EMAIL} please"])
    report = audit_pii(store, None, PipelineConfig())
    assert not report.clean
    rules = [f for f in report.findings if f.detector == "rules"]
    assert [(f.table, f.file, f.column, dict(f.types), f.rows) for f in rules] == [
        ("interactions", dirty, "messages.content", {"EMAIL": 1}, 1)
    ]
    assert all(f.file != clean for f in report.findings)
    assert report.files_scanned == 2 and report.rows_scanned == 3
    text = json.dumps(report.as_dict()) + report.summary()
    assert EMAIL not in text and "planted" not in text
    assert dirty in report.summary() and "messages.content" in report.summary()


def test_placeholders_pseudonyms_and_code_are_not_hits(store: Store) -> None:
    user = pseudonymise("jane.doe@example.com", b"k" * 32)
    _write(store, "shop", ["I am [EMAIL], call [PHONE]", CODE, f"user {user}"], user=user)
    report = audit_pii(store, None, PipelineConfig())
    assert report.clean, report.summary()
    assert report.second_opinion == "scanned" and report.second_opinion_rows > 0


def test_exports_are_read_line_by_line_by_key_path(store: Store) -> None:
    good = {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "ok"}]}
    bad = {"messages": [{"role": "user", "content": f"call me at {PHONE}"}]}
    rel = f"{export_dir('shop', 'v1')}/openai_chat.train.jsonl"
    store.write_bytes(rel, (json.dumps(good) + "\n" + json.dumps(bad) + "\nnot json\n").encode())
    report = audit_pii(store, None, PipelineConfig())
    hits = {(f.table, f.file, f.column, f.detector) for f in report.findings}
    assert ("export", rel, "messages.content", "rules") in hits
    assert not any(f.column == "(line)" for f in report.findings)  # "not json" holds nothing
    assert PHONE not in json.dumps(report.as_dict())


def test_second_opinion_sees_what_the_rules_were_told_to_skip(store: Store) -> None:
    """With EMAIL switched off in the redactor, only Presidio's recognizer reports it."""
    rel = _write(store, "shop", [f"mail {EMAIL}"])
    config = PipelineConfig.model_validate({"redaction": {"disabled_types": ["EMAIL"]}})
    report = audit_pii(store, None, config)
    assert [(f.file, f.column, f.detector, dict(f.types), f.rows) for f in report.findings] == [
        (rel, "messages.content", "presidio", {"EMAIL_ADDRESS": 1}, 1)
    ]


def test_without_presidio_the_rules_run_and_the_report_says_so(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(audit_mod, "presidio_available", lambda: False)
    _write(store, "shop", [f"mail {EMAIL}"])
    report = audit_pii(store, None, PipelineConfig())
    assert report.second_opinion == "skipped: presidio not installed"
    assert report.second_opinion_rows == 0
    assert [f.detector for f in report.findings] == ["rules"]


def test_scope_by_agent_and_by_time(store: Store) -> None:
    old = _write(store, "shop", [f"old {EMAIL}"])
    past = time.time() - 3600
    os.utime(store.full(old), (past, past))
    other = _write(store, "other-agent", [f"other {EMAIL}"])
    kept = store.write_table_at(
        dataset_path("shop", "sft_examples", "v1"),
        pa.table(
            {
                "example_id": ["e"], "agent_id": ["shop"], "case_id": ["c"], "origin": ["golden"],
                "split": ["train"],
                "messages": [[{"role": "assistant", "content": f"sure, {PHONE}"}]],
                "pii_residual": [0],
            }
        ),
        schemas.SFT_EXAMPLES,
    ).path  # fmt: skip
    everything = {f.file for f in audit_pii(store, None, PipelineConfig()).findings}
    assert {old, other, kept} <= everything
    shop = {f.file for f in audit_pii(store, None, PipelineConfig(), agent="shop").findings}
    assert shop == {old, kept}
    since = datetime.now(UTC) - timedelta(minutes=5)
    recent = audit_pii(store, None, PipelineConfig(), since=since)
    assert {f.file for f in recent.findings} == {other, kept}
    assert table_of(kept) == "sft_examples"


def test_an_unreadable_file_fails_the_audit_naming_it(store: Store) -> None:
    rel = f"{interactions_dir('shop', '2026-11-02')}/part-broken.parquet"
    store.write_bytes(rel, b"not parquet at all " + EMAIL.encode())
    store.write_bytes("models/run-1/vectors.npy", b"\x93NUMPY")
    report = audit_pii(store, None, PipelineConfig())
    assert not report.clean and not report.findings
    assert report.unreadable == [{"file": rel, "error": "ArrowInvalid"}]
    assert report.files_not_scanned == {".npy": 1}
    assert EMAIL not in json.dumps(report.as_dict()) + report.summary()


def test_the_database_is_read_column_by_column(ratchet_env: Path) -> None:
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    settings = get_settings()
    sessions = open_database(settings)
    with sessions() as s, s.begin():
        repo.begin_source_file(
            s, file_id="f" * 64, kind="interactions", name=f"logs-{EMAIL}.jsonl", size_bytes=1
        )
        repo.begin_source_file(
            s, file_id="e" * 64, kind="interactions", name="logs-[EMAIL].jsonl", size_bytes=1
        )
    report = audit_pii(Store(settings.store_root), sessions, PipelineConfig())
    rules = [f for f in report.findings if f.detector == "rules"]
    assert [(f.table, f.file, f.column, dict(f.types), f.rows) for f in rules] == [
        ("db:source_files", "database", "name", {"EMAIL": 1}, 1)
    ]
    assert report.db_tables_scanned > 5
    # an agent's audit leaves out tables that belong to no agent
    assert audit_pii(Store(settings.store_root), sessions, PipelineConfig(), agent="x").clean
