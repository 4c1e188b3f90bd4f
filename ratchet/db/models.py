"""The training database schema: SQLAlchemy 2 typed ORM, portable across SQLite and PostgreSQL.

Table and column names are a contract that tasks, flows and the CLI rely on; Alembic
(``ratchet/db/migrations``) owns every change to them, and a test proves that the migrations
produce exactly this metadata on both engines.

Portability choices, each made once here:

* ids are strings: content hashes (hex sha256, 64 characters) where the row *is* content
  (source files, dataset versions), random hex uuids for events (runs, decisions);
* timestamps are :class:`UTCDateTime`: timezone-aware on the way in and out, stored as UTC (SQLite
  has no zone type, so a naive value read back is taken as the UTC it was written as);
* free-form payloads (counts, parameters, metrics, reasons) are :class:`sqlalchemy.JSON`. Mutating
  a dict in place is not tracked: assign a new value;
* enumerations are short strings guarded by named ``CHECK`` constraints (the allowed values are
  the tuples below), so a typo fails in the database, not three flows later;
* every constraint and index has a deterministic name (``NAMING_CONVENTION``), which Alembic's
  SQLite batch mode needs to alter tables.

Columns added beyond the agreed contract (documented where declared): ``source_files.error`` and
``attempts``; ``parts.bytes``, ``schema_fingerprint`` and ``retired_at``; ``training_runs.started_at``
and ``error``; ``model_versions.retired_at``; ``eval_runs.error``; ``eval_metrics.subset``;
``pipeline_runs.error``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

from sqlalchemy import (
    JSON,
    BigInteger,
    CheckConstraint,
    Date,
    DateTime,
    Dialect,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Text,
    TypeDecorator,
    UniqueConstraint,
    text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# --- Allowed values of the enumerated columns (the CHECK constraints use these) -----------------
SOURCE_FILE_KINDS = ("interactions", "feedback", "openai_chat")
SOURCE_FILE_STATUSES = ("in_progress", "completed", "failed")
PART_TABLES = ("interactions", "feedback", "quarantine")
RECORD_KINDS = ("interaction", "feedback")
DATASET_KINDS = (
    "eval_cases",
    "sft_examples",
    "preference_pairs",
    "binary_feedback",
    "review_queue",
)
LINEAGE_REF_KINDS = ("part", "dataset_version", "flow_run", "feedback_file")
TRAINING_TYPES = ("sft", "dpo", "kto", "few_shot", "prompt")
RUN_STATUSES = ("pending", "in_progress", "completed", "failed", "cancelled")
TERMINAL_RUN_STATUSES = ("completed", "failed", "cancelled")
MODEL_STATUSES = ("candidate", "production", "retired", "rejected")
DECISION_ACTIONS = ("promote", "reject", "rollback")
TOMBSTONE_KINDS = ("user", "interaction")

#: Longest external id (agent id, interaction id, feedback id) the database stores. Ingest should
#: quarantine a record whose id is longer (``invalid_value``) rather than let PostgreSQL refuse it.
MAX_ID_LENGTH = 255
MAX_PATH_LENGTH = 1024

NAMING_CONVENTION: dict[str, str] = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


def utcnow() -> datetime:
    """The current time, timezone-aware in UTC (the only clock the database uses)."""
    return datetime.now(UTC)


def new_id() -> str:
    """A random id for event rows (runs, decisions): 32 hex characters."""
    return uuid.uuid4().hex


class UTCDateTime(TypeDecorator[datetime]):
    """A timestamp that is always timezone-aware UTC in Python, whatever the engine stores.

    PostgreSQL stores ``timestamptz``; SQLite stores text without a zone. Binding converts any
    aware value to UTC and refuses a naive one (a naive time is ambiguous, and DESIGN.md wants
    the *caller* to decide that it was UTC and count it); reading attaches UTC when the driver
    returns a naive value.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise ValueError("naive datetime: pass a timezone-aware value (UTC)")
        value = value.astimezone(UTC)
        # SQLite would keep "+00:00" in the text and break ordering against naive rows.
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


