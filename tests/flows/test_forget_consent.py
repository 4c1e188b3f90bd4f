"""Consent withdrawal is an erasure (issue 12): a ``consent_withdrawn`` event in a feedback file
makes the ingest flow record a tombstone and erase the user after its commit; ``ratchet forget
--user U --reason consent-withdrawn`` does the same by hand, and keeps the reason."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

AGENT = "shop-assistant"
runner = CliRunner()


def _write(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _grep(root: Path, needle: str) -> list[str]:
    import pyarrow.parquet as pq

    hits = []
    for path in root.rglob("*.parquet"):
        if needle in json.dumps(pq.read_table(path).to_pylist(), default=str):
            hits.append(str(path.relative_to(root)))
    return hits


def test_a_consent_withdrawn_event_erases_the_user_after_the_ingest(
    prefect_harness: None, ratchet_env: Path, tmp_path: Path
) -> None:
    from flows.cli import app
    from flows.ingest import ingest_flow
    from ratchet.db import open_database, repo
    from ratchet.settings import get_settings

    rows, feedback = [], []
    for user in ("ana-withdraws", "bo-stays", "cy-by-hand"):
        for i in range(2):
            iid = f"{user}-{i}"
            rows.append(
                {
                    "interaction_id": iid,
                    "agent_id": AGENT,
                    "user_id": user,
                    "timestamp": f"2026-01-1{i}T09:00:00Z",
                    "messages": [{"role": "user", "content": f"{user} question {i}"}],
                    "response": f"{user} answer {i}",
                }
            )
            feedback.append({"interaction_id": iid, "agent_id": AGENT, "thumb": 1,
                             "timestamp": f"2026-01-1{i}T10:00:00Z"})  # fmt: skip
    logs = _write(tmp_path / "logs.jsonl", rows)
    fb = _write(tmp_path / "fb.jsonl", feedback)
    ingest_flow(paths=[str(logs)], feedback_paths=[str(fb)])
    store = ratchet_env / "store"
    assert _grep(store, "ana-withdraws question")

    withdrawal = _write(
        tmp_path / "consent.jsonl",
        [{"event": "consent_withdrawn", "user_id": "ana-withdraws",
          "timestamp": "2026-02-01T00:00:00Z"}],
    )  # fmt: skip
    summary = ingest_flow(paths=[str(withdrawal)])  # told a feedback file by its content
    assert summary["consent_withdrawn"] == 1
    assert summary["erasure"]["rows_removed"] == {"feedback": 2, "interactions": 2}
    assert _grep(store, "ana-withdraws") == []
    assert _grep(store, "bo-stays question")  # nobody else's data goes
    with open_database(get_settings())() as s:
        (user_tomb,) = [t for t in repo.list_tombstones(s) if t.kind == "user"]
        assert user_tomb.reason == "consent-withdrawn" and user_tomb.erased_at is not None
        assert user_tomb.agent_id is None and "ana" not in user_tomb.value  # every agent

    # re-ingest of the same logs restores nothing of the user
    again = _write(tmp_path / "logs-again.jsonl", rows)
    ingest_flow(paths=[str(again)], feedback_paths=[str(fb)])
    assert _grep(store, "ana-withdraws") == []

    result = runner.invoke(
        app, ["forget", "--user", "cy-by-hand", "--reason", "consent-withdrawn", "--json"]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["rows_removed"]["interactions"] == 2
    assert _grep(store, "cy-by-hand") == []
    with open_database(get_settings())() as s:
        reasons = {t.reason for t in repo.list_tombstones(s) if t.kind == "user"}
    assert reasons == {"consent-withdrawn"}
