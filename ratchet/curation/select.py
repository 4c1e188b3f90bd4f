"""Which stored records a curation run reads: selection by when the feedback *arrived*.

A run covers the half-open window ``[since, until)`` on **arrival**: the time the ledger
committed the feedback record (``record_keys.first_seen_at``), never the event's own
``timestamp`` (``since=None``: the beginning of time). So a vote dated last week but ingested
after last week's run is curated by the next run, in the week it arrived. The interactions a run
curates are those that received at least one feedback event in the window; for those, every
event that arrived before ``until`` is passed on (so the current vote, superseded votes and
expert-over-user are judged on the whole history, ordered by the events' own timestamps), and
nothing that arrived later: a rerun of an old window sees what the first run saw. (Events whose
own timestamp is after ``until`` are ignored, and counted, by :mod:`ratchet.curation.signals`.)

Reads go through the ledger, never a folder listing:

* the window's feedback ids and the parts that hold them come from ``record_keys`` joined to
  ``parts`` (live parts only); the earlier events of the selected interactions can be in any
  older feedback part of the agent, and the ledger's feedback index
  (:mod:`ratchet.db.feedback_index`, issue 13) names the parts that hold them, so only those are
  read (plus any unindexed part, read whole), with only the rows of the selected interactions
  kept;
* interactions are looked up by id in ``record_keys`` → ``part_id`` → ``parts.path`` and only
  the parts that hold them are read (never a scan of the interactions table).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session

from ratchet import schemas
from ratchet.db._common import _member_chunks
from ratchet.db.feedback_index import feedback_parts_for, unindexed_feedback_parts
from ratchet.db.models import DatasetVersion, Part, RecordKey
from ratchet.store import Store

_IN_CHUNK = 900  # ids per IN (...) query: below SQLite's oldest bound-parameter limit


class WindowError(ValueError):
    """A window is empty or inverted, or a bound is not timezone-aware."""


@dataclass(frozen=True)
class Window:
    """``[since, until)`` in UTC; ``since=None`` is the beginning of time."""

    since: datetime | None
    until: datetime

    def __post_init__(self) -> None:
        for name in ("since", "until"):
            value = getattr(self, name)
            if value is not None and value.tzinfo is None:
                raise WindowError(f"{name} must be timezone-aware (UTC)")
        if self.since is not None and self.since >= self.until:
            raise WindowError("since must be before until (the window is [since, until))")

    def label(self) -> str:
        since = self.since.isoformat() if self.since else "beginning"
        return f"[{since}, {self.until.isoformat()})"


def to_utc(value: datetime | date | str | None) -> datetime | None:
    """A UTC datetime from a datetime, a date (its midnight) or an ISO string; naive means UTC."""
    if value is None:
        return None
    if isinstance(value, str):
        value = datetime.fromisoformat(value.strip())
    if not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


@dataclass
class Selection:
    """One agent's inputs for ``curate`` and where they came from (part ids, for lineage)."""

    agent_id: str
    window: Window
    interactions: pa.Table
    feedback: pa.Table
    interaction_part_ids: list[str] = field(default_factory=list)
    feedback_part_ids: list[str] = field(default_factory=list)
    stats: dict[str, int] = field(default_factory=dict)

    def lineage(self) -> list[tuple[str, str]]:
        parts = sorted(set(self.interaction_part_ids) | set(self.feedback_part_ids))
        return [("part", p) for p in parts]


def agents_with_feedback(session: Session) -> list[str]:
    """Every agent that has committed feedback (the default set a curate run covers)."""
    stmt = (
        select(Part.agent_id)
        .where(Part.table_name == "feedback", Part.retired_at.is_(None), Part.agent_id.is_not(None))
        .distinct()
        .order_by(Part.agent_id)
    )
    return [a for a in session.execute(stmt).scalars() if a]


