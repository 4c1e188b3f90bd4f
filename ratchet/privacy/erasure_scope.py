"""What an erasure reaches: the request, and the discovery that turns it into targets.

Split from :mod:`ratchet.privacy.erasure` (which owns the writes). Discovery only reads: the
interaction parts whose rows belong to a target user (``user_id`` is the keyed pseudonym) or
name a target interaction, the feedback on them (or given by the user, or named), the eval-case
ids recomputed from the erased interactions' user turns exactly as curation computes them, and
every curated row of every dataset version that holds one of them. Targets apply to one agent
or to all (a tombstone without an agent is global). A quarantined line is kept redacted but
not pseudonymised, so its ``user_id`` is recognised by hashing it with the key: the engine never
needs a raw id.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field

import pyarrow as pa
import pyarrow.compute as pc
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from ratchet import schemas
from ratchet.config import PipelineConfig
from ratchet.curation import text
from ratchet.db.models import DatasetVersion, Part, Tombstone
from ratchet.redaction.pseudonym import pseudonymise
from ratchet.store import Store

logger = logging.getLogger(__name__)

PERSON_FIELD = re.compile(r'"(?:user_id|annotator)"\s*:\s*"((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True)
class ErasureRequest:
    """What to erase. Users are pseudonyms (``u_...``, never raw ids); interactions and feedback
    are ids as stored. ``agent_id`` limits the reach (None: every agent).

    ``tombstone``: record tombstones (forget, consent) or not (retention: old data is not a
    request to refuse the same data later). ``include_pending``: also sweep every pending
    tombstone (erased_at NULL) of the scope: a consent withdrawal recorded at ingest, or a run
    that crashed.
    """

    users: frozenset[str] = frozenset()
    interactions: frozenset[str] = frozenset()
    feedback: frozenset[str] = frozenset()
    quarantine_parts: frozenset[str] = frozenset()  # whole quarantine parts (retention)
    # (kind, agent, value), kind user | interaction | feedback: a target of one agent only
    scoped: frozenset[tuple[str, str, str]] = frozenset()
    agent_id: str | None = None
    reason: str | None = None
    tombstone: bool = True
    include_pending: bool = True


@dataclass(frozen=True)
class ErasureContext:
    store: Store
    sessions: sessionmaker[Session]
    config: PipelineConfig
    key: bytes  # the pseudonymisation key (to recognise a user in quarantined raw lines)


class Targets:
    """Values that apply to one agent or to all (a tombstone without agent is global)."""

    def __init__(self) -> None:
        self.any: set[str] = set()
        self.by_agent: dict[str, set[str]] = {}

    def add(self, agent: str | None, values: Iterable[str]) -> None:
        (self.any if agent is None else self.by_agent.setdefault(agent, set())).update(values)

    def for_agent(self, agent: str | None) -> set[str]:
        return self.any | (self.by_agent.get(agent, set()) if agent is not None else set())

    def all(self) -> set[str]:
        return self.any.union(*self.by_agent.values())

    def __bool__(self) -> bool:
        return bool(self.any) or any(self.by_agent.values())


@dataclass
class Scope:
    users: Targets = field(default_factory=Targets)
    interactions: Targets = field(default_factory=Targets)
    feedback: Targets = field(default_factory=Targets)
    cases: Targets = field(default_factory=Targets)
    input_hashes: set[str] = field(default_factory=set)
    questions: set[str] = field(default_factory=set)  # last user turns of erased records
    pairs: set[tuple[str, str]] = field(default_factory=set)  # (question, answer) of examples
    example_ids: set[str] = field(default_factory=set)
    versions: list[tuple[str, pa.Table, int]] = field(default_factory=list)  # id, kept, removed
    whole_quarantine: set[str] = field(default_factory=set)
    tombstone_ids: set[str] = field(default_factory=set)  # pending ones this run settles


def isin(column: pa.ChunkedArray | pa.Array, values: set[str]) -> pa.Array:
    if not values:
        return pa.array([False] * len(column), pa.bool_())
    return pc.fill_null(pc.is_in(column, value_set=pa.array(sorted(values), pa.string())), False)


def any_of(masks: list[pa.Array], n: int) -> pa.Array:
    out = pa.array([False] * n, pa.bool_())
    for m in masks:
        out = pc.or_(out, m)
    return out


# --- discovery ----------------------------------------------------------------------------------
def parts_of(session: Session, table: str, agent: str | None) -> list[Part]:
    """Live parts, and retired parts (a crash may have left their files behind)."""
    stmt = select(Part).where(Part.table_name == table)
    if agent is not None and table != "quarantine":
        stmt = stmt.where(Part.agent_id == agent)
    return list(session.execute(stmt.order_by(Part.path)).scalars())


def interaction_mask(t: pa.Table, agent: str, scope: Scope) -> pa.Array:
    return pc.or_(
        isin(t["user_id"], scope.users.for_agent(agent)),
        isin(t["interaction_id"], scope.interactions.for_agent(agent)),
    )


def feedback_mask(t: pa.Table, agent: str, scope: Scope) -> pa.Array:
    return any_of(
        [
            isin(t["interaction_id"], scope.interactions.for_agent(agent)),
            isin(t["annotator"], scope.users.for_agent(agent)),
            isin(t["feedback_id"], scope.feedback.for_agent(agent)),
        ],
        t.num_rows,
    )


def quarantine_mask(ctx: ErasureContext, t: pa.Table, path: str, scope: Scope) -> pa.Array:
    """Rows whose redacted line names a target: an id as a JSON string, the pseudonym, or a
    ``user_id``/``annotator`` whose keyed pseudonym is a target user (quarantined lines keep the
    raw id: it is recognised by hashing it, so the engine never needs the raw id)."""
    if path in scope.whole_quarantine:
        return pa.array([True] * t.num_rows, pa.bool_())
    agents = t["agent_id"].to_pylist()
    out = []
    for agent, raw in zip(agents, t["raw_redacted"].to_pylist(), strict=True):
        raw = raw or ""
        users = scope.users.for_agent(agent) if agent else scope.users.all()
        ids = (
            scope.interactions.for_agent(agent) | scope.feedback.for_agent(agent)
            if agent
            else scope.interactions.all() | scope.feedback.all()
        )
        hit = any(f'"{v}"' in raw for v in ids | users)
        if not hit and users:
            hit = any(
                pseudonymise(json.loads(f'"{m}"'), ctx.key) in users
                for m in PERSON_FIELD.findall(raw)
                if json_string(m)
            )
        out.append(hit)
    return pa.array(out, pa.bool_())


def json_string(escaped: str) -> bool:
    try:
        json.loads(f'"{escaped}"')
    except ValueError:
        return False
    return True


def _discover_records(ctx: ErasureContext, s: Session, scope: Scope, agent: str | None) -> None:
    for part in parts_of(s, "interactions", agent):
        if not ctx.store.exists(part.path) or part.agent_id is None:
            continue
        t = ctx.store.read_table(part.path, schemas.INTERACTIONS)
        hit = t.filter(interaction_mask(t, part.agent_id, scope))
        if not hit.num_rows:
            continue
        scope.interactions.add(part.agent_id, hit["interaction_id"].to_pylist())
        norm = text.normalise(text.user_text(hit["messages"]))
        scope.cases.add(part.agent_id, text.case_ids(part.agent_id, norm))
        for messages in hit["messages"].to_pylist():
            users = [m.get("content") or "" for m in messages if m.get("role") == "user"]
            if users:
                scope.questions.add(users[-1])
    for part in parts_of(s, "feedback", agent):
        if not ctx.store.exists(part.path) or part.agent_id is None:
            continue
        t = ctx.store.read_table(part.path, schemas.FEEDBACK)
        hit = t.filter(feedback_mask(t, part.agent_id, scope))
        scope.feedback.add(part.agent_id, hit["feedback_id"].to_pylist())


def _version_mask(kind: str, t: pa.Table, agent: str, scope: Scope) -> pa.Array:
    masks = (
        [isin(t["case_id"], scope.cases.for_agent(agent))] if "case_id" in t.column_names else []
    )
    if "interaction_id" in t.column_names:
        masks.append(isin(t["interaction_id"], scope.interactions.for_agent(agent)))
    if "feedback_ids" in t.column_names and scope.feedback.for_agent(agent):
        fb = scope.feedback.for_agent(agent)
        masks.append(pa.array([bool(fb & set(v or ())) for v in t["feedback_ids"].to_pylist()]))
    return any_of(masks, t.num_rows)


def _discover_versions(ctx: ErasureContext, s: Session, scope: Scope, agent: str | None) -> None:
    """Curated rows that hold the records; eval cases and review rows first (they name
    interactions and feedback, and add their case ids for the training kinds)."""
    from ratchet.backends.retrieval import example_pair
    from ratchet.evaluation.runner import input_hash

    stmt = select(DatasetVersion).where(DatasetVersion.superseded_by.is_(None))
    if agent is not None:
        stmt = stmt.where(DatasetVersion.agent_id == agent)
    versions = list(s.execute(stmt.order_by(DatasetVersion.created_at)).scalars())
    order = {"eval_cases": 0, "review_queue": 1}
    versions.sort(key=lambda v: order.get(v.kind, 2))
    for v in versions:
        if not ctx.store.exists(v.path):
            logger.warning("dataset version %s: file %s is missing, skipped", v.id, v.path)
            continue
        t = ctx.store.read_table(v.path, schemas.schema_for(v.kind))
        mask = _version_mask(v.kind, t, v.agent_id, scope)
        removed = t.filter(mask)
        if not removed.num_rows:
            continue
        if v.kind == "eval_cases":
            scope.cases.add(v.agent_id, removed["case_id"].to_pylist())
            for msgs in removed["input"].to_pylist():
                scope.input_hashes.add(input_hash(msgs))
                users = [m.get("content") or "" for m in msgs if m.get("role") == "user"]
                if users:
                    scope.questions.add(users[-1])
        if v.kind == "sft_examples":
            scope.example_ids.update(removed["example_id"].to_pylist())
            for msgs in removed["messages"].to_pylist():
                pair = example_pair(msgs)
                if pair is not None:
                    scope.pairs.add((pair[0], pair[1]))
        scope.versions.append((v.id, t.filter(pc.invert(mask)), removed.num_rows))


def _pending(s: Session, scope: Scope, agent: str | None) -> None:
    stmt = select(Tombstone).where(Tombstone.erased_at.is_(None))
    for tomb in s.execute(stmt).scalars():
        if agent is not None and tomb.agent_id not in (None, agent):
            continue
        (scope.users if tomb.kind == "user" else scope.interactions).add(
            tomb.agent_id, [tomb.value]
        )
        scope.tombstone_ids.add(tomb.id)


def discover(ctx: ErasureContext, request: ErasureRequest) -> Scope:
    """Everything the request reaches, by reading only (a dry run stops here)."""
    scope = Scope()
    scope.users.add(request.agent_id, request.users)
    scope.interactions.add(request.agent_id, request.interactions)
    scope.feedback.add(request.agent_id, request.feedback)
    scope.whole_quarantine = set(request.quarantine_parts)
    targets = {"user": scope.users, "interaction": scope.interactions, "feedback": scope.feedback}
    for kind, agent, value in request.scoped:
        targets[kind].add(agent, [value])
    with ctx.sessions() as s:
        if request.include_pending:
            _pending(s, scope, request.agent_id)
        if scope.users or scope.interactions or scope.feedback or scope.whole_quarantine:
            _discover_records(ctx, s, scope, request.agent_id)
        if scope.interactions or scope.feedback or scope.cases:
            _discover_versions(ctx, s, scope, request.agent_id)
    return scope
