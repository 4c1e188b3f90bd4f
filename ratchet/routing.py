"""Sticky per-user routing between an agent's production version and its rolling-out candidate.

A user's bucket is a hash of (agent, user) mapped into [0, 1); the user goes to the candidate
when the bucket is below the candidate's traffic share. So a user keeps the version they got
(sticky) for as long as the share stays, and raising the share (10 → 50 → 100 %, configured in
``gates.yaml``: ``rollout_shares``) only moves users *to* the candidate: nobody flips back and
forth. Different agents hash differently, so the same users are not always the first ones
exposed.

Serving code calls :func:`choose_version` on every request: build a :class:`RoutingTable`
once (:func:`load_routes`, one query) and refresh it when convenient, or pass a session
factory and pay one small query per call.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.orm import Session

from ratchet.db.models import ModelVersion

_SCALE = float(1 << 64)


class NoRouteError(LookupError):
    """The agent has no production version (nothing to serve)."""


@dataclass(frozen=True)
class Route:
    """One agent's split: production, and the candidate rolling out with its share (0..1)."""

    agent_id: str
    production_id: str
    candidate_id: str | None = None
    candidate_share: float = 0.0


#: agent id -> its route; what serving code keeps in memory.
RoutingTable = Mapping[str, Route]
SessionFactory = Callable[[], AbstractContextManager[Session]]


def user_bucket(agent_id: str, user_id: str) -> float:
    """A stable number in [0, 1) for (agent, user): the first 8 bytes of a SHA-256."""
    digest = hashlib.sha256(f"{agent_id}\x1f{user_id}".encode()).digest()
    return int.from_bytes(digest[:8], "big") / _SCALE


def route_of(session: Session, agent_id: str) -> Route | None:
    """The agent's route from the database: production plus the candidate with the highest
    non-zero share (the one rolling out), or None when the agent has no production."""
    rows = session.execute(
        select(ModelVersion.id, ModelVersion.status, ModelVersion.traffic_share).where(
            ModelVersion.agent_id == agent_id,
            ModelVersion.status.in_(("production", "candidate")),
        )
    ).all()
    return _route(agent_id, [(r[0], r[1], float(r[2])) for r in rows])


def _route(agent_id: str, rows: Sequence[tuple[str, str, float]]) -> Route | None:
    prod = next((vid for vid, status, _ in rows if status == "production"), None)
    if prod is None:
        return None
    rolling = sorted(
        ((share, vid) for vid, status, share in rows if status == "candidate" and share > 0.0),
        reverse=True,
    )
    if not rolling:
        return Route(agent_id, prod)
    share, cand = rolling[0]
    return Route(agent_id, prod, cand, share)


def load_routes(session: Session) -> dict[str, Route]:
    """Every agent's route in one query: the table serving code keeps and refreshes."""
    rows = session.execute(
        select(
            ModelVersion.agent_id, ModelVersion.id, ModelVersion.status, ModelVersion.traffic_share
        ).where(ModelVersion.status.in_(("production", "candidate")))
    ).all()
    by_agent: dict[str, list[tuple[str, str, float]]] = {}
    for agent, vid, status, share in rows:
        by_agent.setdefault(agent, []).append((vid, status, float(share)))
    return {a: r for a, rs in by_agent.items() if (r := _route(a, rs)) is not None}


def pick(route: Route, user_id: str) -> str:
    """The version this user gets on this route."""
    if (
        route.candidate_id is not None
        and user_bucket(route.agent_id, user_id) < route.candidate_share
    ):
        return route.candidate_id
    return route.production_id


def choose_version(
    agent_id: str,
    user_id: str,
    *,
    routes: RoutingTable | None = None,
    sessions: SessionFactory | None = None,
) -> str:
    """The model version that answers ``user_id`` for ``agent_id`` (sticky per user).

    Give a preloaded ``routes`` table (cheapest) or a ``sessions`` factory (one query).
    :class:`NoRouteError` when the agent has no production version.
    """
    if routes is not None:
        route = routes.get(agent_id)
    elif sessions is not None:
        with sessions() as s:
            route = route_of(s, agent_id)
    else:
        raise ValueError("choose_version needs routes or sessions")
    if route is None:
        raise NoRouteError(f"agent {agent_id!r} has no production model version")
    return pick(route, user_id)


def next_share(current: float, shares: Sequence[float]) -> float:
    """The rollout step after ``current`` (the first step from 0; 1.0 stays 1.0)."""
    for share in shares:
        if share > current + 1e-9:
            return share
    return 1.0