def interaction_parts(session: Session, agent_id: str, ids: list[str]) -> dict[str, str]:
    """``part_id -> path`` of the committed parts holding the given interaction ids."""
    out: dict[str, str] = {}
    unique = sorted(set(ids))
    for start in range(0, len(unique), _IN_CHUNK):
        chunk = unique[start : start + _IN_CHUNK]
        stmt = (
            select(Part.id, Part.path)
            .join(RecordKey, RecordKey.part_id == Part.id)
            .where(
                RecordKey.kind == "interaction",
                RecordKey.agent_id == agent_id,
                RecordKey.record_id.in_(chunk),
                Part.retired_at.is_(None),
            )
            .distinct()
        )
        out.update({pid: path for pid, path in session.execute(stmt).tuples()})
    return out


def _arrivals(
    session: Session, agent_id: str, window: Window
) -> tuple[dict[str, str], set[str], dict[str, str]]:
    """What the ledger had received for this agent, by commit time (``first_seen_at``).

    Returns (feedback ids that arrived in the window -> part id, feedback ids that arrived at or
    after ``until`` (hidden from this run), part id -> path of the live parts holding the
    window's feedback).
    """
    arrived = RecordKey.first_seen_at
    base = (
        select(RecordKey.record_id, RecordKey.part_id)
        .join(Part, Part.id == RecordKey.part_id)
        .where(
            RecordKey.kind == "feedback", RecordKey.agent_id == agent_id, Part.retired_at.is_(None)
        )
    )
    in_window = base.where(arrived < window.until)
    if window.since is not None:
        in_window = in_window.where(arrived >= window.since)
    window_ids = {rid: pid for rid, pid in session.execute(in_window).tuples()}
    late = set(
        session.execute(
            select(RecordKey.record_id).where(
                RecordKey.kind == "feedback",
                RecordKey.agent_id == agent_id,
                arrived >= window.until,
            )
        ).scalars()
    )
    parts: dict[str, str] = {}
    for member in _member_chunks(session, Part.id, window_ids.values()):
        rows = session.execute(select(Part.id, Part.path).where(member)).tuples()
        parts.update({pid: path for pid, path in rows})
    return window_ids, late, parts


def _ids(values: Iterable[str]) -> pa.Array:
    """A value set for ``pc.is_in``, built once per selection (not once per part)."""
    return pa.array(sorted(set(values)), pa.string())


def select_inputs(session: Session, store: Store, agent_id: str, window: Window) -> Selection:
    """Read the feedback that arrived in the window (plus the earlier-arrived history of the same
    interactions) and the interactions it points at, from the parts that hold them."""
    window_ids, late, window_parts = _arrivals(session, agent_id, window)
    stats: dict[str, int] = {"feedback_parts_in_window": len(window_parts)}
    read: dict[str, pa.Table] = {}
    ids: set[str] = set()
    late_set, window_set = _ids(late), _ids(window_ids)

    def read_part(pid: str, path: str) -> pa.Table:
        t = store.read_table(path, schemas.FEEDBACK)
        if late:  # arrived after until: a rerun of an old window must not see it
            t = t.filter(pc.invert(pc.is_in(t["feedback_id"], value_set=late_set)))
        read[pid] = t
        return t

    for pid, path in sorted(window_parts.items(), key=lambda kv: kv[1]):
        t = read_part(pid, path)
        hit = t.filter(pc.is_in(t["feedback_id"], value_set=window_set))
        ids.update(hit["interaction_id"].to_pylist())
    # the earlier events of the selected interactions: the parts the index names, and any
    # unindexed part (committed before the index, read whole)
    history = feedback_parts_for(session, agent_id, ids) if ids else {}
    history.update(unindexed_feedback_parts(session, agent_id) if ids else {})
    for pid, path in sorted(history.items(), key=lambda kv: kv[1]):
        if pid not in read:
            read_part(pid, path)
    stats["feedback_parts_read"] = len(read)
    stats["feedback_in_window"] = len(window_ids)
    stats["interactions_selected"] = len(ids)
    if not ids:
        return Selection(
            agent_id,
            window,
            schemas.INTERACTIONS.empty_table(),
            schemas.FEEDBACK.empty_table(),
            stats=stats,
        )

    id_set = _ids(ids)
    fb_tables: list[pa.Table] = []
    fb_parts: list[str] = []
    for pid, t in sorted(read.items(), key=lambda kv: history.get(kv[0]) or window_parts[kv[0]]):
        t = t.filter(pc.is_in(t["interaction_id"], value_set=id_set))
        if t.num_rows:
            fb_tables.append(t)
            fb_parts.append(pid)
    feedback = pa.concat_tables(fb_tables) if fb_tables else schemas.FEEDBACK.empty_table()
    stats["feedback_history_events"] = feedback.num_rows - stats["feedback_in_window"]

    holders = interaction_parts(session, agent_id, sorted(ids))
    tables = []
    for _pid, path in sorted(holders.items(), key=lambda kv: kv[1]):
        t = store.read_table(path, schemas.INTERACTIONS)
        tables.append(t.filter(pc.is_in(t["interaction_id"], value_set=id_set)))
    interactions = pa.concat_tables(tables) if tables else schemas.INTERACTIONS.empty_table()
    stats["interaction_parts_read"] = len(holders)
    stats["interactions_missing"] = len(ids) - len(set(interactions["interaction_id"].to_pylist()))
    return Selection(
        agent_id, window, interactions, feedback, sorted(holders), sorted(fb_parts), stats
    )