# --- Annotated column aliases ---------------------------------------------------------------------
HashId = Annotated[str, mapped_column(String(64), primary_key=True)]
"""Primary key that is a hex sha256 (or a 32-hex uuid for event rows)."""
EventId = Annotated[str, mapped_column(String(64), primary_key=True, default=new_id)]
"""Primary key of an event row; generated when the caller gives none."""
AgentId = Annotated[str, mapped_column(String(MAX_ID_LENGTH), index=True)]
OptAgentId = Annotated[str | None, mapped_column(String(MAX_ID_LENGTH), index=True)]
Hash = Annotated[str, mapped_column(String(64))]
Name = Annotated[str, mapped_column(String(MAX_ID_LENGTH))]
OptName = Annotated[str | None, mapped_column(String(MAX_ID_LENGTH))]
Path = Annotated[str, mapped_column(String(MAX_PATH_LENGTH))]
OptPath = Annotated[str | None, mapped_column(String(MAX_PATH_LENGTH))]
Status = Annotated[str, mapped_column(String(32))]
Count = Annotated[int, mapped_column(BigInteger)]
CreatedAt = Annotated[datetime, mapped_column(UTCDateTime(), default=utcnow)]
OptTime = Annotated[datetime | None, mapped_column(UTCDateTime())]
JsonDict = Annotated[dict[str, Any], mapped_column(JSON, default=dict)]
JsonList = Annotated[list[Any], mapped_column(JSON, default=list)]
FlowRunId = Annotated[str | None, mapped_column(String(64))]
Money = Annotated[float | None, mapped_column(Float)]
Error = Annotated[str | None, mapped_column(Text)]


def one_of(column: str, values: tuple[str, ...], name: str | None = None) -> CheckConstraint:
    """A named CHECK that ``column`` holds one of ``values`` (NULL passes, as in SQL)."""
    allowed = ", ".join(f"'{v}'" for v in values)
    return CheckConstraint(f"{column} IN ({allowed})", name=name or column)


class Base(DeclarativeBase):
    """Declarative base; its ``metadata`` is Alembic's ``target_metadata``."""

    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class SourceFile(Base):
    """An input file seen by ingest; its id (sha256 of the bytes) makes ingest idempotent.

    ``error`` holds the error class and a value-free message of the last failure; ``attempts``
    counts how many times ingest started on this file (a crash leaves ``in_progress``).
    """

    __tablename__ = "source_files"
    __table_args__ = (
        one_of("kind", SOURCE_FILE_KINDS),
        one_of("status", SOURCE_FILE_STATUSES),
    )

    id: Mapped[HashId]
    kind: Mapped[Status]
    name: Mapped[str] = mapped_column(String(MAX_PATH_LENGTH))
    bytes: Mapped[Count]
    lines: Mapped[int | None] = mapped_column(BigInteger)
    counts: Mapped[JsonDict]
    status: Mapped[Status]
    first_seen_at: Mapped[CreatedAt]
    completed_at: Mapped[OptTime]
    flow_run_id: Mapped[FlowRunId]
    error: Mapped[Error]
    attempts: Mapped[int] = mapped_column(Integer, default=1)


class Part(Base):
    """One committed Parquet part in the store; readers list parts here, never by globbing.

    ``path`` is relative to the store root. ``retired_at`` is set when a part is replaced (an
    erasure rewrite, a compaction): readers skip retired parts. ``bytes`` and
    ``schema_fingerprint`` are optional facts about the written file.
    """

    __tablename__ = "parts"
    __table_args__ = (
        one_of("table_name", PART_TABLES),
        Index(None, "table_name", "agent_id", "partition_date"),
    )

    id: Mapped[HashId]
    table_name: Mapped[Status]
    agent_id: Mapped[str | None] = mapped_column(String(MAX_ID_LENGTH))
    partition_date: Mapped[date | None] = mapped_column(Date)
    path: Mapped[str] = mapped_column(String(MAX_PATH_LENGTH), unique=True)
    rows: Mapped[Count]
    content_hash: Mapped[Hash]
    source_file_id: Mapped[str | None] = mapped_column(ForeignKey("source_files.id"), index=True)
    redaction_version: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[CreatedAt]
    bytes: Mapped[int | None] = mapped_column(BigInteger)
    schema_fingerprint: Mapped[str | None] = mapped_column(String(64))
    retired_at: Mapped[OptTime]


class RecordKey(Base):
    """The identity index that makes storage exactly-once: one row per stored record."""

    __tablename__ = "record_keys"
    __table_args__ = (one_of("kind", RECORD_KINDS),)

    kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    agent_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    record_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    content_hash: Mapped[Hash]
    part_id: Mapped[str] = mapped_column(ForeignKey("parts.id"), index=True)
    first_seen_at: Mapped[CreatedAt]


class FeedbackIndex(Base):
    """Which feedback parts hold events about an interaction (issue 13).

    Curation must find every earlier event of the interactions it selects; without this it read
    every feedback part of the agent. Written in the transaction that commits a feedback part,
    moved by compaction and removed when a part is retired, so it lists live parts only. A live
    feedback part with no rows here (committed before this table existed, or by a writer that
    gave no interaction ids) is *unindexed*: readers read it whole.
    """

    __tablename__ = "feedback_index"

    agent_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    interaction_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH), primary_key=True)
    part_id: Mapped[str] = mapped_column(ForeignKey("parts.id"), primary_key=True, index=True)


