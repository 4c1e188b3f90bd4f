"""The secrets scan: a whole weekly run (ingest → curate → train local → evaluate → gate → PII
audit) with a dummy OpenAI key and a pseudonymisation key in the environment, then a second run
whose PII audit fails on a planted file. Neither key appears in any log line (the test's own
capture and the runs' logs as the API serves them), artifact, Prefect record (flow and task runs:
names, parameters, state messages), stored file (store, database, model folders, exports,
input lists) or exception message; the planted e-mail appears only in the file it was planted in.
"""

from __future__ import annotations

import json
import logging
import os
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from tests.prefect_records import every

OPENAI_KEY = "sk-test-" + "Q7wX" * 10
PSEUDONYM_KEY = "pseudonym-test-key-" + "Zr9k" * 8
PLANTED = "planted.person@example.org"
AGENT = "help-desk"
TOPICS = [
    "reset my router password", "international roaming plans", "pay an invoice by transfer",
    "change the delivery address", "cancel a subscription renewal", "enable two factor login",
    "report a damaged parcel", "upgrade the storage quota", "merge two customer accounts",
    "export my contacts list", "set up automatic top ups", "book a repair technician",
]  # fmt: skip


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _inputs(tmp_path: Path) -> tuple[Path, Path]:
    rows, fb = [], []
    for i, topic in enumerate(TOPICS):
        rows.append(
            {
                "interaction_id": f"q-{i}", "agent_id": AGENT, "user_id": f"user{i}@example.com",
                "timestamp": "2026-01-05T09:00:00Z",
                "messages": [{"role": "user", "content": f"Please explain how to {topic}."}],
                "response": f"Here is how to {topic}: open settings, then follow step {i}.",
            }
        )  # fmt: skip
        fb.append(
            {
                "interaction_id": f"q-{i}", "agent_id": AGENT, "timestamp": "2026-01-06T09:00:00Z",
                "thumb": -1 if i % 4 == 0 else 1,
                **({"correction": f"Go to Settings, then {topic}."} if i % 4 == 0 else {}),
            }
        )  # fmt: skip
    logs, feedback = tmp_path / "in" / "logs.jsonl", tmp_path / "in" / "feedback.jsonl"
    logs.parent.mkdir()
    logs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    feedback.write_text("".join(json.dumps(r) + "\n" for r in fb))
    return logs, feedback


def _prefect_records() -> dict[str, str]:
    """Every flow run, task run, artifact and log line the API serves (the UI's view)."""
    from prefect.client.orchestration import get_client
    from prefect.logging.handlers import APILogHandler

    APILogHandler().flush()  # the handler ships in batches
    out: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        flows = every(client.read_flow_runs)
        out["flow runs"] = json.dumps([r.model_dump(mode="json") for r in flows])
        out["task runs"] = json.dumps(
            [r.model_dump(mode="json") for r in every(client.read_task_runs)]
        )
        out["artifacts"] = json.dumps(
            [a.model_dump(mode="json") for a in every(client.read_artifacts)]
        )
        logs = [f"{g.name}: {g.message}" for g in every(client.read_logs)]
        out["prefect logs"] = "\n".join(logs)
    return out


def _stored_files(home: Path) -> dict[str, bytes]:
    return {str(p.relative_to(home)): p.read_bytes() for p in home.rglob("*") if p.is_file()}


def test_weekly_run_leaks_neither_key_and_its_audit_fails_on_planted_pii(
    prefect_harness: Any,
    ratchet_env: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from flows.weekly import WeeklyFailed, weekly_flow
    from ratchet import schemas
    from ratchet.settings import get_settings
    from ratchet.store import Store, interactions_dir

    monkeypatch.setenv("OPENAI_API_KEY", OPENAI_KEY)
    monkeypatch.setenv("RATCHET_PSEUDONYM_KEY", PSEUDONYM_KEY)
    logs, feedback = _inputs(tmp_path)
    collect = _Collect()
    caplog.set_level(logging.DEBUG)
    for name in ("", "prefect", "ratchet"):
        logging.getLogger(name).addHandler(collect)
    try:
        state = weekly_flow(
            paths=[str(logs)], feedback_paths=[str(feedback)], all_time=True, return_state=True
        )
        assert state.is_completed(), state.message
        result = state.result()
        assert result["audit"]["clean"] and result["audit"]["files_scanned"] > 0
        assert (ratchet_env / "store" / "models").is_dir()  # the local model was trained

        # a part written after the run began (its mtime says so), past redaction
        store = Store(get_settings().store_root)
        row = {
            "schema_version": schemas.SCHEMA_VERSION, "agent_id": AGENT, "interaction_id": "x",
            "timestamp": datetime(2026, 1, 5, 9, tzinfo=UTC), "messages": [{"role": "user", "content": "hello"}],
            "response": f"write to {PLANTED}", "content_hash": "0" * 64,
            "source_file": "1" * 64, "source_line": 1, "timestamp_assumed_utc": False,
            "redaction_version": "1.2.0", "pii_residual": 0,
        }  # fmt: skip
        part = store.write_part(
            interactions_dir(AGENT, "2026-01-05"),
            pa.Table.from_pylist([row], schemas.INTERACTIONS),
            schemas.INTERACTIONS,
        ).path
        ahead = time.time() + 120
        os.utime(store.full(part), (ahead, ahead))
        failed = weekly_flow(paths=[], all_time=True, improve=False, return_state=True)
        assert failed.is_failed()
        with pytest.raises(WeeklyFailed) as raised:
            failed.result()
    finally:
        for name in ("", "prefect", "ratchet"):
            logging.getLogger(name).removeHandler(collect)
    error = f"{raised.value!s} {raised.value!r} {failed.message}"
    assert "pii audit: PiiAuditFailed" in error and f"{part}:response" in error

    haystacks = {
        "caplog": caplog.text,
        "log records": "\n".join(collect.lines),
        "exception": error,
        "results": json.dumps(result, default=str),
        **_prefect_records(),
    }
    files = _stored_files(ratchet_env)
    assert any(f.startswith("store/models/") for f in files)
    assert any(f.startswith("store/exports/") for f in files)
    assert "ratchet.db" in files
    for where, text in haystacks.items():
        for secret in (OPENAI_KEY, PSEUDONYM_KEY, PLANTED, "user3@example.com"):
            assert secret not in text, f"a secret leaked into {where}"
    for name, data in files.items():
        for secret in (OPENAI_KEY, PSEUDONYM_KEY, "user3@example.com"):
            assert secret.encode() not in data, f"a key leaked into {name}"
        if name != f"store/{part}":
            assert PLANTED.encode() not in data, f"the planted value leaked into {name}"
    assert "PII audit" in haystacks["artifacts"] and part in haystacks["artifacts"]
