"""The ingest flow under a real Prefect run: artifacts, failure reasons, and no PII anywhere."""

from __future__ import annotations

import json
import logging
import sqlite3
from pathlib import Path

import pyarrow.parquet as pq
import pytest

PLANTED = {
    "email": "planted.person@example.com",
    "card": "5555 5555 5555 4444",
    "iban": "GB82 WEST 1234 5698 7654 32",
    "key": "sk-proj-" + "Abc123XyZ" * 5,
    "phone": "+44 20 7946 0958",
    "ssn": "536-22-1234",
}


def _line(i: int, text: str, **extra: object) -> str:
    return json.dumps(
        {
            "interaction_id": f"p-{i}",
            "agent_id": "shop-assistant",
            "timestamp": "2026-11-02T10:00:00Z",
            "messages": [{"role": "user", "content": text}],
            "response": f"Noted, order ORD-2026-11884{i}.",
            **extra,
        }
    )


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


def _artifacts_text(flow_run_id) -> str:
    """Every artifact of the run, as the API serves it to the UI."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId

    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(
            artifact_filter=ArtifactFilter(flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]))
        )
    return json.dumps([a.model_dump(mode="json") for a in arts])


def _everything_written(home: Path) -> str:
    parts = []
    for f in home.rglob("*.parquet"):
        parts.append(json.dumps(pq.read_table(f).to_pylist(), default=str))
    with sqlite3.connect(home / "ratchet.db") as db:
        parts.extend(db.iterdump())
    return "\n".join(parts)


def test_planted_pii_reaches_no_store_log_artifact_or_error(
    prefect_harness, ratchet_env, tmp_path
) -> None:
    from flows.ingest import ingest_flow

    secret_text = " ".join(PLANTED.values())
    f = tmp_path / f"logs-{PLANTED['email']}.jsonl"
    f.write_text(
        "\n".join(
            [
                _line(1, f"Hi, I am {PLANTED['email']}, card {PLANTED['card']}"),
                _line(
                    2,
                    f"IBAN {PLANTED['iban']} and key {PLANTED['key']}",
                    metadata={"phone": PLANTED["phone"]},
                ),
                _line(3, f"ssn {PLANTED['ssn']}", user_id=PLANTED["email"]),
                f'{{"broken": "{secret_text}"',  # quarantined line full of PII
                _line(4, "when?", timestamp=f"{PLANTED['email']}"),  # bad timestamp holding PII
            ]
        )
        + "\n"
    )
    collect = _Collect()
    for name in ("", "prefect", "ratchet"):
        logging.getLogger(name).addHandler(collect)
    try:
        state = ingest_flow(
            paths=[str(f)],
            config_overrides={"ingest": {"max_quarantine_share": 0.5}},
            return_state=True,
        )
    finally:
        for name in ("", "prefect", "ratchet"):
            logging.getLogger(name).removeHandler(collect)
    assert state.is_completed(), state.message
    summary = state.result()
    assert summary["stored"] == {"interactions": 3}
    assert summary["quarantined"] == {"not_json": 1, "bad_timestamp": 1}
    assert summary["pii_by_type"]  # counts by type are published
    haystacks = {
        "store+db": _everything_written(ratchet_env),
        "logs": "\n".join(collect.lines),
        "artifacts": _artifacts_text(state.state_details.flow_run_id),
        "state": str(state.message) + json.dumps(summary),
    }
    assert "Ingest summary" in haystacks["artifacts"]
    assert "[EMAIL]" in haystacks["store+db"]
    for where, text in haystacks.items():
        for kind, value in PLANTED.items():
            assert value not in text, f"{kind} leaked into {where}"
            assert value.replace(" ", "") not in text, f"{kind} leaked into {where}"


def test_failed_file_fails_the_flow_naming_it_and_keeps_going(
    prefect_harness, ratchet_env, tmp_path
) -> None:
    from flows.ingest import IngestFailed, ingest_flow

    good = tmp_path / "good.jsonl"
    good.write_text(_line(1, "fine") + "\n")
    bad = tmp_path / "mostly-bad.jsonl"
    bad.write_text("\n".join(["not json"] * 120 + [_line(2, "ok")]) + "\n")  # past the minimum
    with pytest.raises(IngestFailed, match=r"mostly-bad\.jsonl.*quarantined"):
        ingest_flow(paths=[str(bad), str(good)])
    # the good file was committed; a rerun of the good file alone adds nothing
    summary = ingest_flow(paths=[str(good)])
    assert summary["files_already_ingested"] == 1 and summary["stored"] == {}
