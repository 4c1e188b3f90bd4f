"""Consent withdrawals and tombstones as ingest sees them (issue 12).

A ``consent_withdrawn`` event in a feedback file (:mod:`ratchet.ingest.records`) is recorded
here as a *pending* user tombstone (the keyed pseudonym only): from that moment ingest refuses
the user's records, and the ingest flow runs the erasure after its commit (flows/ingest.py);
should that fail, the next ``forget`` or ``retention`` run sweeps every pending tombstone.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ratchet.db import repo
from ratchet.db.models import Tombstone
from ratchet.privacy.erasure_scope import PERSON_FIELD, json_string
from ratchet.redaction.pseudonym import pseudonymise

_INTERACTION_FIELD = re.compile(r'"interaction_id"\s*:\s*"((?:[^"\\]|\\.)*)"')


def record_withdrawals(
    sessions: sessionmaker[Session], withdrawals: Iterable[tuple[str | None, str]]
) -> int:
    """Record consent withdrawals read at ingest as pending user tombstones (pseudonyms only).

    The erasure itself runs after the ingest commits (flows/ingest.py) and, should that fail,
    in the next forget or retention run (both sweep pending tombstones). Returns how many
    events were recorded (the same event twice is one tombstone)."""
    items = list(withdrawals)
    with sessions() as s, s.begin():
        for agent, pseudonym in items:
            repo.add_tombstone(
                s, kind="user", value=pseudonym, agent_id=agent, reason="consent-withdrawn"
            )
    return len(items)


def drop_tombstoned_quarantine(
    sessions: sessionmaker[Session], rows: list[dict[str, Any]], key: bytes
) -> list[dict[str, Any]]:
    """Quarantine rows minus those whose line names a tombstoned user or interaction.

    A rejected line is kept redacted but not pseudonymised (it could not be parsed into
    fields), so a forgotten user's raw id would come back with a re-ingest of a broken line:
    their ``user_id``/``annotator`` is recognised by its keyed pseudonym, never stored."""
    if not rows:
        return rows
    with sessions() as s:
        if s.execute(select(Tombstone.id).limit(1)).first() is None:
            return rows
        kept = []
        for row in rows:
            raw = row.get("raw_redacted") or ""
            agent = row.get("agent_id") or ""
            users = {
                pseudonymise(json.loads(f'"{m}"'), key)
                for m in PERSON_FIELD.findall(raw)
                if json_string(m)
            }
            ids = {json.loads(f'"{m}"') for m in _INTERACTION_FIELD.findall(raw) if json_string(m)}
            if (users and repo.tombstoned(s, agent, "user", users)) or (
                ids and repo.tombstoned(s, agent, "interaction", ids)
            ):
                continue
            kept.append(row)
    return kept


__all__ = ["drop_tombstoned_quarantine", "record_withdrawals"]