class PartReplacement(Base):
    """A compaction's record: ``old_part_id`` was merged into ``new_part_id`` (issue 13).

    Kept for lineage (a dataset version names the parts it read; these rows say where their
    records live now) and so that the purge of compacted files knows which retired parts are
    compaction's to delete (erasure deletes its own).
    """

    __tablename__ = "part_replacements"

    old_part_id: Mapped[str] = mapped_column(ForeignKey("parts.id"), primary_key=True)
    new_part_id: Mapped[str] = mapped_column(ForeignKey("parts.id"), primary_key=True, index=True)
    replaced_at: Mapped[CreatedAt]


class DatasetVersion(Base):
    """A curated table; ``id`` hashes its content and the curation config (same inputs, same id)."""

    __tablename__ = "dataset_versions"
    __table_args__ = (
        one_of("kind", DATASET_KINDS),
        Index(None, "agent_id", "kind", "created_at"),
    )

    id: Mapped[HashId]
    agent_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH))
    kind: Mapped[Status]
    path: Mapped[Path]
    rows: Mapped[Count]
    schema_fingerprint: Mapped[str] = mapped_column(String(64))
    config_hash: Mapped[Hash]
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("dataset_versions.id"))
    created_at: Mapped[CreatedAt]
    flow_run_id: Mapped[FlowRunId]
    stats: Mapped[JsonDict]
    # set by erasure/retention (migration 0003): the version made without the removed rows
    superseded_by: Mapped[str | None] = mapped_column(String(64))


class DatasetLineage(Base):
    """What a dataset version was made from, by reference (part id, version id, flow run id...)."""

    __tablename__ = "dataset_lineage"
    __table_args__ = (
        one_of("ref_kind", LINEAGE_REF_KINDS),
        Index(None, "ref_kind", "ref"),
    )

    version_id: Mapped[str] = mapped_column(ForeignKey("dataset_versions.id"), primary_key=True)
    ref_kind: Mapped[str] = mapped_column(String(32), primary_key=True)
    ref: Mapped[str] = mapped_column(String(MAX_PATH_LENGTH), primary_key=True)


class TrainingRun(Base):
    """The training record (the seed schema); written *before* a job is submitted.

    Its ``id`` is the tag put on the provider's job, so a retried submission can find the job it
    already started. ``started_at`` and ``error`` (value-free) are additions.
    """

    __tablename__ = "training_runs"
    __table_args__ = (
        one_of("training_type", TRAINING_TYPES),
        one_of("status", RUN_STATUSES),
        Index(None, "agent_id", "created_at"),
    )

    id: Mapped[EventId]
    agent_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH))
    dataset_version_id: Mapped[str | None] = mapped_column(ForeignKey("dataset_versions.id"))
    base_model_version: Mapped[Name]
    training_type: Mapped[Status]
    backend: Mapped[str] = mapped_column(String(64))
    parameters: Mapped[JsonDict]
    metrics: Mapped[JsonDict]
    status: Mapped[Status]
    external_job_id: Mapped[str | None] = mapped_column(String(MAX_ID_LENGTH), index=True)
    created_at: Mapped[CreatedAt]
    completed_at: Mapped[OptTime]
    created_by: Mapped[Name]
    artifacts: Mapped[JsonDict]
    notes: Mapped[str | None] = mapped_column(Text)
    cost_usd: Mapped[Money]
    started_at: Mapped[OptTime]
    error: Mapped[Error]


class ModelVersion(Base):
    """What answers for one agent: backend + model reference + system prompt + parameters.

    At most one ``production`` version per agent, enforced by a partial unique index so that two
    concurrent promotions cannot both win. ``retired_at`` is an addition.
    """

    __tablename__ = "model_versions"
    __table_args__ = (
        one_of("status", MODEL_STATUSES),
        CheckConstraint("traffic_share >= 0 AND traffic_share <= 1", name="traffic_share"),
        Index(
            "ux_model_versions_one_production",
            "agent_id",
            unique=True,
            sqlite_where=text("status = 'production'"),
            postgresql_where=text("status = 'production'"),
        ),
    )

    id: Mapped[EventId]
    agent_id: Mapped[AgentId]
    backend: Mapped[str] = mapped_column(String(64))
    model_ref: Mapped[str] = mapped_column(String(MAX_PATH_LENGTH))
    system_prompt: Mapped[str | None] = mapped_column(Text)
    parameters: Mapped[JsonDict]
    status: Mapped[Status]
    traffic_share: Mapped[float] = mapped_column(Float, default=0.0)
    parent_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    training_run_id: Mapped[str | None] = mapped_column(ForeignKey("training_runs.id"))
    created_at: Mapped[CreatedAt]
    promoted_at: Mapped[OptTime]
    retired_at: Mapped[OptTime]
    # when an erasure removed records it was trained on ("trained on erased data"; 0003)
    erased_data_at: Mapped[OptTime]


