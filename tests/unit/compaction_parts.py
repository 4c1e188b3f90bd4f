"""Small parts straight into the store and the ledger, as ingest commits them (no Prefect, no
quality suites): the compaction and feedback-index tests need many parts, fast."""

from __future__ import annotations

import hashlib
from datetime import UTC, date, datetime

import pyarrow as pa
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ratchet import schemas
from ratchet.db import repo
from ratchet.db.models import RecordKey
from ratchet.store import Store, conform, feedback_dir, interactions_dir

REDACTION = "rules-1"


def table(
    kind: str, agent: str, day: str, ids: list[str], iids: list[str] | None = None
) -> pa.Table:
    """Rows of ``interactions`` or ``feedback`` with every required column filled."""
    n = len(ids)
    ts = pa.array([datetime.fromisoformat(f"{day}T10:00:00+00:00")] * n, schemas.UTC_TS)
    common = {
        "schema_version": ["1.0"] * n,
        "agent_id": [agent] * n,
        "timestamp": ts,
        "content_hash": [hashlib.sha256(i.encode()).hexdigest() for i in ids],
        "source_file": ["s" * 64] * n,
        "source_line": list(range(1, n + 1)),
        "timestamp_assumed_utc": [False] * n,
        "redaction_version": [REDACTION] * n,
        "pii_residual": pa.array([0] * n, pa.int32()),
    }
    if kind == "interactions":
        cols = common | {
            "interaction_id": ids,
            "messages": pa.array(
                [[{"role": "user", "content": f"question {i}"}] for i in ids], schemas.MESSAGES
            ),
            "response": [f"answer {i}" for i in ids],
        }
        return conform(pa.table(cols), schemas.INTERACTIONS)
    cols = common | {
        "feedback_id": ids,
        "interaction_id": iids if iids is not None else [f"i-{i}" for i in ids],
        "source": ["user"] * n,
        "thumb": pa.array([1] * n, pa.int8()),
    }
    return conform(pa.table(cols), schemas.FEEDBACK)


def add_part(
    store: Store,
    sessions: sessionmaker[Session],
    kind: str,
    agent: str,
    day: str,
    ids: list[str],
    iids: list[str] | None = None,
    *,
    indexed: bool = True,
    redaction: str = REDACTION,
) -> str:
    """Write and commit one part with its record keys (feedback: indexed unless told not);
    returns its part id."""
    t = table(kind, agent, day, ids, iids)
    directory = (interactions_dir if kind == "interactions" else feedback_dir)(agent, day)
    written = store.write_part(
        directory, t, schemas.INTERACTIONS if kind == "interactions" else schemas.FEEDBACK
    )
    cols = ["interaction_id" if kind == "interactions" else "feedback_id", "content_hash"]
    if kind == "feedback" and indexed:
        cols.append("interaction_id")
    keys = list(zip(*(t[c].to_pylist() for c in cols), strict=True))
    with sessions() as s, s.begin():
        row = repo.record_part(
            s,
            repo.PartRecord(
                table_name=kind,
                path=written.path,
                rows=written.rows,
                content_hash=written.content_hash,
                redaction_version=redaction,
                agent_id=agent,
                partition_date=date.fromisoformat(day),
                bytes=written.bytes,
                schema_fingerprint=written.schema_fingerprint,
            ),
            keys,
        )
        return row.id


def live_rows(store: Store, sessions: sessionmaker[Session], kind: str) -> pa.Table:
    """What a reader sees: every live part the ledger lists, read and concatenated."""
    schema = schemas.INTERACTIONS if kind == "interactions" else schemas.FEEDBACK
    with sessions() as s:
        paths = [p.path for p in repo.list_parts(s, kind)]
    return store.read_tables(paths, schema)


def keys_resolve(store: Store, sessions: sessionmaker[Session], kind: str) -> dict[str, int]:
    """For every record key: how many times its record is in the live part the key points at
    (1 for each, when the ledger is right)."""
    record_kind = "interaction" if kind == "interactions" else "feedback"
    id_col = "interaction_id" if kind == "interactions" else "feedback_id"
    schema = schemas.INTERACTIONS if kind == "interactions" else schemas.FEEDBACK
    with sessions() as s:
        live = {p.id: p.path for p in repo.list_parts(s, kind)}
        keys = (
            s.execute(
                select(RecordKey.record_id, RecordKey.part_id).where(RecordKey.kind == record_kind)
            )
            .tuples()
            .all()
        )
    cache: dict[str, list[str]] = {}
    out: dict[str, int] = {}
    for rid, pid in keys:
        if pid not in live:
            out[rid] = 0
            continue
        if pid not in cache:
            cache[pid] = store.read_table(live[pid], schema, [id_col])[id_col].to_pylist()
        out[rid] = cache[pid].count(rid)
    return out


def when(day: str) -> datetime:
    return datetime.fromisoformat(day).replace(tzinfo=UTC)
