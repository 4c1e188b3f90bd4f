"""The training database: typed ORM models, one session factory, repository functions.

Core package (never imports Prefect). Usage::

    from ratchet.db import open_database, repo

    factory = open_database(settings)          # migrates to head on first use
    with factory() as s, s.begin():            # the caller owns session and transaction
        row, created = repo.add_tombstone(s, kind="user", value=pseudonym)

* :mod:`ratchet.db.models`: tables (SQLAlchemy 2 typed ORM), allowed values of enumerations;
* :mod:`ratchet.db.session`: ``make_engine``, ``session_factory``, ``open_database``, ``upgrade``;
* :mod:`ratchet.db.repo`: functions that take a session and never create one;
* :mod:`ratchet.db.errors`: the typed errors;
* ``ratchet/db/migrations``: Alembic, shipped in the package (single head).
"""

from __future__ import annotations

from ratchet.db import repo
from ratchet.db.errors import (
    ConflictError,
    DatabaseError,
    DuplicateRecordKeyError,
    InvalidTransitionError,
    NotFoundError,
    ProductionConflictError,
    SchemaVersionError,
)
from ratchet.db.models import (
    Base,
    DatasetLineage,
    DatasetVersion,
    EvalMetric,
    EvalRun,
    ModelVersion,
    Part,
    PipelineRun,
    PromotionDecision,
    RecordKey,
    SourceFile,
    Tombstone,
    TrainingRun,
)
from ratchet.db.session import (
    alembic_config,
    current_revision,
    dispose_all,
    head_revision,
    make_engine,
    open_database,
    session_factory,
    upgrade,
)

__all__ = [
    "Base",
    "ConflictError",
    "DatabaseError",
    "DatasetLineage",
    "DatasetVersion",
    "DuplicateRecordKeyError",
    "EvalMetric",
    "EvalRun",
    "InvalidTransitionError",
    "ModelVersion",
    "NotFoundError",
    "Part",
    "PipelineRun",
    "ProductionConflictError",
    "PromotionDecision",
    "RecordKey",
    "SchemaVersionError",
    "SourceFile",
    "Tombstone",
    "TrainingRun",
    "alembic_config",
    "current_revision",
    "dispose_all",
    "head_revision",
    "make_engine",
    "open_database",
    "repo",
    "session_factory",
    "upgrade",
]