class EvalRun(Base):
    """One model version answering one eval dataset; per-case results live in ``results_path``."""

    __tablename__ = "eval_runs"
    __table_args__ = (
        one_of("status", RUN_STATUSES),
        Index(None, "agent_id", "started_at"),
    )

    id: Mapped[EventId]
    agent_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH))
    model_version_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"), index=True)
    dataset_version_id: Mapped[str | None] = mapped_column(ForeignKey("dataset_versions.id"))
    status: Mapped[Status]
    n_cases: Mapped[int] = mapped_column(Integer, default=0)
    cost_usd: Mapped[Money]
    results_path: Mapped[OptPath]
    started_at: Mapped[CreatedAt]
    completed_at: Mapped[OptTime]
    flow_run_id: Mapped[FlowRunId]
    error: Mapped[Error]


class EvalMetric(Base):
    """One aggregate metric of an eval run, with its confidence interval.

    ``subset`` (an addition: ``all``, ``holdout``, ``fix_check``...) keeps fix checks apart from
    generalisation metrics without encoding it into the metric name.
    """

    __tablename__ = "eval_metrics"

    eval_run_id: Mapped[str] = mapped_column(ForeignKey("eval_runs.id"), primary_key=True)
    subset: Mapped[str] = mapped_column(String(64), primary_key=True, default="all")
    metric: Mapped[str] = mapped_column(String(128), primary_key=True)
    value: Mapped[float] = mapped_column(Float)
    ci_low: Mapped[float | None] = mapped_column(Float)
    ci_high: Mapped[float | None] = mapped_column(Float)
    n: Mapped[int] = mapped_column(Integer)


class PromotionDecision(Base):
    """The audit record of a gate decision, a promotion, a rejection or a rollback."""

    __tablename__ = "promotion_decisions"
    __table_args__ = (
        one_of("action", DECISION_ACTIONS),
        Index(None, "agent_id", "decided_at"),
    )

    id: Mapped[EventId]
    agent_id: Mapped[str] = mapped_column(String(MAX_ID_LENGTH))
    candidate_id: Mapped[str] = mapped_column(ForeignKey("model_versions.id"))
    baseline_id: Mapped[str | None] = mapped_column(ForeignKey("model_versions.id"))
    action: Mapped[Status]
    passed: Mapped[bool]
    reasons: Mapped[JsonList]
    gate_results: Mapped[JsonDict]
    decided_by: Mapped[Name]
    decided_at: Mapped[CreatedAt]
    flow_run_id: Mapped[FlowRunId]


class Tombstone(Base):
    """A deletion request: ingest refuses, and rewrites drop, what a tombstone names.

    ``agent_id`` NULL means every agent. Both engines treat NULLs as distinct in a unique
    constraint, so the id is derived from (agent_id, kind, value): that primary key is what
    makes a global tombstone unique too.
    """

    __tablename__ = "tombstones"
    __table_args__ = (
        one_of("kind", TOMBSTONE_KINDS),
        UniqueConstraint("agent_id", "kind", "value"),
        Index(None, "kind", "value"),
    )

    id: Mapped[HashId]
    agent_id: Mapped[str | None] = mapped_column(String(MAX_ID_LENGTH))
    kind: Mapped[Status]
    value: Mapped[str] = mapped_column(String(MAX_ID_LENGTH))
    reason: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[CreatedAt]
    # when the erasure it asked for finished; NULL = pending (migration 0003)
    erased_at: Mapped[OptTime]


class PipelineRun(Base):
    """One run of a pipeline flow, as the core saw it (the Prefect run id links to the UI)."""

    __tablename__ = "pipeline_runs"
    __table_args__ = (
        one_of("status", RUN_STATUSES),
        Index(None, "agent_id", "started_at"),
    )

    id: Mapped[EventId]
    flow_name: Mapped[Name]
    flow_run_id: Mapped[FlowRunId]
    agent_id: Mapped[str | None] = mapped_column(String(MAX_ID_LENGTH))
    parameters: Mapped[JsonDict]
    status: Mapped[Status]
    counts: Mapped[JsonDict]
    started_at: Mapped[CreatedAt]
    finished_at: Mapped[OptTime]
    error: Mapped[Error]


__all__ = [
    "Base",
    "DatasetLineage",
    "DatasetVersion",
    "EvalMetric",
    "EvalRun",
    "FeedbackIndex",
    "ModelVersion",
    "Part",
    "PartReplacement",
    "PipelineRun",
    "PromotionDecision",
    "RecordKey",
    "SourceFile",
    "Tombstone",
    "TrainingRun",
    "UTCDateTime",
    "new_id",
    "utcnow",
]