def agents_of_interaction(session: Session, interaction_id: str) -> list[str]:
    """The agents that have a stored interaction with this id (usually one)."""
    stmt = (
        select(RecordKey.agent_id)
        .where(RecordKey.kind == "interaction", RecordKey.record_id == interaction_id)
        .order_by(RecordKey.agent_id)
    )
    return list(session.execute(stmt).scalars())


#: ``stats.source`` of an eval suite imported by ``ratchet suites import`` (ratchet.evaluation).
IMPORTED_SOURCE = "import"


def latest_curated_eval_cases(session: Session, agent_id: str) -> DatasetVersion | None:
    """The agent's newest eval-cases version that curation made (not an imported suite).

    Curation carries the previous version's cases forward; an imported benchmark taken for
    that version would have its cases copied into the curated set (and then into training's
    split bookkeeping). Imported holdout cases still guard against leakage: they stay in
    :func:`eval_case_versions`.
    """
    stmt = (
        select(DatasetVersion)
        .where(DatasetVersion.agent_id == agent_id, DatasetVersion.kind == "eval_cases")
        .order_by(DatasetVersion.created_at.desc(), DatasetVersion.id.desc())
    )
    for version in session.execute(stmt).scalars():
        if (version.stats or {}).get("source") != IMPORTED_SOURCE:
            return version
    return None


def eval_case_versions(session: Session, agent_id: str) -> list[tuple[str, str]]:
    """``(version id, path)`` of every registered eval-cases version of the agent, newest first
    (the leakage guard's reference: every holdout case any of them still holds active)."""
    stmt = (
        select(DatasetVersion.id, DatasetVersion.path)
        .where(DatasetVersion.agent_id == agent_id, DatasetVersion.kind == "eval_cases")
        .order_by(DatasetVersion.created_at.desc(), DatasetVersion.id.desc())
    )
    return [(vid, path) for vid, path in session.execute(stmt).tuples()]


def active_holdout_cases(
    store: Store, versions: list[tuple[str, str]]
) -> tuple[pa.Table, list[str]]:
    """Every holdout case of the agent that is not retired, over all its eval-cases versions
    (``versions`` newest first), and the ids of the versions that contributed one.

    A case's state is taken from the newest version that holds it, so a case retired there is
    out even if an older version still has it active. Not only the latest version: a version
    made from another chain (a rerun with another config, a backfill registered out of order)
    can lack holdout cases an earlier one registered, and those must still guard training.
    """
    seen: set[str] = set()
    tables: list[pa.Table] = []
    used: list[str] = []
    for vid, path in versions:
        t = store.read_table(path, schemas.EVAL_CASES)
        if not t.num_rows:
            continue
        fresh = pc.invert(pc.is_in(t["case_id"], value_set=pa.array(sorted(seen), pa.string())))
        t = t.filter(fresh)
        seen.update(t["case_id"].to_pylist())
        active = t.filter(pc.and_(pc.equal(t["status"], "active"), pc.equal(t["split"], "holdout")))
        if active.num_rows:
            tables.append(active)
            used.append(vid)
    table = pa.concat_tables(tables) if tables else schemas.EVAL_CASES.empty_table()
    return table, used
