"""The ``logs`` backend: the agent that wrote the logs, as a model version.

Week one has no trained model to beat, so the first production version of an agent is the agent
itself as its logs show it: asked a question, it gives the logged answer (``response``) of the
nearest logged question (the last user message of ``messages``). Candidates are then measured
against what users actually got.

:func:`register_logs_model` builds the index from the agent's committed interaction parts (the
ledger lists them, as curation does) and registers it. The version id is a hash of the agent
and of what the index answers from, so the same ingested data gives the same version and a
second call registers nothing; new data gives a new version (a candidate once the agent has a
production). The index is written under ``models/<version_id>/`` before the database row, so a
crash leaves at most an unreferenced folder that the next call rewrites with the same bytes.

When one question was logged several times, the latest answer stands (by timestamp, then
interaction id): the model stands for the agent as it behaves now.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from ratchet import schemas
from ratchet.backends import BackendContext
from ratchet.backends.base import Answer, BackendError, ModelSpec
from ratchet.backends.retrieval import (
    RetrievalIndex,
    build_index,
    content_hash,
    context_text,
    tool_calls_json,
)
from ratchet.config import BackendsConfig
from ratchet.store import Store

log = logging.getLogger(__name__)

NAME = "logs"
_COLUMNS = ["interaction_id", "timestamp", "messages", "response", "response_tool_calls"]


@dataclass(frozen=True)
class LogsModel:
    """The outcome of :func:`register_logs_model`."""

    version_id: str
    agent_id: str
    status: str
    model_ref: str
    created: bool  # False: the same data was registered before; nothing new was written
    interactions: int
    questions: int


def build_logs_index(
    session: Session, store: Store, agent_id: str, config: BackendsConfig | None = None
) -> tuple[RetrievalIndex, int]:
    """The index of an agent's logged questions and answers, and how many interactions it read.

    Reads every committed, unretired interaction part of the agent (retired parts, such as
    those rewritten after a user was forgotten, are left out).
    """
    from ratchet.db import repo

    cfg = config or BackendsConfig()
    latest: dict[str, tuple[Any, str, str, str | None]] = {}
    read = 0
    for part in repo.list_parts(session, "interactions", agent_id=agent_id):
        table = store.read_table(part.path, schemas.INTERACTIONS, _COLUMNS)
        read += table.num_rows
        for row in table.to_pylist():
            question = context_text(row["messages"] or [])
            if not question.strip():
                continue
            key = (row["timestamp"], row["interaction_id"])
            kept = latest.get(question)
            if kept is None or key > (kept[0], kept[1]):
                calls = tool_calls_json({"tool_calls": row["response_tool_calls"]})
                latest[question] = (row["timestamp"], row["interaction_id"], row["response"], calls)
    questions = sorted(latest)
    index = build_index(
        [latest[q][1] for q in questions],
        questions,
        [latest[q][2] for q in questions],
        [latest[q][3] for q in questions],
        encoder=cfg.logs_encoder,
        ngram_max=cfg.tfidf_ngram_max,
        max_features=cfg.tfidf_max_features,
        meta={"backend": NAME, "agent_id": agent_id},
    )
    return index, read


def logs_version_id(agent_id: str, index: RetrievalIndex) -> str:
    """``logs-`` and 24 hex characters of the agent and the index content: same data, same id."""
    digest = hashlib.sha256(f"{NAME}\0{agent_id}\0{content_hash(index)}".encode()).hexdigest()
    return f"{NAME}-{digest[:24]}"


def register_logs_model(
    session: Session,
    store: Store,
    agent_id: str,
    config: BackendsConfig | None = None,
    *,
    created_by: str = "ratchet",
) -> LogsModel:
    """Register the agent's logs model (production if the agent has none yet, else candidate).

    Idempotent: the same ingested data gives the same version id, and a version that exists is
    returned with ``created=False``. The caller owns the session and its transaction.
    """
    from ratchet.db import NotFoundError, repo

    index, read = build_logs_index(session, store, agent_id, config)
    if len(index) == 0:
        raise BackendError(
            f"logs: agent {agent_id!r} has no ingested interaction with a user "
            "question; ingest its logs first"
        )
    version_id = logs_version_id(agent_id, index)
    model_ref = f"models/{version_id}/"
    try:
        row = repo.get_model_version(session, version_id)
    except NotFoundError:
        row = None
    if row is not None:
        if row.agent_id != agent_id:
            raise BackendError(f"logs: model version {version_id} belongs to another agent")
        return LogsModel(row.id, agent_id, row.status, row.model_ref, False, read, len(index))
    index.save(store, model_ref)
    status = "production" if repo.production_version(session, agent_id) is None else "candidate"
    row = repo.create_model_version(
        session,
        agent_id=agent_id,
        backend=NAME,
        model_ref=model_ref,
        status=status,
        parameters={
            "encoder": index.encoder.name,
            "interactions": read,
            "questions": len(index),
            "created_by": created_by,
        },
        version_id=version_id,
    )
    log.info(
        "logs: registered %s for agent %s as %s (%d questions from %d interactions)",
        version_id,
        agent_id,
        status,
        len(index),
        read,
    )
    return LogsModel(row.id, agent_id, status, model_ref, True, read, len(index))


class LogsAnswerer:
    """Answers with the logged answer of the nearest logged question, however far it is: the
    agent always answered something."""

    def __init__(self, spec: ModelSpec, context: BackendContext) -> None:
        self.spec, self.context = spec, context
        self._index: RetrievalIndex | None = None

    @property
    def index(self) -> RetrievalIndex:
        if self._index is None:
            self._index = RetrievalIndex.load(self.context.store, self.spec.model_ref)
        return self._index

    def answer(self, messages: Sequence[Mapping[str, Any]]) -> Answer:
        index = self.index  # read once, before the clock: latency is answering, not loading
        started = time.perf_counter()
        hit = index.nearest(context_text(messages))
        return Answer(
            text=hit.answer,
            tool_calls=hit.tool_calls,
            latency_ms=(time.perf_counter() - started) * 1000.0,
            details={
                "source": "logged",
                "similarity": round(hit.score, 6),
                "interaction_id": hit.id,
            },
        )


def make_trainer(context: BackendContext) -> Any:
    raise BackendError(
        "the logs backend does not train: register an agent's logs model with "
        "`ratchet models register-logs --agent ID`"
    )


def make_answerer(spec: ModelSpec, context: BackendContext) -> LogsAnswerer:
    if spec.backend != NAME:
        raise BackendError(f"logs: cannot answer for a {spec.backend} model")
    return LogsAnswerer(spec, context)
